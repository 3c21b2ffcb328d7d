"""The code that touches a user's media file. It runs only inside worker children (see worker.py).

Every function here returns plain, picklable data. Problems the user must hear about come back as
``{"ok": False, "code": ..., "facts": {...}}`` rather than as exceptions, so the parent can turn them
into friendly, typed errors (probe.py) without pickling exception objects across the process line.

PyAV is the prober and frame reader (chosen on measurements, see benchmarks/RESULTS_inspect.md):
it opens a file in ~8 ms, gives codec, pixel format, bitrate, rotation and audio details that
OpenCV does not, and seeks to keyframes for thumbnails.
"""
from __future__ import annotations

import math
import os
import threading
from fractions import Fraction

# Imported at module level on purpose: the worker forkserver preloads this module, so every child
# starts with PyAV, numpy and Pillow already imported (~100 ms saved per call).
import av  # noqa: E402
import numpy  # noqa: E402,F401
from PIL import Image  # noqa: E402

__all__ = ["FORMAT_WHITELIST", "probe_file", "grab_thumbnails", "find_scenes", "check_limits"]

#: Demuxers we open. Anything else (hls, concat, dash, image2 sequences, data URLs...) is refused by
#: FFmpeg itself, so a playlist that slipped past the sniffer still cannot pull in other files.
FORMAT_WHITELIST = ",".join([
    "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi", "flv", "mpegts", "mpeg", "ogg", "asf",
    "h264", "hevc", "mpegvideo", "m4v", "yuv4mpegpipe", "ivf", "nut", "mxf", "dv", "gif",
    "mp3", "wav", "flac", "aac",
])
#: Only local files: no http, no pipes, no subfile tricks, and MOV data references to other files
#: stay off (FFmpeg's default, pinned here so a future default cannot turn them on).
#: ``advanced_editlist=0``: MOV/MP4 edit lists are applied the simple way instead of rebuilding the
#: whole sample index, which halves the open of a 60-minute MP4 (45 -> 22 ms) and keeps probing
#: close to constant in duration; frame counts and codec facts are unchanged.
CONTAINER_OPTIONS = {"format_whitelist": FORMAT_WHITELIST, "protocol_whitelist": "file",
                     "enable_drefs": "0", "advanced_editlist": "0"}

#: Packets read while looking for the first decodable frame before giving up.
FIRST_FRAME_MAX_PACKETS = 600
#: Packet timestamps sampled to tell constant from variable frame rate.
VFR_SAMPLE = 120

_CODEC_NAMES = {"libdav1d": "av1", "libaom-av1": "av1", "libvpx-vp9": "vp9", "libvpx": "vp8",
                "mp3float": "mp3", "aac_fixed": "aac", "ac3_fixed": "ac3"}


def _open(path: str):
    return av.open(path, mode="r", container_options=CONTAINER_OPTIONS, metadata_errors="ignore")


def _video_stream(container):
    for s in container.streams.video:
        try:
            if s.disposition & av.stream.Disposition.attached_pic:
                continue  # cover art in an audio file is not a video
        except (AttributeError, TypeError):
            pass
        return s
    return None


def _ratio(value) -> float:
    try:
        f = float(value) if value is not None else 0.0
    except (TypeError, ZeroDivisionError, ValueError):
        return 0.0
    return f


def _audio_facts(container) -> dict | None:
    if not container.streams.audio:
        return None
    a = container.streams.audio[0]
    cc = a.codec_context
    channels = getattr(cc, "channels", None)
    if not channels:
        layout = getattr(cc, "layout", None)
        channels = getattr(layout, "nb_channels", None) or len(getattr(layout, "channels", ()) or ())
    return {
        "codec": _CODEC_NAMES.get(cc.name, cc.name),
        "channels": int(channels or 0),
        "sample_rate": int(cc.sample_rate or 0),
        "bit_rate": int(cc.bit_rate or a.container.bit_rate or 0) or None,
    }


def _aspect(width: int, height: int, sar) -> str:
    sar_f = Fraction(sar.numerator, sar.denominator) if sar and sar.numerator and sar.denominator \
        else Fraction(1)
    dar = (Fraction(width) * sar_f / Fraction(height)).limit_denominator(100)
    return f"{dar.numerator}:{dar.denominator}"


