"""Where a card's weights are, whether they are ready, and fetching them from the Hub.

Status of a card's weights, one of:

* ``cached``: on this machine (a pulled hub snapshot, a package folder, a local folder, or the tiny
  random pipeline, which is built locally on first use);
* ``downloadable``: not here, and the Hugging Face Hub is reachable;
* ``unavailable-offline``: not here, and the Hub cannot be reached (or ``HF_HUB_OFFLINE=1``).

A hub snapshot counts as cached only when its completion record exists and every file it lists is
present with the recorded size. The record is written (atomically) after ``snapshot_download``
returns, so an interrupted download is never loaded; the next pull resumes it.
"""
from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .. import notify
from ..errors import (ConfigError, ModelLoadError, ModelNotFoundError,
                      WeightsUnavailableOfflineError)
from ..log import setup_logging
from .cards import PICKLE_SUFFIXES, ModelCard, resolve_package_path

__all__ = ["WeightsStore", "WeightsStatus", "estimate_weights", "WeightsEstimate", "hub_offline",
           "check_safetensors_only"]

_log = setup_logging("models.weights")

#: What a pull fetches: configs, safetensors weights and tokenizer files. Never pickles.
_T2V_PATTERNS = ["model_index.json", "*/*.json", "*/*.safetensors", "*/*.txt", "*/*.model",
                 "*/tokenizer*", "*/vocab*", "*/merges.txt"]
_ENCODER_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "tokenizer*", "vocab*",
                     "1_Pooling/*.json"]
_IGNORE = ["*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.pickle", "*.onnx", "*.msgpack", "*.h5",
           "*.gif", "*.mp4", "*.png", "*.jpg"]
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
                "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
_FLOAT = {"F64", "F32", "F16", "BF16"}


def hub_offline() -> bool:
    """True when the user asked for offline mode (read at call time, not import time)."""
    v = (os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or "").strip()
    return v.upper() in {"1", "ON", "YES", "TRUE"}


@dataclass(frozen=True)
class WeightsStatus:
    status: str           # cached | downloadable | unavailable-offline
    detail: str
    path: Path | None = None


@dataclass(frozen=True)
class WeightsEstimate:
    """Parameter counts read from safetensors headers (no tensor is loaded)."""

    params: int
    float_params: int
    other_bytes: int
    file_bytes: int
    largest_component_params: int

    def bytes_at(self, bytes_per_float: int) -> int:
        return self.float_params * bytes_per_float + self.other_bytes


def _header(path: Path) -> dict:
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ModelLoadError(f"{path.name} is truncated (no safetensors header).")
        (n,) = struct.unpack("<Q", raw)
        if n > 100 * 2**20:
            raise ModelLoadError(f"{path.name} has an implausible safetensors header.")
        return json.loads(f.read(n))


def estimate_weights(folder: Path) -> WeightsEstimate:
    """Count parameters by dtype from every ``*.safetensors`` header under ``folder``."""
    params = float_params = other = file_bytes = 0
    per_component: dict[str, int] = {}
    for f in sorted(Path(folder).rglob("*.safetensors")):
        file_bytes += f.stat().st_size
        rel = f.relative_to(folder)
        component = rel.parts[0] if len(rel.parts) > 1 else "model"
        for key, meta in _header(f).items():
            if key == "__metadata__":
                continue
            n = 1
            for d in meta.get("shape", []):
                n *= int(d)
            params += n
            per_component[component] = per_component.get(component, 0) + n
            if meta.get("dtype") in _FLOAT:
                float_params += n
            else:
                other += n * _DTYPE_BYTES.get(meta.get("dtype"), 4)
    return WeightsEstimate(params, float_params, other, file_bytes,
                           max(per_component.values(), default=0))


def check_safetensors_only(folder: Path) -> None:
    """Refuse a folder whose weights exist only as pickle checkpoints."""
    has_safe = any(Path(folder).rglob("*.safetensors"))
    if has_safe:
        return
    pickles = [p.name for p in Path(folder).rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES]
    if pickles:
        raise ModelLoadError(
            f"{folder.name} holds only pickle checkpoints ({', '.join(sorted(pickles)[:3])}); "
            "they can run arbitrary code and are never loaded.",
            "Convert the weights to safetensors, or use a repository that ships safetensors.")
    raise ModelLoadError(f"No safetensors weights were found in {folder}.",
                         "Check model_path, or pull the model again.")


