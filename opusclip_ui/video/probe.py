"""``load_video_file``: the design guide's contract, made real and hostile-proof.

Order of checks (cheap and safe first, decoding last):

1. the path exists, is a regular file, is readable and is not empty; over the upload cap is refused,
   over 1 GB warns;
2. the content type comes from magic bytes (``sniff``), never from the extension; playlists, images,
   audio, text and archives are refused here with a message that names what the file is;
3. in a killable child process (timeout, memory cap): PyAV reads the headers, the pixel cap, duration
   cap, fps sanity and frame-count checks run *before* anything is decoded, then the first frame must
   really decode.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import notify
from ..errors import (FileMissingError, FileTooLargeError, InvalidVideoError, OpusClipError,
                      OutOfMemoryError, PermissionDeniedError, ToolFailedError,
                      UnsupportedFormatError)
from ..log import setup_logging
from ..settings import Settings
from .sniff import Sniffed, sniff

__all__ = ["VideoInfo", "load_video_file", "check_file", "limits_from", "LARGE_FILE_BYTES",
           "PROBE_MEMORY_MB", "error_for_code"]

_log = setup_logging("video.probe")

#: Files above this still work, with a warning (the design guide's 1 GB line).
LARGE_FILE_BYTES = 1024**3
#: Address-space cap for the probe child: PyAV, numpy and a decoder's buffers fit well inside.
PROBE_MEMORY_MB = 3072

#: The keys the CLI's ``--json`` prints, in this order.
CLI_KEYS = ("file_path", "fps", "frame_count", "width", "height", "duration", "file_size", "format",
            "video_codec", "pix_fmt", "bit_rate", "rotation", "audio", "vfr", "frame_count_exact")


@dataclass(frozen=True)
class VideoInfo:
    """What a probe found. ``duration`` in seconds; ``audio`` is None or codec/channels/rate."""

    file_path: str
    file_name: str
    file_size: int
    format: str
    format_long: str
    fps: float
    vfr: bool
    frame_count: int
    frame_count_exact: bool
    duration: float | None
    width: int
    height: int
    display_aspect: str
    rotation: int
    video_codec: str
    pix_fmt: str | None
    bit_rate: int | None
    container_bit_rate: int | None
    audio: dict | None
    sniffed: str = ""
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["warnings"] = list(self.warnings)
        return d

    def cli_dict(self) -> dict[str, Any]:
        d = self.to_dict()
        return {k: d[k] for k in CLI_KEYS}

    @property
    def display_size(self) -> tuple[int, int]:
        """Width and height as shown, after rotation."""
        return (self.height, self.width) if self.rotation in (90, 270) else (self.width, self.height)


def limits_from(settings: Settings) -> dict[str, float]:
    return {"max_pixels": settings.max_pixels, "max_duration_s": settings.max_duration_s,
            "max_fps": settings.max_fps}


def _mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MB" if n < 2**30 else f"{n / 2**30:,.2f} GB"


def check_file(path: str | Path, settings: Settings) -> tuple[int, Sniffed]:
    """Steps 1 and 2: the file is there, readable, of a sane size, and its bytes say video.

    Returns its size and what the sniffer saw. Raises a typed error naming the problem and the fix.
    """
    p = Path(path)
    name = p.name
    if not p.exists():
        raise FileMissingError(f"The file {name} does not exist.",
                               "Check the path, or upload the file again.")
    if not p.is_file():
        raise InvalidVideoError(f"{name} is a folder or a device, not a video file.",
                                "Pick a video file.")
    if not os.access(p, os.R_OK):
        raise PermissionDeniedError(f"The file {name} cannot be read (permission denied).",
                                    "Check the file's permissions, or upload a copy.")
    size = p.stat().st_size
    if size == 0:
        raise InvalidVideoError(f"The file {name} is empty (0 bytes).",
                                "The upload or copy probably failed; upload the file again.")
    cap = settings.upload_max_bytes
    if size > cap:
        raise FileTooLargeError(f"The file {name} is {_mb(size)}, over the {_mb(cap)} limit.",
                                "Trim or compress it, or raise upload_max_mb in configs/app.yaml.")
    if size > LARGE_FILE_BYTES:
        notify.warn(f"{name} is large ({_mb(size)}); inspecting it may take a little longer.")
    try:
        kind = sniff(p)
    except OSError as exc:
        raise PermissionDeniedError(f"The file {name} cannot be read: {exc.strerror}.") from exc
    _refuse_non_video(name, kind)
    return size, kind


def _refuse_non_video(name: str, kind: Sniffed) -> None:
    what = kind.describe
    if kind.kind in ("video", "unknown"):
        return
    if kind.kind == "playlist":
        raise UnsupportedFormatError(
            f"{name} is {what}: it points at other files or URLs, and playlists are never "
            "followed.", "Download or export the actual video file and upload that instead.")
    if kind.kind == "audio":
        raise InvalidVideoError(f"This file is not a video: it is {what} with no picture.",
                                "Upload a file that has a video track.")
    if kind.kind == "animated_image":
        raise UnsupportedFormatError(
            f"This file is not a video: it is {what}.",
            "Convert it to a video first (for example `ffmpeg -i in.gif -pix_fmt yuv420p out.mp4`).")
    if kind.kind == "image":
        raise InvalidVideoError(f"This file is not a video: it is a still image ({what}).",
                                "Upload a video file such as MP4, WebM, MKV or MOV.")
    if kind.kind == "empty":
        raise InvalidVideoError(f"The file {name} is empty (0 bytes).", "Upload the file again.")
    raise InvalidVideoError(f"This file is not a video: it looks like {what}.",
                            "Upload a video file such as MP4, WebM, MKV or MOV; the name's "
                            "extension does not matter, its content does.")


def _fmt_fps(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "unknown"
    return f"{v:g}"


def error_for_code(code: str, facts: dict, name: str, kind: Sniffed | None = None) -> OpusClipError:
    """The friendly error for a problem code reported by the probe child."""
    if code == "open_failed":
        what = f" (it starts like {kind.describe})" if kind and kind.kind == "video" else ""
        return InvalidVideoError(
            f"{name} could not be read as a video{what}: it is damaged, cut short (for example an "
            "MP4 whose index is missing), or not a video at all.",
            "If it is a partial download or copy, get the complete file; otherwise re-encode it to "
            "MP4/H.264 and try again.", details=facts.get("error"))
    if code == "no_video":
        return InvalidVideoError("This file is not a video: it only has audio.",
                                 "Upload a file that has a video track.")
    if code == "no_size":
        return InvalidVideoError(
            f"{name} does not say how large its picture is "
            f"({facts.get('width')}×{facts.get('height')}), so it cannot be read safely.",
            "Re-encode it to MP4/H.264 and try again.")
    if code == "too_many_pixels":
        w, h, cap = facts["width"], facts["height"], facts["max_pixels"]
        return FileTooLargeError(
            f"The video claims a {w}×{h} picture ({w * h / 1e6:,.1f} megapixels), over the "
            f"{cap / 1e6:,.1f}-megapixel limit, so it was not decoded.",
            "Downscale it (for example to 3840×2160 or less), or raise max_pixels in "
            "configs/app.yaml if the size is real.")
    if code == "bad_fps":
        return InvalidVideoError(
            f"The video reports a frame rate of {_fmt_fps(facts.get('fps'))} fps, which is not "
            f"usable (it must be above 0 and at most {facts['max_fps']:g}).",
            "Re-encode it with a normal frame rate, e.g. `ffmpeg -i in -r 30 out.mp4`.")
    if code == "too_long":
        d = facts.get("duration")
        shown = f"{d / 3600:,.1f} hours" if d and math.isfinite(d) else "an invalid length"
        return FileTooLargeError(
            f"The video says it lasts {shown}, over the {facts['max_duration_s'] / 3600:g}-hour "
            "limit.", "Trim it, or raise max_duration_s in configs/app.yaml if the length is real.")
    if code == "too_many_frames":
        return InvalidVideoError(
            f"The video claims {facts['frame_count']:,} frames, more than any video within the "
            "limits could have; its header is damaged or forged.", None)
    if code == "undecodable":
        return InvalidVideoError(
            f"{name} has a video track, but not even its first frame could be decoded: the data "
            "is damaged or uses a codec this app cannot decode.",
            "Re-encode it to MP4/H.264 and try again.", details=facts.get("error"))
    return InvalidVideoError(f"{name} could not be read as a video.", details=str(facts))


def load_video_file(file_path: str | Path, settings: Settings | None = None) -> VideoInfo:
    """Validate and probe a local video file safely.

    Args:
        file_path: a local path (never a URL: see ``fetch.download`` for those).
        settings: limits and the probe timeout; ``Settings()`` defaults when None.

    Returns:
        The file's properties; ``warnings`` lists what the user was also warned about.

    Raises:
        FileMissingError, PermissionDeniedError, FileTooLargeError, InvalidVideoError,
        UnsupportedFormatError, OperationTimeoutError (a decoder that stalls is killed).
    """
    from ..guards import run_in_child
    from . import _media, worker

    worker.prepare()  # the shared forkserver preloads PyAV before its first child

    settings = settings or Settings()
    path = str(Path(file_path))
    name = Path(path).name
    size, kind = check_file(path, settings)
    try:
        result = run_in_child(_media.probe_file, os.path.abspath(path), limits_from(settings),
                              timeout=settings.probe_timeout_s, memory_limit_mb=PROBE_MEMORY_MB,
                              what=f"Reading {name}")
    except OutOfMemoryError as exc:
        raise InvalidVideoError(
            f"Reading {name} needed more memory than a probe may use "
            f"({PROBE_MEMORY_MB} MB); the file is probably forged or damaged.",
            "Re-encode it to MP4/H.264 and try again.") from exc
    except ToolFailedError as exc:
        raise InvalidVideoError(
            f"The video decoder crashed while reading {name}; the file is damaged or built to "
            "break decoders.", "Re-encode it to MP4/H.264 and try again.",
            details=exc.details) from exc
    if not result["ok"]:
        raise error_for_code(result["code"], result["facts"], name, kind)
    info = dict(result["info"])
    info["file_path"] = path
    if kind.kind == "video" and kind.name in ("mp4", "mov", "webm", "matroska"):
        info["format"] = kind.name  # FFmpeg says "mov" for MP4 and "matroska,webm" for both
    warnings = list(result["warnings"])
    if info["vfr"]:
        warnings.append(f"{name} has a variable frame rate: its fps is an average, so frame "
                        "numbers match times only approximately.")
    if not info["frame_count_exact"] and "frame count" not in " ".join(warnings):
        _log.info("%s: frame count %s is estimated from duration × fps", name, info["frame_count"])
    for w in result["warnings"]:
        notify.warn(w)
    if info["vfr"]:
        notify.warn(warnings[-1])
    return VideoInfo(**info, sniffed=kind.name, warnings=tuple(warnings))