def check_limits(facts: dict, limits: dict) -> tuple[str, dict] | None:
    """The first header fact that breaks a limit, as ``(code, facts)``, or None.

    Runs before any decoding. ``limits`` holds ``max_pixels``, ``max_duration_s`` and ``max_fps``.
    """
    w, h = facts.get("width") or 0, facts.get("height") or 0
    if w <= 0 or h <= 0:
        return "no_size", {"width": w, "height": h}
    if w * h > limits["max_pixels"]:
        return "too_many_pixels", {"width": w, "height": h, "max_pixels": limits["max_pixels"]}
    fps = facts.get("fps")
    if fps is None or not math.isfinite(fps) or fps <= 0 or fps > limits["max_fps"]:
        return "bad_fps", {"fps": fps, "max_fps": limits["max_fps"]}
    duration = facts.get("duration")
    if duration is not None and (not math.isfinite(duration) or duration > limits["max_duration_s"]):
        return "too_long", {"duration": duration, "max_duration_s": limits["max_duration_s"]}
    frames = facts.get("frame_count") or 0
    if frames > limits["max_duration_s"] * limits["max_fps"]:
        return "too_many_frames", {"frame_count": frames}
    return None


def _is_vfr(pts: list[int], avg: float, guessed: float) -> bool:
    if avg and guessed and abs(avg - guessed) / max(avg, guessed) > 0.01:
        return True
    if len(pts) < 4:
        return False
    pts = sorted(pts)
    diffs = [b - a for a, b in zip(pts, pts[1:])][:-1] or [1]
    lo, hi = min(diffs), max(diffs)
    return hi > 0 and (hi - lo) / hi > 0.05 and hi - lo > 1


def probe_file(path: str, limits: dict) -> dict:
    """Read a video's properties, check limits before decoding, then decode its first frame.

    Returns ``{"ok": True, "info": {...}, "warnings": [...]}`` or
    ``{"ok": False, "code": str, "facts": dict}``.
    """
    try:
        container = _open(path)
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        return {"ok": False, "code": "open_failed", "facts": {"error": str(exc)[:300]}}
    warnings: list[str] = []
    with container:
        fmt = container.format
        audio = _audio_facts(container)
        v = _video_stream(container)
        if v is None:
            return {"ok": False, "code": "no_video",
                    "facts": {"format": fmt.name, "audio": audio}}
        cc = v.codec_context
        width, height = int(cc.width or 0), int(cc.height or 0)
        avg, guessed = _ratio(v.average_rate), _ratio(v.guessed_rate)
        fps = avg or guessed
        if v.duration and v.time_base:
            duration = float(v.duration * v.time_base)
        elif container.duration:
            duration = container.duration / 1_000_000
        else:
            duration = None
        frames = int(v.frames or 0)
        exact = frames > 0
        if not exact and duration and fps:
            frames = int(round(duration * fps))
        if duration is None and frames and fps:
            duration = frames / fps
        facts = {"width": width, "height": height, "fps": fps, "duration": duration,
                 "frame_count": frames}
        broken = check_limits(facts, limits)
        if broken is not None:
            return {"ok": False, "code": broken[0], "facts": broken[1]}

        # Only now decode: the first frame must really come out, and the first packets' timestamps
        # tell constant from variable frame rate.
        pts: list[int] = []
        first = None
        n = 0
        try:
            for packet in container.demux(v):
                n += 1
                if packet.pts is not None and len(pts) < VFR_SAMPLE:
                    pts.append(int(packet.pts))
                if first is None:
                    for frame in packet.decode():
                        first = frame
                        break
                if first is not None and len(pts) >= VFR_SAMPLE:
                    break
                if first is None and n >= FIRST_FRAME_MAX_PACKETS:
                    break
        except av.error.FFmpegError as exc:
            if first is None:
                return {"ok": False, "code": "undecodable", "facts": {"error": str(exc)[:300]}}
            warnings.append("The file has damaged data after its first frame; later parts may not "
                            "play.")
        if first is None:
            return {"ok": False, "code": "undecodable", "facts": {"error": "no frame decoded"}}
        rotation = int(round(getattr(first, "rotation", 0) or 0)) % 360

        # A file cut short: its index points past the end of the file.
        size = os.path.getsize(path)
        try:
            entries = v.index_entries
            if len(entries):
                last = entries[len(entries) - 1]
                if last.pos + last.size > size:
                    warnings.append("The file looks cut short: its index points past its end. "
                                    "The end of the video is missing.")
                    exact = False
        except (AttributeError, IndexError):
            pass

        vfr = _is_vfr(pts, avg, guessed)
        sar = v.sample_aspect_ratio or cc.sample_aspect_ratio
        info = {
            "file_path": path,
            "file_name": os.path.basename(path),
            "file_size": size,
            "format": fmt.name.split(",")[0] if fmt.name.startswith("mov,") else fmt.name,
            "format_long": fmt.long_name,
            "fps": round(fps, 6),
            "vfr": vfr,
            "frame_count": frames,
            "frame_count_exact": exact,
            "duration": round(duration, 6) if duration is not None else None,
            "width": width,
            "height": height,
            "display_aspect": _aspect(width, height, sar),
            "rotation": rotation,
            "video_codec": _CODEC_NAMES.get(cc.name, cc.name),
            "pix_fmt": cc.pix_fmt,
            "bit_rate": int(cc.bit_rate or container.bit_rate or 0) or None,
            "container_bit_rate": int(container.bit_rate or 0) or None,
            "audio": audio,
        }
        return {"ok": True, "info": info, "warnings": warnings}


