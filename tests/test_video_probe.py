"""Intake and probe: good files in several containers, and every hostile case gets a named error."""
from __future__ import annotations

import math
import os

import pytest

from opusclip_ui import notify
from opusclip_ui.errors import (FileMissingError, FileTooLargeError, InvalidVideoError,
                                OperationTimeoutError, UnsupportedFormatError)
from opusclip_ui.settings import Settings
from opusclip_ui.video import _media
from opusclip_ui.video.probe import CLI_KEYS, load_video_file
from opusclip_ui.video.sniff import sniff, sniff_bytes

from .video_fixtures import media  # noqa: F401  (session fixture)


@pytest.fixture
def s(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.mark.parametrize("name, fmt, codec, audio", [
    ("mp4_h264_aac.mp4", "mp4", "h264", "aac"),
    ("mp4_h264.mp4", "mp4", "h264", None),
    ("webm_vp9_opus.webm", "webm", "vp9", "opus"),
    ("mkv_h264_mp3.mkv", "matroska", "h264", "mp3"),
    ("mov_mpeg4.mov", "mov", "mpeg4", None),
    ("avi_mjpeg.avi", "avi", "mjpeg", None),
])
def test_good_files_probe_with_full_properties(media, s, name, fmt, codec, audio):
    info = load_video_file(media.get(name), s)
    assert (info.format, info.video_codec) == (fmt, codec)
    assert (info.width, info.height) == (160, 120)
    assert info.display_aspect == "4:3"
    assert info.fps == pytest.approx(25.0)
    assert info.duration == pytest.approx(1.0, abs=0.05)
    assert 24 <= info.frame_count <= 26
    assert info.pix_fmt.startswith(("yuv420p", "yuvj420p"))
    assert info.rotation == 0 and info.vfr is False
    if audio is None:
        assert info.audio is None
    else:
        assert info.audio["codec"] == audio
        assert info.audio["channels"] == 1 and info.audio["sample_rate"] == 48000
    assert info.file_size == os.path.getsize(media.get(name))


def test_frame_count_exact_only_where_the_container_indexes_frames(media, s):
    assert load_video_file(media.get("mp4_h264.mp4"), s).frame_count_exact is True
    assert load_video_file(media.get("webm_vp9_opus.webm"), s).frame_count_exact is False


def test_cli_dict_has_exactly_the_documented_keys(media, s):
    d = load_video_file(media.get("mp4_h264_aac.mp4"), s).cli_dict()
    assert tuple(d) == CLI_KEYS
    assert d["audio"]["codec"] == "aac"


def test_rotation_metadata_is_reported_and_display_size_swaps(media, s):
    info = load_video_file(media.get("rotated.mp4"), s)
    assert info.rotation == 90
    assert info.display_size == (120, 160)


def test_variable_frame_rate_is_flagged_and_warned(media, s):
    with notify.collect_warnings() as warnings:
        info = load_video_file(media.get("vfr.mp4"), s)
    assert info.vfr is True
    assert any("variable frame rate" in w for w in warnings)
    assert load_video_file(media.get("mp4_h264.mp4"), s).vfr is False


def test_content_decides_not_the_extension(media, s):
    info = load_video_file(media.get("mkv_named_mp4.mp4"), s)
    assert info.format == "matroska"


def test_unicode_spaces_and_shell_characters_in_names(media, s):
    path = media.weird_name()
    info = load_video_file(path, s)
    assert info.file_name == path.name and info.width == 160


@pytest.mark.parametrize("name, error, words", [
    ("empty.mp4", InvalidVideoError, "empty (0 bytes)"),
    ("random.mp4", InvalidVideoError, "could not be read as a video"),
    ("text.mp4", InvalidVideoError, "This file is not a video: it looks like a text file"),
    ("truncated.mp4", InvalidVideoError, "cut short"),
    ("no_index.mp4", InvalidVideoError, "index is missing"),
    ("huge_dims.mp4", FileTooLargeError, "20000×12000"),
    ("long_claim.mkv", FileTooLargeError, "277.8 hours"),
    ("fps90000.mp4", InvalidVideoError, "frame rate of 90000 fps"),
    ("audio.m4a", InvalidVideoError, "not a video: it is an M4A audio file"),
    ("audio.mp3", InvalidVideoError, "not a video: it is an MP3 audio file"),
    ("still.png", InvalidVideoError, "still image (a PNG image)"),
    ("anim.gif", UnsupportedFormatError, "GIF image"),
    ("playlist.mp4", UnsupportedFormatError, "never followed"),
    ("concat.mp4", UnsupportedFormatError, "never followed"),
])
def test_hostile_media_gets_a_named_friendly_error(media, s, name, error, words):
    with pytest.raises(error) as info:
        load_video_file(media.get(name), s)
    assert words in info.value.user_message
    assert info.value.hint  # always says what to do next
    assert "Traceback" not in info.value.friendly()


def test_playlist_is_refused_before_anything_opens_it(media, s, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("the prober must not run on a playlist")

    monkeypatch.setattr("opusclip_ui.guards.run_in_child", boom)
    with pytest.raises(UnsupportedFormatError):
        load_video_file(media.get("playlist.mp4"), s)


def test_ffmpeg_whitelist_refuses_playlists_even_past_the_sniffer(media, tmp_path):
    # Pretend the sniffer was fooled: the prober itself must still not follow the playlist.
    result = _media.probe_file(str(media.get("playlist.mp4")),
                               {"max_pixels": 10**8, "max_duration_s": 1e5, "max_fps": 1000})
    assert result["ok"] is False and result["code"] == "open_failed"


def test_file_that_ends_mid_frame_still_works_with_a_warning(media, s):
    with notify.collect_warnings() as warnings:
        info = load_video_file(media.get("cut_mid_frame.mp4"), s)
    assert info.frame_count_exact is False
    assert any("cut short" in w for w in warnings)


def test_missing_file_and_folder(s, tmp_path):
    with pytest.raises(FileMissingError):
        load_video_file(tmp_path / "nope.mp4", s)
    with pytest.raises(InvalidVideoError, match="folder"):
        load_video_file(tmp_path, s)


def test_named_pipe_is_refused_without_hanging(s, tmp_path):
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    with pytest.raises(InvalidVideoError, match="not a video file"):
        load_video_file(fifo, s)


def test_over_the_upload_cap_is_refused_before_reading(media, tmp_path):
    s = Settings(data_dir=tmp_path, upload_max_mb=1)
    big = media.sparse_large(3 * 2**20)
    with pytest.raises(FileTooLargeError, match="over the 1 MB limit"):
        load_video_file(big, s)


def test_over_one_gigabyte_works_but_warns(media, tmp_path):
    s = Settings(data_dir=tmp_path, upload_max_mb=4096)
    big = media.sparse_large(1024**3 + 2**20)  # sparse: takes no real disk space
    with notify.collect_warnings() as warnings:
        info = load_video_file(big, s)
    assert info.width == 160
    assert any("is large" in w for w in warnings)


def test_limits_come_from_settings(media, tmp_path):
    s = Settings(data_dir=tmp_path, max_pixels=100 * 100)
    with pytest.raises(FileTooLargeError, match="160×120"):
        load_video_file(media.get("mp4_h264.mp4"), s)
    s = Settings(data_dir=tmp_path, max_duration_s=0.5)
    with pytest.raises(FileTooLargeError, match="limit"):
        load_video_file(media.get("mp4_h264.mp4"), s)


@pytest.mark.parametrize("fps", [0.0, float("nan"), -25.0, 90000.0, None, math.inf])
def test_fps_sanity_check_runs_on_header_facts(fps):
    facts = {"width": 160, "height": 120, "fps": fps, "duration": 1.0, "frame_count": 25}
    limits = {"max_pixels": 10**8, "max_duration_s": 3600, "max_fps": 1000}
    code, _ = _media.check_limits(facts, limits)
    assert code == "bad_fps"
    facts["fps"] = 25.0
    assert _media.check_limits(facts, limits) is None


def test_forged_frame_count_is_refused():
    facts = {"width": 160, "height": 120, "fps": 25.0, "duration": 1.0, "frame_count": 10**12}
    code, _ = _media.check_limits(facts, {"max_pixels": 10**8, "max_duration_s": 3600,
                                          "max_fps": 1000})
    assert code == "too_many_frames"


def test_a_stalled_probe_is_killed_at_the_timeout(media, tmp_path, monkeypatch):
    import time

    from .helpers_video import stalled_probe

    monkeypatch.setattr(_media, "probe_file", stalled_probe)  # a decoder that hangs
    s = Settings(data_dir=tmp_path, probe_timeout_s=0.5)
    t0 = time.monotonic()
    with pytest.raises(OperationTimeoutError, match="did not finish within 0.5 s"):
        load_video_file(media.get("mp4_h264.mp4"), s)
    assert time.monotonic() - t0 < 10


@pytest.mark.parametrize("head, kind, name", [
    (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00", "video", "mp4"),
    (b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00", "video", "mov"),
    (b"\x00\x00\x00\x18ftypM4A \x00\x00\x02\x00", "audio", "m4a"),
    (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", "video", "webm"),
    (b"RIFF\x00\x00\x00\x00AVI LIST", "video", "avi"),
    (b"RIFF\x00\x00\x00\x00WAVEfmt ", "audio", "wav"),
    (b"GIF89a\x01\x00", "animated_image", "gif"),
    (b"\x89PNG\r\n\x1a\n\x00", "image", "png"),
    (b"#EXTM3U\n#EXTINF:1,\nhttp://x/a.ts\n", "playlist", "hls"),
    (b"<?xml version='1.0'?><MPD xmlns='urn:mpeg:dash'>", "playlist", "dash"),
    (b"ffconcat version 1.0\nfile 'a.mp4'\n", "playlist", "concat"),
    (b"%PDF-1.7", "document", "pdf"),
    (b"<!DOCTYPE html><html>", "text", "html"),
    (b"", "empty", "empty"),
    (bytes([0x47] + [0] * 187) * 4, "video", "mpegts"),
])
def test_sniffer_reads_magic_bytes(head, kind, name):
    got = sniff_bytes(head)
    assert (got.kind, got.name) == (kind, name)


def test_sniffer_reads_real_files(media):
    assert sniff(media.get("webm_vp9_opus.webm")).name == "webm"
    assert sniff(media.get("mkv_named_mp4.mp4")).name == "matroska"
    assert sniff(media.get("text.mp4")).kind == "text"
    assert sniff(media.get("random.mp4")).kind == "unknown"


def test_worker_children_import_only_what_they_use():
    """Children import ``_media`` through the package: it must not drag in pydantic or gradio
    (that once cost ~1 s per probe), and the core never imports gradio at all."""
    import subprocess
    import sys

    code = ("import sys, opusclip_ui.video._media, opusclip_ui.video.worker;"
            "print(sorted(m for m in ('pydantic', 'gradio', 'opusclip_ui.settings') "
            "if m in sys.modules));"
            "import opusclip_ui.video.service, opusclip_ui.video.cli;"
            "print('gradio' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(__file__))).stdout.split("\n")
    assert out[0] == "[]"
    assert out[1] == "False"
