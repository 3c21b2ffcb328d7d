"""Where generated videos go: unguessable names per session, and cleanup by age and total size.

Layout: ``<outputs>/generated/<session folder>/<UTC time>-<random>.mp4`` plus ``.json`` (sidecar) and ``.jpg`` (poster) beside it.
The session folder is a salted hash of the session id (the salt is random per process), so a folder
name reveals nothing about the session and another user cannot guess it; the file name carries
128 random bits, so two runs never collide even within one session.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import time
from pathlib import Path

from ..log import setup_logging

__all__ = ["new_output_path", "session_folder", "cleanup_outputs", "GENERATED_DIR"]

_log = setup_logging("generate.outputs")
GENERATED_DIR = "generated"
_SALT = secrets.token_bytes(16)
_TEMP_GRACE_S = 3600.0  # temp files younger than this may belong to a running encode


def session_folder(outputs_dir: str | Path, session_id: str | None) -> Path:
    sid = session_id or "cli"
    digest = hashlib.sha256(_SALT + sid.encode("utf-8", "replace")).hexdigest()[:24]
    return Path(outputs_dir) / GENERATED_DIR / digest


def new_output_path(outputs_dir: str | Path, session_id: str | None, suffix: str = ".mp4") -> Path:
    folder = session_folder(outputs_dir, session_id)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return folder / f"{stamp}-{secrets.token_urlsafe(16)}{suffix}"


def cleanup_outputs(outputs_dir: str | Path, *, max_age_hours: float, max_total_mb: float,
                    keep: tuple[Path, ...] = (), now: float | None = None) -> list[Path]:
    """Delete generated videos (and their sidecars) older than ``max_age_hours``, then the oldest
    ones until the total is under ``max_total_mb``. Returns the deleted video paths."""
    root = Path(outputs_dir) / GENERATED_DIR
    if not root.is_dir():
        return []
    now = time.time() if now is None else now
    keep_set = {Path(k).resolve() for k in keep}
    videos: list[tuple[float, int, Path]] = []
    for path in root.glob("*/*"):
        try:
            st = path.stat()
        except OSError:
            continue
        if path.name.startswith("."):  # a temp file left by a crash
            if now - st.st_mtime > _TEMP_GRACE_S:
                with contextlib.suppress(OSError):
                    path.unlink()
            continue
        if path.suffix == ".mp4":
            videos.append((st.st_mtime, st.st_size, path))
    videos.sort()
    deleted: list[Path] = []
    total = sum(size for _, size, _ in videos)
    limit = max_total_mb * 2**20
    for mtime, size, path in videos:
        too_old = now - mtime > max_age_hours * 3600
        if not too_old and total <= limit:
            continue
        if path.resolve() in keep_set:
            continue
        with contextlib.suppress(OSError):
            path.unlink()
            for companion in (".json", ".jpg"):  # its sidecar and poster go with it
                path.with_suffix(companion).unlink(missing_ok=True)
            total -= size
            deleted.append(path)
    for folder in root.iterdir():
        with contextlib.suppress(OSError):
            folder.rmdir()  # only succeeds when empty
    if deleted:
        _log.info("removed %d old generated video(s)", len(deleted))
    return deleted
