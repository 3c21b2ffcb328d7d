"""Thumbnail strips made by seeking (never by decoding the whole file), in a killable child."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidRequestError, InvalidVideoError
from ..settings import Settings
from . import worker  # _media (PyAV, numpy, Pillow) is imported where the work starts
from .probe import VideoInfo

__all__ = ["Thumb", "thumbnail_times", "strip_tolerance", "make_thumbnails", "MAX_THUMBNAILS",
           "THUMB_MEMORY_MB"]

MAX_THUMBNAILS = 100
THUMB_MEMORY_MB = 3072


@dataclass(frozen=True)
class Thumb:
    path: str
    time: float  # seconds of the frame actually shown


def thumbnail_times(duration: float | None, n: int) -> list[float]:
    """``n`` times spread evenly over the video, each in the middle of its slice."""
    if not duration or duration <= 0:
        return [0.0] * min(n, 1)
    return [round((i + 0.5) * duration / n, 3) for i in range(n)]


def strip_tolerance(duration: float | None, n: int) -> float:
    """Half a slice of the strip: how early a thumbnail's frame may be and still stand for it."""
    return 0.5 * duration / n if duration and n else 0.0


def make_thumbnails(path: str | Path, info: VideoInfo, n: int, out_dir: str | Path,
                    settings: Settings, *, max_width: int = 320, exact: bool = True,
                    tolerance: float | None = None) -> list[Thumb]:
    """Write ``n`` JPEG thumbnails of the (already probed) video into ``out_dir``.

    Args:
        exact: decode from the keyframe up to each time (like ``ffmpeg -ss T -i F``); False takes
            the keyframe at or before each time, which is faster on long GOPs.
        tolerance: seconds a frame may come before its time (overrides ``exact``): decoding stops
            at the first frame after ``t - tolerance``. The strip uses half a slice, so each
            thumbnail still shows its own part of the video, often straight from a keyframe.

    Raises:
        InvalidRequestError: ``n`` outside 1..100.
        InvalidVideoError: not one frame could be read at the requested times.
        OperationTimeoutError, Cancelled: from the worker.
    """
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_THUMBNAILS:
        raise InvalidRequestError(f"The number of thumbnails must be between 1 and "
                                  f"{MAX_THUMBNAILS}, not {n!r}.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    times = thumbnail_times(info.duration, n)
    if tolerance is None:
        tolerance = 0.0 if exact else float("inf")
    from . import _media

    rows = worker.run_child(_media.grab_thumbnails, os.path.abspath(path), times, str(out),
                            max_width, float(tolerance), timeout=settings.probe_timeout_s * 3,
                            memory_limit_mb=THUMB_MEMORY_MB, what="Making thumbnails")
    if not rows:
        raise InvalidVideoError(f"No frame of {info.file_name} could be decoded for thumbnails.")
    return [Thumb(r["path"], r["time"]) for r in rows]