class WeightsStore:
    """Locates, checks and downloads weights for cards. One per app (it caches hub reachability).

    Args:
        cache_dir: the app's cache folder; hub snapshots go to ``<cache_dir>/hf``.
        roots: allowed model roots for local paths.
        reachable: override for the hub reachability probe (tests pass ``lambda: False``).
        snapshot_download: override for ``huggingface_hub.snapshot_download`` (tests pass a fake).
        sleep: the retry back-off's sleep (tests pass a no-op).
        timeout_s: how long the hub may stay silent (connect, or between bytes) before the
            attempt fails and is retried; huggingface_hub itself waits for ever.
    """

    def __init__(self, cache_dir: Path, roots: list[Path] | None = None, *,
                 reachable: Callable[[], bool] | None = None,
                 snapshot_download: Callable | None = None,
                 sleep: Callable[[float], None] = time.sleep, timeout_s: float = 30.0):
        self.timeout_s = timeout_s
        self.cache_dir = Path(cache_dir)
        self.hub_cache = self.cache_dir / "hf"
        self.roots = [Path(r) for r in (roots or [])]
        self._reachable_override = reachable
        self._snapshot_download = snapshot_download
        self._sleep = sleep
        self._probe: tuple[float, bool] | None = None
        self._pull_lock = threading.Lock()

    # --- hub reachability ----------------------------------------------------------------------
    def hub_reachable(self) -> bool:
        if hub_offline():
            return False
        if self._reachable_override is not None:
            return self._reachable_override()
        now = time.monotonic()
        if self._probe and now - self._probe[0] < 60:
            return self._probe[1]
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
        host = urllib.parse.urlparse(endpoint).hostname or "huggingface.co"
        try:
            with socket.create_connection((host, 443), timeout=1.5):
                ok = True
        except OSError:
            ok = False
        self._probe = (now, ok)
        return ok

    # --- locating ------------------------------------------------------------------------------
    def _record_path(self, card: ModelCard) -> Path:
        safe = card.model_path.replace("/", "--")
        return self.hub_cache / ".complete" / f"{safe}@{card.revision or 'main'}.json"

    def _complete_snapshot(self, card: ModelCard) -> Path | None:
        rec_path = self._record_path(card)
        if not rec_path.is_file():
            return None
        try:
            rec = json.loads(rec_path.read_text(encoding="utf-8"))
            folder = Path(rec["path"])
            if not folder.is_absolute():  # relative to the hub cache, so the cache can be copied
                folder = self.hub_cache / folder
            for rel, size in rec["files"].items():
                f = folder / rel
                if not f.is_file() or f.stat().st_size != size:
                    _log.warning("snapshot of %s is incomplete (%s missing or resized)",
                                 card.model_path, rel)
                    return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            _log.warning("completion record %s unreadable: %s", rec_path, exc)
            return None
        return folder

    def local_folder(self, card: ModelCard) -> Path | None:
        """The folder with this card's weights if they are on this machine (never builds)."""
        src = card.source
        if src == "package":
            folder = resolve_package_path(card.model_path)
            return folder if folder.is_dir() else None
        if src == "builtin":
            from .tiny import TINY_T2V_NAME, TINY_T2V_VERSION
            folder = self.cache_dir / f"{TINY_T2V_NAME}-v{TINY_T2V_VERSION}"
            return folder if (folder / "model_index.json").is_file() else None
        if src == "local":
            p = Path(card.model_path).expanduser()
            candidates = [p] if p.is_absolute() else [r / p for r in self.roots]
            return next((c.resolve() for c in candidates if c.is_dir()), None)
        return self._complete_snapshot(card)

    def status(self, card: ModelCard) -> WeightsStatus:
        src = card.source
        if src == "builtin":
            folder = self.local_folder(card)
            return WeightsStatus("cached", "built locally" if folder else
                                 "built locally on first load (a few seconds)", folder)
        try:
            folder = self.local_folder(card)
        except ConfigError as exc:
            return WeightsStatus("unavailable-offline", exc.user_message)
        if folder is not None:
            return WeightsStatus("cached", f"on this machine ({src})", folder)
        if src in ("package", "local"):
            return WeightsStatus("unavailable-offline", f"{card.model_path} is not on this machine")
        if self.hub_reachable():
            return WeightsStatus("downloadable", "not cached; the Hub is reachable")
        return WeightsStatus("unavailable-offline", "not cached and the Hub cannot be reached")

    def resolve(self, card: ModelCard) -> Path:
        """The local folder to load from; builds the tiny pipeline if needed. Never downloads.

        Raises:
            WeightsUnavailableOfflineError: a hub model that was never pulled.
            ModelNotFoundError: a local or package folder that does not exist.
        """
        if card.source == "builtin":
            from .tiny import ensure_tiny_t2v
            return ensure_tiny_t2v(self.cache_dir)
        folder = self.local_folder(card)
        if folder is not None:
            return folder
        if card.source != "hub":
            raise ModelNotFoundError(f"The weights of `{card.name}` are not at {card.model_path}.",
                                     "Check model_path in its card.")
        offline = not self.hub_reachable()
        raise WeightsUnavailableOfflineError(
            f"The weights of `{card.name}` ({card.model_path}) are not downloaded yet"
            + (" and this machine is offline." if offline else "."),
            f"Run `python -m opusclip_ui models pull {card.name}`"
            + (" on a machine with internet (then copy its data/cache/hf folder here)" if offline
               else " or press Download")
            + ", or pick a cached card such as `minilm` or `tiny-random-t2v`.")

    # --- downloading ---------------------------------------------------------------------------
    def pull(self, card: ModelCard) -> Path:
        """Download a hub card's weights (safetensors and configs only), with retries and resume.

        Progress goes to ``notify.progress``. Returns the snapshot folder.
        """
        if card.source != "hub":
            return self.resolve(card)
        done = self._complete_snapshot(card)
        if done is not None:
            return done
        if not self.hub_reachable():
            self.resolve(card)  # raises the offline error with the right hint
        from ..guards import retry
        from ..safe_io import save_json

        download = self._snapshot_download
        if download is None:
            from huggingface_hub import snapshot_download as download
            _use_hub_timeout(self.timeout_s)
        patterns = _T2V_PATTERNS if card.model_type == "text-to-video" else _ENCODER_PATTERNS
        self.hub_cache.mkdir(parents=True, exist_ok=True)
        kwargs = dict(revision=card.revision, cache_dir=str(self.hub_cache),
                      allow_patterns=patterns, ignore_patterns=_IGNORE)
        tqdm_class = _progress_tqdm()
        if tqdm_class is not None and self._snapshot_download is None:
            kwargs["tqdm_class"] = tqdm_class
        with self._pull_lock:
            notify.progress(0.0, f"downloading {card.name}")
            _log.info("pulling %s@%s into %s", card.model_path, card.revision, self.hub_cache)
            folder = Path(retry(lambda: download(card.model_path, **kwargs), max_retries=4,
                                base_delay=1.0, max_delay=30.0, sleep=self._sleep,
                                what=f"download of {card.model_path}"))
            files = {str(p.relative_to(folder)): p.stat().st_size
                     for p in sorted(folder.rglob("*")) if p.is_file()}
            if not any(k.endswith(".safetensors") for k in files):
                raise ModelLoadError(f"{card.model_path} has no safetensors weights to download.",
                                     "Pick a repository that ships safetensors.")
            try:
                where = str(folder.resolve().relative_to(self.hub_cache.resolve()))
            except ValueError:
                where = str(folder)
            save_json(self._record_path(card), {"repo": card.model_path, "revision": card.revision,
                                                "path": where, "files": files,
                                                "time": time.time()})
            notify.progress(1.0, f"{card.name} downloaded")
        return folder


