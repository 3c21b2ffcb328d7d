"""A preview a browser can play: the source itself when it can, else an H.264 transcode.

The transcode uses imageio-ffmpeg's bundled ffmpeg binary in its own process group, with a timeout,
progress (from ``-progress pipe:1``) and cancel; the output appears only when complete.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from .. import notify
from ..errors import OperationTimeoutError, ToolFailedError, ToolMissingError
from ..safe_io import atomic_output
from .probe import VideoInfo

__all__ = ["browser_playable", "make_preview", "ffmpeg_exe"]

_PLAYABLE = {
    "mp4": ({"h264", "av1", "vp9"}, {"aac", "mp3", "opus", "flac"}),
    "webm": ({"vp8", "vp9", "av1"}, {"opus", "vorbis"}),
}
_PIX_OK = {"yuv420p", "yuvj420p"}
#: Longest side of a transcoded preview.
PREVIEW_MAX_SIDE = 1280


def ffmpeg_exe() -> str:
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as exc:
        raise ToolMissingError("The ffmpeg binary (imageio-ffmpeg) is missing.") from exc


def browser_playable(info: VideoInfo) -> bool:
    """Whether common browsers play the file as it is (container, codecs and pixel format)."""
    codecs = _PLAYABLE.get(info.format)
    if codecs is None:
        return False
    video_ok, audio_ok = codecs
    if info.video_codec not in video_ok or (info.pix_fmt or "") not in _PIX_OK:
        return False
    return info.audio is None or info.audio.get("codec") in audio_ok


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def make_preview(path: str | Path, info: VideoInfo, out_dir: str | Path, *, timeout: float,
                 max_side: int = PREVIEW_MAX_SIDE) -> tuple[Path, bool]:
    """Return ``(path_to_play, transcoded)``.

    Raises:
        OperationTimeoutError: the transcode ran past ``timeout`` (killed; nothing left behind).
        ToolFailedError: ffmpeg failed. Cancelled: the job was cancelled.
    """
    if browser_playable(info):
        src = Path(path)
        if src.suffix.lower() == f".{info.format}":
            return src, False
        # Playable content under another name (an MP4 called .mov): give the preview the right
        # extension, or a browser (and Gradio) would judge it by the name and try to convert it.
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        link = Path(out_dir) / f"{Path(info.file_name).stem[:60]}.preview.{info.format}"
        if not link.exists():
            try:
                os.link(src, link)
            except OSError:
                shutil.copyfile(src, link)
        return link, False
    out = Path(out_dir) / (Path(info.file_name).stem[:60] + ".preview.mp4")
    scale = (f"scale='if(gt(iw,ih),min({max_side},iw),-2)':'if(gt(iw,ih),-2,min({max_side},ih))'")
    total = max(info.duration or 0.0, 0.001)
    with atomic_output(out) as tmp:
        args = [ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-protocol_whitelist", "file",
                "-i", os.path.abspath(path), "-map", "0:v:0", "-map", "0:a:0?", "-vf", scale,
                "-c:v", "libx264", "-preset", "veryfast", "-crf", "26", "-pix_fmt", "yuv420p",
                "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart",
                "-progress", "pipe:1", "-nostats", "-f", "mp4", str(tmp)]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        os.set_blocking(proc.stdout.fileno(), False)
        buf = b""
        try:
            while proc.poll() is None:
                notify.check_cancel()
                if time.monotonic() > deadline:
                    raise OperationTimeoutError(
                        f"Making a playable preview did not finish within {timeout:g} s.",
                        "The properties and thumbnails are still valid; try a shorter file.")
                chunk = proc.stdout.read() or b""
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if line.startswith(b"out_time_us="):
                        try:
                            done = int(line.split(b"=", 1)[1]) / 1e6
                        except ValueError:
                            continue
                        notify.progress(min(done / total, 1.0), "making a playable preview")
                time.sleep(0.05)
        except BaseException:
            _kill(proc)
            raise
        err = proc.stderr.read().decode("utf-8", "replace")[-2000:]
        if proc.returncode != 0:
            raise ToolFailedError("ffmpeg could not make a playable preview of this video.",
                                  "The properties and thumbnails are still valid.", details=err)
    return out, True
