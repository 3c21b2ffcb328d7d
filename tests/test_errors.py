"""The error tree and the one foreign-error mapper."""
from __future__ import annotations

import concurrent.futures
import errno
import importlib
import socket
import subprocess
import urllib.error

import pytest

from opusclip_ui import errors
from opusclip_ui.errors import (FOREIGN_ERRORS, DiskFullError, FileMissingError, NetworkError,
                                OperationTimeoutError, OpusClipError, OutOfMemoryError,
                                PermissionDeniedError, WeightsUnavailableOfflineError, map_errors,
                                map_exception)


def _httpx_like(mod_name: str, kind: str):
    httpx = pytest.importorskip(mod_name)
    req = httpx.Request("GET", "https://example.invalid/x")
    if kind == "timeout":
        return httpx.ReadTimeout("slow", request=req)
    if kind == "transport":
        return httpx.ConnectError("refused", request=req)
    return httpx.HTTPStatusError("bad", request=req, response=httpx.Response(503, request=req))


def _hub(name: str):
    hub = pytest.importorskip("huggingface_hub.errors")
    httpx2 = importlib.import_module("httpx2")
    resp = httpx2.Response(404, request=httpx2.Request("GET", "https://huggingface.co/x"))
    cls = getattr(hub, name)
    if name in ("LocalEntryNotFoundError", "OfflineModeIsEnabled"):
        return cls("no cache")
    return cls("nope", response=resp)


def _requests(name: str):
    rex = pytest.importorskip("requests.exceptions")
    return getattr(rex, name)("boom")


#: One example instance of each listed foreign type, and the type it must map to.
EXAMPLES = {
    "builtins.MemoryError": (lambda: MemoryError(), OutOfMemoryError),
    "torch.OutOfMemoryError": (lambda: pytest.importorskip("torch").OutOfMemoryError(
        "CUDA out of memory. Tried to allocate 2.00 GiB"), OutOfMemoryError),
    "torch.cuda.OutOfMemoryError": (lambda: pytest.importorskip("torch").cuda.OutOfMemoryError(
        "CUDA out of memory."), OutOfMemoryError),
    "builtins.RuntimeError": (lambda: RuntimeError(
        "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"),
        OutOfMemoryError),
    "cv2.error": (lambda: pytest.importorskip("cv2").error("bad frame"), errors.InvalidVideoError),
    "builtins.OSError": (lambda: OSError(errno.ENOSPC, "No space left on device"), DiskFullError),
    "builtins.FileNotFoundError": (lambda: FileNotFoundError(errno.ENOENT, "missing", "a.mp4"),
                                   FileMissingError),
    "builtins.PermissionError": (lambda: PermissionError(errno.EACCES, "denied", "/x"),
                                 PermissionDeniedError),
    "subprocess.TimeoutExpired": (lambda: subprocess.TimeoutExpired(["ffmpeg"], 5),
                                  OperationTimeoutError),
    "subprocess.CalledProcessError": (lambda: subprocess.CalledProcessError(1, ["ffmpeg"]),
                                      errors.ToolFailedError),
    "builtins.TimeoutError": (lambda: TimeoutError("slow"), OperationTimeoutError),
    "concurrent.futures.TimeoutError": (lambda: concurrent.futures.TimeoutError(),
                                        OperationTimeoutError),
    "builtins.ConnectionError": (lambda: ConnectionResetError("reset"), NetworkError),
    "socket.gaierror": (lambda: socket.gaierror(-2, "Name or service not known"), NetworkError),
    "urllib.error.URLError": (lambda: urllib.error.URLError("refused"), NetworkError),
    "httpx.TimeoutException": (lambda: _httpx_like("httpx", "timeout"), NetworkError),
    "httpx.TransportError": (lambda: _httpx_like("httpx", "transport"), NetworkError),
    "httpx.HTTPStatusError": (lambda: _httpx_like("httpx", "status"), NetworkError),
    "httpx2.TimeoutException": (lambda: _httpx_like("httpx2", "timeout"), NetworkError),
    "httpx2.TransportError": (lambda: _httpx_like("httpx2", "transport"), NetworkError),
    "httpx2.HTTPStatusError": (lambda: _httpx_like("httpx2", "status"), NetworkError),
    "requests.exceptions.Timeout": (lambda: _requests("Timeout"), NetworkError),
    "requests.exceptions.ConnectionError": (lambda: _requests("ConnectionError"), NetworkError),
    "requests.exceptions.HTTPError": (lambda: _requests("HTTPError"), NetworkError),
    "huggingface_hub.errors.LocalEntryNotFoundError": (lambda: _hub("LocalEntryNotFoundError"),
                                                       WeightsUnavailableOfflineError),
    "huggingface_hub.errors.OfflineModeIsEnabled": (lambda: _hub("OfflineModeIsEnabled"),
                                                    WeightsUnavailableOfflineError),
    "huggingface_hub.errors.RepositoryNotFoundError": (lambda: _hub("RepositoryNotFoundError"),
                                                       errors.ModelNotFoundError),
    "huggingface_hub.errors.RevisionNotFoundError": (lambda: _hub("RevisionNotFoundError"),
                                                     errors.ModelNotFoundError),
    "huggingface_hub.errors.GatedRepoError": (lambda: _hub("GatedRepoError"), errors.ModelLoadError),
    "huggingface_hub.errors.HfHubHTTPError": (lambda: _hub("HfHubHTTPError"), NetworkError),
}


