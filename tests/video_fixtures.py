"""Test media, made on the spot with imageio-ffmpeg's ffmpeg and lavfi sources (never downloaded).

``MediaFactory.get(name)`` builds a named file once per test session and returns its path. Good
files cover several containers and codecs; bad ones are made by byte surgery on good ones.
Clips are tiny (160x120, about a second) so the whole set builds in a few seconds on 2 cores.
"""
from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

__all__ = ["MediaFactory", "ffmpeg_exe", "media"]


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


SRC = "testsrc2=size=160x120:rate=25"
SINE = "sine=frequency=440:sample_rate=48000"
X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-threads", "1"]

# name -> ffmpeg arguments after the binary (output path appended)
RECIPES: dict[str, list[str]] = {
    "mp4_h264_aac.mp4": ["-f", "lavfi", "-i", SRC, "-f", "lavfi", "-i", SINE, "-t", "1",
                         *X264, "-c:a", "aac", "-shortest"],
    "mp4_h264.mp4": ["-f", "lavfi", "-i", SRC, "-t", "1", *X264],
    "faststart.mp4": ["-f", "lavfi", "-i", SRC, "-t", "2", *X264, "-movflags", "+faststart"],
    "webm_vp9_opus.webm": ["-f", "lavfi", "-i", SRC, "-f", "lavfi", "-i", SINE, "-t", "1",
                           "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8",
                           "-b:v", "200k", "-c:a", "libopus", "-shortest"],
    "mkv_h264_mp3.mkv": ["-f", "lavfi", "-i", SRC, "-f", "lavfi", "-i", SINE, "-t", "1",
                         *X264, "-c:a", "libmp3lame", "-shortest"],
    "mov_mpeg4.mov": ["-f", "lavfi", "-i", SRC, "-t", "1", "-c:v", "mpeg4", "-q:v", "5"],
    "avi_mjpeg.avi": ["-f", "lavfi", "-i", SRC, "-t", "1", "-c:v", "mjpeg", "-q:v", "5"],
    "vfr.mp4": ["-f", "lavfi", "-i", SRC, "-t", "2", "-vf", "select='not(eq(mod(n\\,5)\\,1))'",
                "-fps_mode", "vfr", *X264],
    "fps90000.mp4": ["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=90000", "-frames:v", "4",
                     *X264],
    "audio.m4a": ["-f", "lavfi", "-i", SINE, "-t", "1", "-c:a", "aac"],
    "audio.mp3": ["-f", "lavfi", "-i", SINE, "-t", "1", "-c:a", "libmp3lame"],
    "still.png": ["-f", "lavfi", "-i", SRC, "-frames:v", "1"],
    "anim.gif": ["-f", "lavfi", "-i", SRC, "-t", "0.4"],
    # three shots, cuts at frames 25 and 50 (1 s and 2 s)
    "scenes.mp4": ["-f", "lavfi", "-i", SRC, "-f", "lavfi", "-i", "smptebars=size=160x120:rate=25",
                   "-f", "lavfi", "-i", "color=c=red:size=160x120:rate=25", "-filter_complex",
                   "[0:v]trim=duration=1[a];[1:v]trim=duration=1[b];[2:v]trim=duration=1[c];"
                   "[a][b][c]concat=n=3:v=1[out]", "-map", "[out]", *X264, "-g", "25"],
    # 10 s so seeking has somewhere to go
    "long.mp4": ["-f", "lavfi", "-i", SRC, "-t", "10", *X264, "-g", "50"],
    # yuv444p H.264: a browser cannot play it, the preview must transcode
    "h264_444.mkv": ["-f", "lavfi", "-i", SRC, "-t", "1", "-c:v", "libx264", "-preset",
                     "ultrafast", "-pix_fmt", "yuv444p"],
}


def _run(args: list[str]) -> None:
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *args], check=True, timeout=120,
                   stdin=subprocess.DEVNULL)


