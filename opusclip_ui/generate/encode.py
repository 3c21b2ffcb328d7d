"""Frames to a playable MP4 with the ffmpeg binary that imageio-ffmpeg ships.

H.264 (libx264), yuv420p, even dimensions, ``+faststart`` (the index at the front, so a browser starts
playing before the whole file arrives), at the card's fps. Raw RGB frames are streamed to ffmpeg's
stdin one by one (no second copy of the whole video in memory). ffmpeg writes a temp file beside the
target; the file is probed (frame count, size, fps, duration) and only then renamed into place. On
any failure (ffmpeg missing, killed, timed out, disk full, cancelled, verification failed) the temp
file is removed and no file is left at the target.
"""
from __future__ import annotations

import os
import re
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import notify
from ..errors import DiskFullError, OperationTimeoutError, ToolFailedError, ToolMissingError
from ..guards import kill_process_group
from ..log import setup_logging
from ..safe_io import atomic_output, check_free_space

__all__ = ["encode_mp4", "probe_video", "ffmpeg_exe", "ffmpeg_args", "to_uint8", "VideoProbe",
           "estimate_output_bytes", "X264_PRESET", "X264_CRF"]

_log = setup_logging("generate.encode")

X264_PRESET = "medium"
X264_CRF = 18


def ffmpeg_exe() -> str:
    """The ffmpeg binary (imageio-ffmpeg's, or ``IMAGEIO_FFMPEG_EXE``). Raises ToolMissingError."""
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as exc:
        raise ToolMissingError("ffmpeg is not available, so the video cannot be encoded.",
                               "Reinstall imageio-ffmpeg (`pip install imageio-ffmpeg`) or set "
                               "IMAGEIO_FFMPEG_EXE to an ffmpeg binary.") from exc
    if not exe or not os.path.isfile(exe):
        raise ToolMissingError(f"ffmpeg was not found at {exe!r}, so the video cannot be encoded.",
                               "Reinstall imageio-ffmpeg or fix IMAGEIO_FFMPEG_EXE.")
    return exe


def estimate_output_bytes(frames: int, width: int, height: int) -> int:
    """A generous bound for the MP4 (noisy frames compress badly; clean ones far better)."""
    return int(frames * width * height * 3 * 0.25) + 256 * 1024


def to_uint8(frames: Any) -> np.ndarray:
    """(T, H, W, 3) floats in [0, 1] (or uint8) -> contiguous uint8; NaN becomes 0."""
    arr = np.asarray(frames)
    if arr.ndim == 5 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ToolFailedError(f"Frames have shape {arr.shape}; expected (frames, height, width, 3).")
    if arr.dtype != np.uint8:
        arr = np.nan_to_num(arr.astype(np.float32, copy=False), nan=0.0)
        arr = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(arr)


def ffmpeg_args(exe: str, width: int, height: int, fps: float, out: str | Path, *,
                preset: str = X264_PRESET, crf: int = X264_CRF) -> list[str]:
    """The ffmpeg command line for raw rgb24 frames on stdin -> H.264 MP4 at ``out``."""
    args = [exe, "-hide_banner", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", f"{fps:g}",
            "-i", "pipe:0", "-an", "-c:v", "libx264", "-preset", preset, "-crf", str(crf),
            "-pix_fmt", "yuv420p"]
    if width % 2 or height % 2:  # yuv420p needs even sizes: pad one black row/column
        args += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]
    args += ["-r", f"{fps:g}", "-movflags", "+faststart", "-f", "mp4", str(out)]
    return args


@dataclass(frozen=True)
class VideoProbe:
    frames: int
    width: int
    height: int
    fps: float
    duration_s: float
    codec: str
    pix_fmt: str


_STREAM = re.compile(r"Stream #\d+:\d+.*?: Video: (\w+).*?, (\w+)(?:\([^)]*\))?, (\d+)x(\d+)")
_FPS = re.compile(r"([\d.]+) fps")
_DURATION = re.compile(r"Duration: (\d+):(\d+):([\d.]+)")
_FRAME = re.compile(r"frame=\s*(\d+)")


def probe_video(path: str | Path, *, timeout: float = 30.0) -> VideoProbe:
    """Read back a video's frame count, size, fps and duration by remuxing it to nothing.

    Raises:
        ToolFailedError: ffmpeg cannot read it (not a video, truncated).
    """
    from ..guards import run_command

    exe = ffmpeg_exe()
    res = run_command([exe, "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0", "-c", "copy",
                       "-f", "null", "-"], timeout=timeout, check=False)
    err = (res.stderr or b"").decode("utf-8", "replace")
    stream = _STREAM.search(err)
    frames = _FRAME.findall(err)
    if res.returncode != 0 or stream is None or not frames:
        raise ToolFailedError("The encoded video could not be read back.", details=err[-2000:])
    fps = _FPS.search(err[stream.start():])
    dur = _DURATION.search(err)
    duration = (int(dur.group(1)) * 3600 + int(dur.group(2)) * 60 + float(dur.group(3))) if dur else 0.0
    return VideoProbe(frames=int(frames[-1]), width=int(stream.group(3)), height=int(stream.group(4)),
                      fps=float(fps.group(1)) if fps else 0.0, duration_s=duration,
                      codec=stream.group(1), pix_fmt=stream.group(2))