_hub_timeout: list[float] = []


def _use_hub_timeout(seconds: float) -> None:
    """Make huggingface_hub's HTTP client give up on a silent hub after ``seconds``.

    Its default client has no timeout, so a hub that accepts the connection and never answers
    would hang the pull (and the pull lock) for ever.
    """
    if _hub_timeout == [seconds]:
        return
    import httpx2
    import huggingface_hub
    from huggingface_hub.utils import _http as hf_http  # its default factory keeps the auth hooks

    limits = httpx2.Timeout(seconds).as_dict()

    def bound(request) -> None:
        # huggingface_hub passes timeout=None (no limit) per call; a request hook sees every
        # request after that and bounds whatever was left unlimited.
        current = request.extensions.get("timeout") or {}
        request.extensions["timeout"] = {k: current.get(k) or v for k, v in limits.items()}

    def factory():
        client = hf_http.default_client_factory()
        client.event_hooks["request"].append(bound)
        return client

    huggingface_hub.set_client_factory(factory)
    _hub_timeout[:] = [seconds]


def _progress_tqdm():
    """A tqdm class that forwards file-count progress of a snapshot download to notify."""
    try:
        from huggingface_hub.utils import tqdm as hf_tqdm
    except ImportError:  # pragma: no cover
        return None

    class _NotifyTqdm(hf_tqdm):
        # Counts itself: a disabled bar (no tty, HF_HUB_DISABLE_PROGRESS_BARS) never advances .n
        def update(self, n=1):
            self._done = getattr(self, "_done", 0) + (n or 0)
            out = super().update(n)
            if self.total:
                notify.progress(min(self._done / self.total, 1.0),
                                f"downloading ({self._done:g}/{self.total:g})")
            return out

    return _NotifyTqdm