class MediaFactory:
    """Builds named media files into one folder, each at most once."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def get(self, name: str) -> Path:
        path = self.folder / name
        if path.exists():
            return path
        if name in RECIPES:
            _run([*RECIPES[name], str(path)])
        else:
            getattr(self, "_make_" + name.split(".")[0])(path)
        return path

    # --- byte surgery and odd files -------------------------------------------------------------
    def _make_rotated(self, path: Path) -> None:
        _run(["-display_rotation", "90", "-i", str(self.get("mp4_h264.mp4")), "-c", "copy", str(path)])

    def _make_mkv_named_mp4(self, path: Path) -> None:
        shutil.copy(self.get("mkv_h264_mp3.mkv"), path)

    def _make_empty(self, path: Path) -> None:
        path.write_bytes(b"")

    def _make_random(self, path: Path) -> None:
        rng = random.Random(1234)
        data = bytes(rng.randrange(256) for _ in range(64 * 1024))
        path.write_bytes(b"\x13\x37" + data)  # fixed start: not any magic number

    def _make_text(self, path: Path) -> None:
        path.write_text("Meeting notes\nThis is not a video at all.\n" * 50, encoding="utf-8")

    def _make_truncated(self, path: Path) -> None:
        data = self.get("mp4_h264_aac.mp4").read_bytes()  # moov at the end: cutting loses it
        path.write_bytes(data[: len(data) // 2])

    def _make_cut_mid_frame(self, path: Path) -> None:
        data = self.get("faststart.mp4").read_bytes()  # moov first: the index outlives the data
        path.write_bytes(data[: int(len(data) * 0.6) + 7])

    def _make_no_index(self, path: Path) -> None:
        data = bytearray(self.get("mp4_h264.mp4").read_bytes())
        i = data.find(b"moov")
        data[i:i + 4] = b"xxxx"  # the index atom is gone (renamed to an unknown atom)
        path.write_bytes(bytes(data))

    def _make_huge_dims(self, path: Path) -> None:
        # A Y4M header claiming 20000x12000 pixels (240 MP) followed by a few bytes of "frame".
        path.write_bytes(b"YUV4MPEG2 W20000 H12000 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + b"\x80" * 512)

    def _make_long_claim(self, path: Path) -> None:
        # A 1-second MKV whose Segment Duration element (0x4489, float64 ms) claims ~280 hours.
        data = bytearray(self.get("mkv_h264_mp3.mkv").read_bytes())
        i = data.find(b"\x44\x89\x88")
        assert i > 0, "no Duration element found"
        data[i + 3:i + 11] = struct.pack(">d", 1e9)
        path.write_bytes(bytes(data))

    def _make_playlist(self, path: Path) -> None:
        path.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n"
                        f"{self.get('mp4_h264.mp4')}\n#EXTINF:1,\nhttp://127.0.0.1:9/x.ts\n"
                        "#EXT-X-ENDLIST\n")

    def _make_concat(self, path: Path) -> None:
        path.write_text(f"ffconcat version 1.0\nfile '{self.get('mp4_h264.mp4')}'\n")

    def _make_weird_name(self, path: Path) -> None:
        raise AssertionError("use weird_name() instead")

    def weird_name(self) -> Path:
        path = self.folder / "clip ü 名前 $(touch pwned) ; 'x' & `id`.mp4"
        if not path.exists():
            shutil.copy(self.get("mp4_h264_aac.mp4"), path)
        return path

    def sparse_large(self, size: int) -> Path:
        """A valid faststart MP4 padded (sparsely) with a trailing free atom to ``size`` bytes."""
        path = self.folder / f"large_{size}.mp4"
        if not path.exists():
            data = self.get("faststart.mp4").read_bytes()
            pad = size - len(data)
            with open(path, "wb") as fh:
                fh.write(data)
                fh.write(struct.pack(">I", 1) + b"free" + struct.pack(">Q", pad))
                fh.truncate(size)
        return path


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> MediaFactory:
    return MediaFactory(tmp_path_factory.mktemp("media"))


def make_all(folder: str | os.PathLike) -> MediaFactory:
    """Build every recipe (used by the benchmark and for eyeballing)."""
    f = MediaFactory(Path(folder))
    for name in RECIPES:
        f.get(name)
    return f