def encode_mp4(frames: Any, final_path: str | Path, fps: float, *, timeout: float | None = None,
               preset: str = X264_PRESET, crf: int = X264_CRF,
               segments: Sequence[Any] | None = None) -> VideoProbe:
    """Encode ``frames`` (T, H, W, 3) to ``final_path`` atomically and verify it.

    Args:
        frames: floats in [0, 1] or uint8. Ignored when ``segments`` is given.
        segments: several frame arrays written one after another (joined with hard cuts).
        timeout: seconds before ffmpeg is killed (default: 60 s + 0.5 s per frame).

    Returns:
        The probe of the written file.

    Raises:
        ToolMissingError, ToolFailedError (killed, failed, failed verification), DiskFullError,
        OperationTimeoutError, Cancelled. No file is left at ``final_path`` in any of these cases.
    """
    parts = [to_uint8(s) for s in segments] if segments is not None else [to_uint8(frames)]
    total = sum(p.shape[0] for p in parts)
    _, height, width, _ = parts[0].shape
    if any(p.shape[1:] != parts[0].shape[1:] for p in parts):
        raise ToolFailedError("Segments have different frame sizes and cannot be joined.")
    final_path = Path(final_path)
    final_path.parent.mkdir(parents=True, exist_ok=True)
    check_free_space(final_path.parent, estimate_output_bytes(total, width, height))
    exe = ffmpeg_exe()
    timeout = timeout if timeout is not None else 60.0 + 0.5 * total
    with atomic_output(final_path) as tmp:
        _run_ffmpeg(ffmpeg_args(exe, width, height, fps, tmp, preset=preset, crf=crf), parts, timeout)
        probe = probe_video(tmp)
        want_w, want_h = width + width % 2, height + height % 2
        if (probe.frames != total or (probe.width, probe.height) != (want_w, want_h)
                or abs(probe.fps - fps) > 0.01 * fps or probe.codec != "h264"):
            raise ToolFailedError(
                "The encoded video did not verify: expected "
                f"{total} frames of {want_w}x{want_h} at {fps:g} fps, got {probe.frames} frames of "
                f"{probe.width}x{probe.height} at {probe.fps:g} fps ({probe.codec}).")
        if abs(probe.duration_s - total / fps) > 1.5 / fps + 0.05:
            raise ToolFailedError(f"The encoded video lasts {probe.duration_s:.2f} s instead of "
                                  f"{total / fps:.2f} s.")
    return probe


def write_poster(frames: Any, video_path: str | Path, min_width: int = 256) -> Path | None:
    """Save the middle frame as ``<video>.jpg`` (atomically) for galleries; None if it fails.

    Tiny frames are scaled up (nearest neighbour) to ``min_width`` so a gallery tile is not a
    smudge. A poster is a convenience: failing to write one never fails the video.
    """
    try:
        from PIL import Image

        arr = to_uint8(frames)
        image = Image.fromarray(arr[arr.shape[0] // 2])
        if image.width < min_width:
            scale = -(-min_width // image.width)
            image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
        poster = Path(video_path).with_suffix(".jpg")
        with atomic_output(poster) as tmp:
            image.save(tmp, format="JPEG", quality=90)
        return poster
    except Exception as exc:  # noqa: BLE001 - see docstring
        _log.warning("no poster for %s: %s", Path(video_path).name, exc)
        return None


def _run_ffmpeg(args: list[str], parts: list[np.ndarray], timeout: float) -> None:
    name = "ffmpeg"
    with tempfile.TemporaryFile() as errf:
        try:
            proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                    stderr=errf, start_new_session=True)
        except (FileNotFoundError, PermissionError) as exc:
            raise ToolMissingError(f"{name} could not be started ({type(exc).__name__}), so the video "
                                   "cannot be encoded.", "Reinstall imageio-ffmpeg.") from exc
        timed_out = threading.Event()

        def on_timeout() -> None:
            timed_out.set()
            kill_process_group(proc.pid)

        timer = threading.Timer(timeout, on_timeout)
        timer.daemon = True
        timer.start()
        broken = False
        try:
            for part in parts:
                for frame in part:
                    notify.check_cancel()
                    try:
                        proc.stdin.write(memoryview(frame).cast("B"))
                    except (BrokenPipeError, OSError):
                        broken = True  # ffmpeg died; its exit code and stderr say why
                        break
                if broken:
                    break
            try:
                proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            rc = proc.wait()
        except BaseException:
            kill_process_group(proc.pid)
            proc.wait()
            raise
        finally:
            timer.cancel()
        errf.seek(0)
        err = errf.read()[-4000:].decode("utf-8", "replace")
    if timed_out.is_set():
        raise OperationTimeoutError(f"ffmpeg did not finish encoding within {timeout:g} s and was stopped.")
    if rc == 0 and not broken:
        return
    if "No space left on device" in err or "Disk quota exceeded" in err:
        raise DiskFullError("The disk filled up while the video was being written; nothing was saved.",
                            details=err)
    if rc < 0:
        raise ToolFailedError(f"ffmpeg was killed (signal {-rc}) while encoding; nothing was saved.",
                              details=err)
    raise ToolFailedError(f"ffmpeg failed while encoding (exit code {rc}); nothing was saved.",
                          details=err)