def test_every_listed_foreign_type_has_an_example():
    assert set(FOREIGN_ERRORS) == set(EXAMPLES)


@pytest.mark.parametrize("dotted", FOREIGN_ERRORS)
def test_listed_foreign_type_is_mapped(dotted):
    make, expected = EXAMPLES[dotted]
    exc = make()
    with pytest.raises(OpusClipError) as info:
        with map_errors():
            raise exc
    assert isinstance(info.value, expected), f"{dotted} -> {type(info.value).__name__}"
    assert info.value.__cause__ is exc
    assert info.value.user_message and info.value.friendly()


def test_oom_is_found_through_the_cause_chain():
    try:
        try:
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB")
        except RuntimeError as inner:
            raise ValueError("decode failed") from inner
    except ValueError as outer:
        mapped = map_exception(outer)
    assert isinstance(mapped, OutOfMemoryError) and mapped.device == "cuda"
    assert "GPU" in mapped.user_message


def test_mps_and_cpu_oom_name_their_device():
    assert map_exception(RuntimeError("MPS backend out of memory")).device == "mps"
    assert map_exception(MemoryError()).device == "cpu"


def test_unknown_and_own_errors_pass_through():
    plain = ValueError("x")
    assert map_exception(plain) is plain
    assert map_exception(RuntimeError("shape mismatch")).__class__ is RuntimeError
    own = errors.InvalidRequestError("bad", "fix it")
    assert map_exception(own) is own
    with pytest.raises(KeyError):
        with map_errors():
            raise KeyError("k")


def test_http_4xx_is_not_transient_but_5xx_is():
    assert NetworkError("x", status=404).transient is False
    assert NetworkError("x", status=429).transient is True
    assert NetworkError("x", status=503).transient is True
    assert NetworkError("x").transient is True


def test_tree_is_documented_and_exported():
    for name in errors.__all__:
        assert hasattr(errors, name)
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, OpusClipError)
            assert name in errors.__doc__ or name == "OpusClipError"
    err = errors.FileTooLargeError("The file is 3 GB; the limit is 2 GB.")
    assert err.friendly().startswith("The file is 3 GB") and err.hint in err.friendly()
    assert err.to_dict()["title"] == "Too large"


def test_hub_miss_caused_by_a_network_fault_is_transient_but_offline_mode_is_not():
    hub = pytest.importorskip("huggingface_hub.errors")
    httpx2 = importlib.import_module("httpx2")
    from opusclip_ui.guards import is_transient

    req = httpx2.Request("GET", "https://huggingface.co/api/models/x")
    try:
        try:
            raise httpx2.ConnectError("refused", request=req)
        except httpx2.ConnectError as cause:
            raise hub.LocalEntryNotFoundError("cannot find snapshot") from cause
    except hub.LocalEntryNotFoundError as exc:
        refused = map_exception(exc)
    assert isinstance(refused, WeightsUnavailableOfflineError) and is_transient(refused)
    offline = map_exception(hub.OfflineModeIsEnabled("HF_HUB_OFFLINE=1"))
    assert isinstance(offline, WeightsUnavailableOfflineError) and not is_transient(offline)
    plain_miss = map_exception(hub.LocalEntryNotFoundError("not in cache"))
    assert not is_transient(plain_miss)