def _rotate(img, rotation: int):
    """Turn a frame upright the way players do for a display-matrix rotation."""
    turns = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180,
             270: Image.Transpose.ROTATE_270}
    return img.transpose(turns[rotation]) if rotation in turns else img


def _seek_frame(container, v, t: float, tolerance: float):
    """The first frame at or after ``t - tolerance`` seconds, reached from the keyframe before ``t``.

    ``tolerance`` 0 gives the frame at ``t`` (like ``ffmpeg -ss T -i F``); ``inf`` gives the keyframe.
    """
    tb = float(v.time_base)
    start = v.start_time or 0
    container.seek(int(t / tb) + start, stream=v, backward=True, any_frame=False)
    best = None
    for frame in container.decode(v):
        if frame.pts is None:
            best = frame
            break
        best = frame
        if (frame.pts - start) * tb >= t - max(tolerance, 0.5 * tb):
            break
    return best


def grab_thumbnails(path: str, times: list[float], out_dir: str, max_width: int = 320,
                    tolerance: float = 0.0, quality: int = 85) -> list[dict]:
    """Write one JPEG per requested time by seeking (never decoding the whole file).

    Returns ``[{"path": ..., "time": actual_seconds}]``, skipping times no frame could be read for.
    """
    from . import worker

    out: list[dict] = []
    with _open(path) as container:
        v = _video_stream(container)
        if v is None:
            return out
        v.codec_context.thread_type = "AUTO"
        tb = float(v.time_base)
        start = v.start_time or 0
        for i, t in enumerate(times):
            try:
                frame = _seek_frame(container, v, max(0.0, t), tolerance)
            except Exception:  # noqa: BLE001 - one bad spot must not lose the whole strip
                frame = None
            if frame is None:
                continue
            w, h = frame.width, frame.height
            if w > max_width:
                h = max(2, int(round(h * max_width / w / 2)) * 2)
                w = max_width
            img = _rotate(frame.to_image(width=w, height=h), int(getattr(frame, "rotation", 0)) % 360)
            actual = (frame.pts - start) * tb if frame.pts is not None else t
            final = os.path.join(out_dir, f"thumb_{i:03d}_{actual:09.3f}s.jpg")
            tmp = final + ".tmp"
            img.save(tmp, format="JPEG", quality=quality)
            os.replace(tmp, final)
            out.append({"index": i, "path": final, "time": round(max(actual, 0.0), 3)})
            worker.report((i + 1) / len(times), "thumbnails")
    return out


def find_scenes(path: str, threshold: float = 27.0, min_scene_len: int = 15, downscale: int = 0,
                thumb_dir: str | None = None, thumb_width: int = 240) -> dict:
    """Detect cuts with PySceneDetect's ContentDetector (OpenCV backend, as its CLI uses).

    ``downscale`` 0 means PySceneDetect's automatic factor (its CLI default). Progress goes to the
    parent through ``worker.report``. Returns fps, frames read and scenes as frame numbers and
    seconds, with one thumbnail per scene when ``thumb_dir`` is given.
    """
    from scenedetect import ContentDetector, SceneManager, open_video

    from . import worker

    video = open_video(path, backend="opencv")
    total = max(int(video.duration.frame_num) if video.duration is not None else 0, 1)
    manager = SceneManager()
    manager.add_detector(ContentDetector(threshold=threshold, min_scene_len=min_scene_len))
    if downscale and downscale > 0:
        manager.auto_downscale = False
        manager.downscale = int(downscale)
    done = threading.Event()

    def _progress() -> None:
        while not done.wait(0.25):
            worker.report(min(video.frame_number / total, 1.0) * 0.9, "finding scene cuts")

    ticker = threading.Thread(target=_progress, daemon=True)
    ticker.start()
    try:
        frames_read = manager.detect_scenes(video=video)
    finally:
        done.set()
    scenes = manager.get_scene_list(start_in_scene=True)
    fps = float(video.frame_rate)
    rows = [{"start_frame": s.frame_num, "end_frame": e.frame_num,
             "start": round(s.seconds, 3), "end": round(e.seconds, 3),
             "length": round(e.seconds - s.seconds, 3)} for s, e in scenes]
    if thumb_dir and rows:
        # One frame a little into each scene, so a cut's fade does not pick the previous shot.
        times = [min(r["start"] + 0.25 * r["length"], r["end"]) for r in rows]
        thumbs = grab_thumbnails(path, times, thumb_dir, max_width=thumb_width, tolerance=0.0)
        for th in thumbs:
            rows[th["index"]]["thumbnail"] = th["path"]
    worker.report(1.0, "done")
    return {"fps": fps, "frames_read": int(frames_read), "scenes": rows}
