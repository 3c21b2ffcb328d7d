"""Every error Video-OpusClip raises on purpose, and the one place foreign errors become ours.

The tree (each class carries a ``title`` for the toast and a default ``hint``)::

    OpusClipError                   base: user_message, hint, details (logs only)
    ├── InputError                  the user's input cannot be used
    │   ├── InvalidVideoError       not a video, corrupt, or undecodable
    │   ├── UnsupportedFormatError  a real file of a kind we do not take
    │   ├── FileTooLargeError       over the upload cap, pixel cap or duration cap
    │   ├── InvalidRequestError     a request field is out of range (names the value)
    │   ├── ConfigError             a settings file or model card is invalid (names key and value)
    │   └── FileMissingError        a path that does not exist (ENOENT)
    ├── ResourceError               the machine ran out of something
    │   ├── OutOfMemoryError        names the device: "cuda", "mps" or "cpu"
    │   ├── DiskFullError           ENOSPC / EDQUOT, or a failed free-space check
    │   ├── PermissionDeniedError   EACCES / EPERM
    │   └── DeviceUnavailableError  asked for a device this machine does not have
    ├── ModelError
    │   ├── ModelNotFoundError      no such card or repository
    │   ├── ModelLoadError          the weights are there but would not load
    │   └── WeightsUnavailableOfflineError  not cached and the hub cannot be reached
    ├── ExternalError
    │   ├── NetworkError            connection refused, reset, DNS, HTTP 5xx (transient)
    │   ├── ToolMissingError        e.g. the ffmpeg binary is absent
    │   ├── ToolFailedError         an external tool exited non-zero or was killed
    │   └── OperationTimeoutError   work did not finish in time
    └── Cancelled                   the user stopped the job

``map_errors()`` is the single mapper from foreign exceptions (torch, OpenCV, OSError, subprocess,
network and hub errors) to this tree. ``FOREIGN_ERRORS`` lists every foreign type it handles; a test
fails if one of them comes out unmapped.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import socket
import subprocess
import sys
import urllib.error
from typing import Iterator

__all__ = [
    "OpusClipError",
    "InputError",
    "InvalidVideoError",
    "UnsupportedFormatError",
    "FileTooLargeError",
    "InvalidRequestError",
    "ConfigError",
    "FileMissingError",
    "ResourceError",
    "OutOfMemoryError",
    "DiskFullError",
    "PermissionDeniedError",
    "DeviceUnavailableError",
    "ModelError",
    "ModelNotFoundError",
    "ModelLoadError",
    "WeightsUnavailableOfflineError",
    "ExternalError",
    "NetworkError",
    "ToolMissingError",
    "ToolFailedError",
    "OperationTimeoutError",
    "Cancelled",
    "FOREIGN_ERRORS",
    "map_errors",
    "map_exception",
    "is_oom",
]


class OpusClipError(Exception):
    """Base of every error raised on purpose.

    Args:
        user_message: one plain sentence for the user: what happened.
        hint: what to do next; defaults to the class's ``default_hint``.
        details: extra facts for the log only, never shown in the browser.
    """

    title = "Something went wrong"
    default_hint = ""

    def __init__(self, user_message: str, hint: str | None = None, *, details: str | None = None):
        super().__init__(user_message)
        self.user_message = user_message
        self.hint = self.default_hint if hint is None else hint
        self.details = details

    def friendly(self) -> str:
        """The message and the hint, as one text for a toast or a CLI line."""
        return f"{self.user_message} {self.hint}".strip()

    def to_dict(self) -> dict:
        return {"type": type(self).__name__, "title": self.title,
                "message": self.user_message, "hint": self.hint}

    def __str__(self) -> str:
        return self.friendly()


class InputError(OpusClipError):
    title = "Input problem"


class InvalidVideoError(InputError):
    title = "Not a usable video"
    default_hint = "Try another file, or re-encode it (for example to MP4/H.264) and upload it again."


class UnsupportedFormatError(InputError):
    title = "Unsupported format"
    default_hint = "Use a common video format such as MP4, WebM, MKV or MOV."


class FileTooLargeError(InputError):
    title = "Too large"
    default_hint = "Trim or downscale the file, or raise the limit in configs/app.yaml."


class InvalidRequestError(InputError):
    title = "Invalid request"
    default_hint = "Correct the value and try again."


class ConfigError(InputError):
    title = "Invalid configuration"
    default_hint = "Fix the file or value named above and restart."


class FileMissingError(InputError):
    title = "File not found"
    default_hint = "Check the path, or upload the file again."


class ResourceError(OpusClipError):
    title = "Out of resources"


class OutOfMemoryError(ResourceError):
    title = "Out of memory"

    def __init__(self, user_message: str | None = None, hint: str | None = None, *,
                 device: str = "cpu", details: str | None = None):
        self.device = device
        where = "GPU" if device.startswith(("cuda", "mps")) else "system"
        super().__init__(
            user_message or f"The {where} ran out of memory ({device}).",
            hint or "Close other jobs, pick a lower quality or a smaller model, and try again.",
            details=details)


class DiskFullError(ResourceError):
    title = "Disk full"
    default_hint = "Free some disk space (or delete old outputs) and try again."


class PermissionDeniedError(ResourceError):
    title = "Permission denied"
    default_hint = "Check that the app may read and write this folder."


class DeviceUnavailableError(ResourceError):
    title = "Device unavailable"
    default_hint = "Use device 'auto' or 'cpu'."


class ModelError(OpusClipError):
    title = "Model problem"


class ModelNotFoundError(ModelError):
    title = "Model not found"
    default_hint = "Check the model card's name and model_path."


class ModelLoadError(ModelError):
    title = "Model failed to load"
    default_hint = "Check the weights are complete; re-download them if needed."


class WeightsUnavailableOfflineError(ModelError):
    """``transient`` is True when the hub could not be reached because of a network fault (worth a
    retry), False when the app is offline by choice (HF_HUB_OFFLINE) or the file is not there."""

    title = "Weights not available offline"
    default_hint = ("Connect to the internet once and run `python -m opusclip_ui models pull NAME`, "
                    "or pick a card whose weights are cached.")
    transient = False


class ExternalError(OpusClipError):
    title = "External problem"


class NetworkError(ExternalError):
    """``transient`` is False for answers that will not change on retry (HTTP 4xx but 408/429)."""

    title = "Network problem"
    default_hint = "Check the connection and try again in a moment."

    def __init__(self, user_message: str, hint: str | None = None, *, details: str | None = None,
                 status: int | None = None):
        super().__init__(user_message, hint, details=details)
        self.status = status
        self.transient = status is None or status >= 500 or status in (408, 429)


class ToolMissingError(ExternalError):
    title = "Tool missing"
    default_hint = "Reinstall the app's requirements (`make test` or `make run` sets them up)."


class ToolFailedError(ExternalError):
    title = "Tool failed"
    default_hint = "Try again; if it keeps failing, report it with the log file."


class OperationTimeoutError(ExternalError):
    title = "Timed out"
    default_hint = "Try a smaller input, or try again when the machine is less busy."


class Cancelled(OpusClipError):
    title = "Cancelled"
    default_hint = "Nothing was saved. Start again when ready."

    def __init__(self, user_message: str = "The job was cancelled.", hint: str | None = None, **kw):
        super().__init__(user_message, hint, **kw)


# --- mapping foreign errors -------------------------------------------------------------------

_OOM_MARKERS = (
    "out of memory",                       # CUDA: "CUDA out of memory. Tried to allocate ..."
    "mps backend out of memory",
    "defaultcpuallocator: can't allocate memory",
    "can't allocate memory",
    "not enough memory",                   # Windows CPU allocator
    "cublas_status_alloc_failed",
    "cudnn_status_alloc_failed",
)

#: Dotted names of every foreign type ``map_errors`` maps. Types from modules that are not
#: imported yet are skipped at run time (they cannot have been raised).
FOREIGN_ERRORS: tuple[str, ...] = (
    "builtins.MemoryError",
    "torch.OutOfMemoryError",
    "torch.cuda.OutOfMemoryError",
    "builtins.RuntimeError",               # only with an OOM message; others pass through
    "cv2.error",
    "builtins.OSError",                    # by errno: ENOSPC, EDQUOT, EACCES, EPERM, ENOENT
    "builtins.FileNotFoundError",
    "builtins.PermissionError",
    "subprocess.TimeoutExpired",
    "subprocess.CalledProcessError",
    "builtins.TimeoutError",
    "concurrent.futures.TimeoutError",
    "builtins.ConnectionError",
    "socket.gaierror",
    "urllib.error.URLError",
    "httpx.TimeoutException",
    "httpx.TransportError",
    "httpx.HTTPStatusError",
    "httpx2.TimeoutException",             # huggingface_hub 2.x speaks httpx2
    "httpx2.TransportError",
    "httpx2.HTTPStatusError",
    "requests.exceptions.Timeout",
    "requests.exceptions.ConnectionError",
    "requests.exceptions.HTTPError",
    "huggingface_hub.errors.LocalEntryNotFoundError",
    "huggingface_hub.errors.OfflineModeIsEnabled",
    "huggingface_hub.errors.RepositoryNotFoundError",
    "huggingface_hub.errors.RevisionNotFoundError",
    "huggingface_hub.errors.GatedRepoError",
    "huggingface_hub.errors.HfHubHTTPError",
)


def _type(dotted: str) -> type | None:
    """The class for a dotted name if its module is already imported (never imports anything)."""
    module_name, _, attr = dotted.rpartition(".")
    module = sys.modules.get(module_name)
    obj = module
    if module is None:
        return None
    obj = getattr(module, attr, None)
    return obj if isinstance(obj, type) else None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _oom_device(exc: BaseException) -> str | None:
    """The device an out-of-memory error is about, or None when ``exc`` is not an OOM."""
    for e in _chain(exc):
        if isinstance(e, MemoryError):
            return "cpu"
        t = _type("torch.OutOfMemoryError") or _type("torch.cuda.OutOfMemoryError")
        msg = str(e).lower()
        if (t is not None and isinstance(e, t)) or (
                isinstance(e, RuntimeError) and any(m in msg for m in _OOM_MARKERS)):
            if "mps" in msg:
                return "mps"
            if "cpu" in msg or "defaultcpuallocator" in msg:
                return "cpu"
            return "cuda"
    return None


def is_oom(exc: BaseException) -> bool:
    """True when ``exc`` (or anything in its cause/context chain) is an out-of-memory error."""
    if isinstance(exc, OutOfMemoryError):
        return True
    return _oom_device(exc) is not None


def _status_code(exc: BaseException) -> int | None:
    resp = getattr(exc, "response", None)
    code = getattr(resp, "status_code", None) or getattr(exc, "code", None)
    return code if isinstance(code, int) else None


def map_exception(exc: BaseException) -> BaseException:
    """Return our error for ``exc``, or ``exc`` itself when it is ours or not a known foreign type.

    The returned error has ``__cause__`` set to ``exc`` when it is new.
    """
    if isinstance(exc, OpusClipError) or not isinstance(exc, Exception):
        return exc
    mapped = _map(exc)
    if mapped is None:
        return exc
    mapped.__cause__ = exc
    mapped.details = mapped.details or f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
    return mapped


def _map(exc: BaseException) -> OpusClipError | None:
    device = _oom_device(exc)
    if device is not None:
        return OutOfMemoryError(device=device)

    hub = sys.modules.get("huggingface_hub.errors")
    if hub is not None:
        if isinstance(exc, (hub.LocalEntryNotFoundError, hub.OfflineModeIsEnabled)):
            err = WeightsUnavailableOfflineError(
                "The model weights are not cached here and the Hugging Face Hub cannot be reached.")
            # huggingface_hub wraps refused connections, timeouts and 5xx answers in
            # LocalEntryNotFoundError: those are network faults and worth a retry.
            causes = list(_chain(exc))[1:]
            network = [m for m in (_network_error(c) or (
                NetworkError("hub error", status=_status_code(c))
                if isinstance(c, hub.HfHubHTTPError) else None) for c in causes) if m is not None]
            if network and not isinstance(exc, hub.OfflineModeIsEnabled):
                err.transient = any(n.transient for n in network)
                status = next((n.status for n in network if n.status), None)
                if status:
                    err.user_message = (f"The model weights are not cached here and the Hugging "
                                        f"Face Hub answered HTTP {status}.")
            return err
        if isinstance(exc, hub.GatedRepoError):
            return ModelLoadError("This model is gated: its licence must be accepted on the Hub.",
                                  "Accept the licence on the model page and set HF_TOKEN.")
        if isinstance(exc, (hub.RepositoryNotFoundError, hub.RevisionNotFoundError)):
            return ModelNotFoundError("The model repository or revision does not exist on the Hub.")
        if isinstance(exc, hub.HfHubHTTPError):
            code = _status_code(exc)
            return NetworkError(f"The Hugging Face Hub answered with an error ({code}).", status=code)

    cv2 = sys.modules.get("cv2")
    if cv2 is not None and isinstance(exc, cv2.error):
        return InvalidVideoError("OpenCV could not process this video.")

    if isinstance(exc, subprocess.TimeoutExpired):
        return OperationTimeoutError(f"An external tool did not finish within {exc.timeout:g} s.")
    if isinstance(exc, subprocess.CalledProcessError):
        return ToolFailedError(f"An external tool failed (exit code {exc.returncode}).")
    if isinstance(exc, (TimeoutError, concurrent.futures.TimeoutError, socket.timeout)):
        return OperationTimeoutError("The operation timed out.")

    network = _network_error(exc)
    if network is not None:
        return network

    if isinstance(exc, OSError):
        name = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return DiskFullError(f"The disk is full{name}.")
        if exc.errno in (errno.EACCES, errno.EPERM):
            return PermissionDeniedError(f"Permission denied{name}.")
        if exc.errno == errno.ENOENT:
            return FileMissingError(f"File not found{name}.")
    return None


def _network_error(exc: BaseException) -> OpusClipError | None:
    requests_exc = sys.modules.get("requests.exceptions")
    for httpx in filter(None, (sys.modules.get("httpx"), sys.modules.get("httpx2"))):
        if isinstance(exc, httpx.TimeoutException):
            return NetworkError("The server took too long to answer.")
        if isinstance(exc, httpx.HTTPStatusError):
            code = exc.response.status_code
            return NetworkError(f"The server answered with HTTP {code}.", status=code)
        if isinstance(exc, httpx.TransportError):
            return NetworkError("Could not reach the server.")
    if requests_exc is not None:
        if isinstance(exc, requests_exc.HTTPError):
            code = _status_code(exc)
            return NetworkError(f"The server answered with HTTP {code}.", status=code)
        if isinstance(exc, (requests_exc.Timeout, requests_exc.ConnectionError)):
            return NetworkError("Could not reach the server.")
    if isinstance(exc, urllib.error.HTTPError):
        return NetworkError(f"The server answered with HTTP {exc.code}.", status=exc.code)
    if isinstance(exc, (urllib.error.URLError, socket.gaierror, ConnectionError)):
        return NetworkError("Could not reach the server.")
    return None


@contextlib.contextmanager
def map_errors() -> Iterator[None]:
    """Re-raise any known foreign exception as our own type (``raise ... from exc``).

    Our own errors and unknown exceptions pass through untouched.
    """
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - this is the mapper
        mapped = map_exception(exc)
        if mapped is exc:
            raise
        raise mapped from exc
