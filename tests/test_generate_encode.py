"""Encoding: a verified, browser-playable MP4 or no file at all (ffmpeg missing/killed, disk full);
output names and cleanup."""
from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import numpy as np
import pytest

from opusclip_ui.errors import DiskFullError, ToolFailedError, ToolMissingError
from opusclip_ui.generate import encode
from opusclip_ui.generate.encode import encode_mp4, probe_video
from opusclip_ui.generate.outputs import cleanup_outputs, new_output_path, session_folder


def _frames(n=12, h=32, w=48, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, h, w, 3), dtype=np.float32)


def _read_back(path: Path):
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path))
    meta = next(gen)
    frames = [np.frombuffer(f, np.uint8) for f in gen]
    return meta, frames


def _top_level_boxes(path: Path) -> list[str]:
    data = path.read_bytes()
    boxes, i = [], 0
    while i + 8 <= len(data):
        size = int.from_bytes(data[i:i + 4], "big")
        boxes.append(data[i + 4:i + 8].decode("latin-1"))
        if size < 8:
            break
        i += size
    return boxes


def _no_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_encode_writes_a_verified_h264_that_decodes(tmp_path):
    out = tmp_path / "v.mp4"
    probe = encode_mp4(_frames(12), out, 8)
    assert (probe.frames, probe.width, probe.height, probe.fps) == (12, 48, 32, 8.0)
    assert probe.codec == "h264" and probe.pix_fmt == "yuv420p"
    assert probe.duration_s == pytest.approx(1.5, abs=0.07)
    meta, frames = _read_back(out)
    assert len(frames) == 12 and tuple(meta["size"]) == (48, 32) and meta["fps"] == 8
    boxes = _top_level_boxes(out)
    assert boxes.index("moov") < boxes.index("mdat"), boxes  # +faststart
    assert _no_leftovers(tmp_path) == ["v.mp4"]


def test_encoded_pixels_follow_the_input(tmp_path):
    frames = np.zeros((4, 32, 32, 3), np.float32)
    frames[:, :, :, 0] = 1.0  # pure red
    encode_mp4(frames, tmp_path / "red.mp4", 4)
    _, back = _read_back(tmp_path / "red.mp4")
    px = back[0].reshape(32, 32, 3).astype(int)
    assert px[..., 0].mean() > 200 and px[..., 1].mean() < 40 and px[..., 2].mean() < 40


def test_odd_sizes_are_padded_to_even(tmp_path):
    probe = encode_mp4(_frames(3, h=33, w=47), tmp_path / "odd.mp4", 10)
    assert (probe.width, probe.height) == (48, 34)


def test_segments_are_joined_in_order(tmp_path):
    a = np.zeros((3, 16, 16, 3), np.float32)
    b = np.ones((2, 16, 16, 3), np.float32)
    probe = encode_mp4(None, tmp_path / "j.mp4", 5, segments=[a, b])
    assert probe.frames == 5
    _, back = _read_back(tmp_path / "j.mp4")
    means = [f.mean() for f in back]
    assert max(means[:3]) < 30 and min(means[3:]) > 220


def test_disk_full_while_encoding_leaves_no_file(tmp_path, monkeypatch):
    """ffmpeg writes into /dev/full: the kernel answers ENOSPC, just as on a full disk."""
    import tempfile

    real_mkstemp = tempfile.mkstemp

    def mkstemp_on_full_disk(*args, **kwargs):
        fd, name = real_mkstemp(*args, **kwargs)
        os.close(fd)
        os.unlink(name)
        os.symlink("/dev/full", name)
        return os.open(name, os.O_WRONLY), name

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp_on_full_disk)
    with pytest.raises(DiskFullError) as ei:
        encode_mp4(_frames(6), tmp_path / "full.mp4", 8)
    assert "disk filled up while the video was being written" in ei.value.user_message
    assert _no_leftovers(tmp_path) == []


def test_free_space_is_checked_before_encoding(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(DiskFullError):
        encode_mp4(_frames(6), tmp_path / "x.mp4", 8)
    assert _no_leftovers(tmp_path) == []


def test_ffmpeg_missing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "no-such-ffmpeg"))
    with pytest.raises(ToolMissingError) as ei:
        encode_mp4(_frames(4), tmp_path / "out" / "m.mp4", 8)
    assert "ffmpeg" in ei.value.friendly()
    assert not (tmp_path / "out" / "m.mp4").exists()


def test_ffmpeg_killed_mid_encode_leaves_no_file(tmp_path, monkeypatch):
    """A real ffmpeg that gets SIGKILLed after it started writing."""
    real = encode.ffmpeg_exe()
    script = tmp_path / "ffmpeg-killed"
    script.write_text(f'#!/bin/sh\n"{real}" "$@" &\nchild=$!\nsleep 0.3\nkill -9 $child\nkill -9 $$\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(encode, "ffmpeg_exe", lambda: str(script))
    out_dir = tmp_path / "out"
    with pytest.raises(ToolFailedError) as ei:
        encode_mp4(_frames(200, h=64, w=64), out_dir / "k.mp4", 8)
    assert "killed" in ei.value.user_message
    assert _no_leftovers(out_dir) == []


def test_a_file_that_is_not_a_video_fails_probe(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 100)
    with pytest.raises(ToolFailedError):
        probe_video(bad)


def test_output_names_are_unique_and_per_session(tmp_path):
    a = {new_output_path(tmp_path, "session-a") for _ in range(50)}
    b = new_output_path(tmp_path, "session-b")
    assert len(a) == 50
    assert b.parent != next(iter(a)).parent
    assert "session" not in str(b.relative_to(tmp_path))  # the folder name does not reveal the id
    assert session_folder(tmp_path, "session-a") == next(iter(a)).parent
    assert all(len(p.stem.split("-", 2)[2]) >= 21 for p in a)  # 16 random bytes, url-safe base64


def test_cleanup_by_age_and_total_size(tmp_path):
    folder = session_folder(tmp_path, "s")
    folder.mkdir(parents=True)
    now = time.time()
    paths = []
    for i, age_h in enumerate([50, 5, 3, 1]):
        p = folder / f"v{i}.mp4"
        p.write_bytes(b"x" * 400_000)
        p.with_suffix(".json").write_text("{}")
        p.with_suffix(".jpg").write_bytes(b"jpeg")
        os.utime(p, (now - age_h * 3600, now - age_h * 3600))
        paths.append(p)
    deleted = cleanup_outputs(tmp_path, max_age_hours=24, max_total_mb=0.8, now=now)
    # the 50 h old one by age, then the oldest ones until <= 0.8 MB remain
    assert paths[0] in deleted and paths[1] in deleted
    assert paths[2].exists() and paths[3].exists()
    assert not paths[0].with_suffix(".json").exists() and not paths[0].with_suffix(".jpg").exists()
    assert paths[2].with_suffix(".jpg").exists()


def test_poster_is_the_middle_frame_scaled_up_for_galleries(tmp_path):
    import numpy as np
    from PIL import Image

    from opusclip_ui.generate.encode import write_poster

    frames = np.zeros((5, 32, 48, 3), np.uint8)
    frames[2, ..., 0] = 255  # the middle frame is red
    poster = write_poster(frames, tmp_path / "clip.mp4")
    image = Image.open(poster)
    assert poster.name == "clip.jpg" and image.width >= 256
    assert image.getpixel((10, 10))[0] > 200 and image.getpixel((10, 10))[1] < 60
    assert [p.name for p in tmp_path.iterdir()] == ["clip.jpg"]
