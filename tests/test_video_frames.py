"""Thumbnails by seeking, scene cuts, the playable preview and exports, on generated clips."""
from __future__ import annotations

import csv
from pathlib import Path
import json
import subprocess
import threading
import time

import numpy as np
import pytest
from PIL import Image

from opusclip_ui import notify
from opusclip_ui.errors import Cancelled, InvalidRequestError, OperationTimeoutError
from opusclip_ui.safe_io import load_json, load_yaml
from opusclip_ui.settings import Settings
from opusclip_ui.video import worker
from opusclip_ui.video.export import export_properties, export_scenes
from opusclip_ui.video.preview import browser_playable, make_preview
from opusclip_ui.video.probe import load_video_file
from opusclip_ui.video.scenes import detect_scenes
from opusclip_ui.video.thumbs import make_thumbnails, thumbnail_times

from .helpers_video import sleepy
from .video_fixtures import ffmpeg_exe, media  # noqa: F401


@pytest.fixture
def s(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


def test_thumbnail_times_spread_over_the_video():
    assert thumbnail_times(12.0, 4) == [1.5, 4.5, 7.5, 10.5]
    assert thumbnail_times(None, 5) == [0.0]


def test_twelve_thumbnails_by_seeking(media, s, tmp_path):
    path = media.get("long.mp4")
    info = load_video_file(path, s)
    thumbs = make_thumbnails(path, info, 12, tmp_path / "th", s)
    assert len(thumbs) == 12
    wanted = thumbnail_times(info.duration, 12)
    for th, t in zip(thumbs, wanted):
        assert t - 1e-6 <= th.time <= t + 1 / info.fps + 1e-6  # the first frame at or after t
        with Image.open(th.path) as img:
            assert img.format == "JPEG" and img.size == (160, 120)
    # frames differ along the strip (testsrc2 moves): they really come from different times
    first, last = (np.asarray(Image.open(thumbs[i].path), dtype=int) for i in (0, -1))
    assert np.abs(first - last).mean() > 5


def test_thumbnail_matches_ffmpeg_at_the_same_time(media, s, tmp_path):
    path = media.get("long.mp4")
    info = load_video_file(path, s)
    (th,) = make_thumbnails(path, info, 1, tmp_path / "th", s)
    ref = tmp_path / "ref.png"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-ss", f"{th.time}", "-i", str(path),
                    "-frames:v", "1", str(ref)], check=True)
    ours = np.asarray(Image.open(th.path).convert("RGB"), dtype=int)
    theirs = np.asarray(Image.open(ref).convert("RGB"), dtype=int)
    assert np.abs(ours - theirs).mean() < 8  # JPEG noise only


def test_rotated_video_thumbnails_come_out_upright(media, s, tmp_path):
    path = media.get("rotated.mp4")
    info = load_video_file(path, s)
    (th,) = make_thumbnails(path, info, 1, tmp_path / "th", s)
    ref = tmp_path / "ref.png"  # ffmpeg autorotates by default
    subprocess.run([ffmpeg_exe(), "-v", "error", "-ss", f"{th.time}", "-i", str(path),
                    "-frames:v", "1", str(ref)], check=True)
    ours = Image.open(th.path).convert("RGB")
    theirs = Image.open(ref).convert("RGB")
    assert ours.size == theirs.size == (120, 160)
    diff = np.abs(np.asarray(ours, dtype=int) - np.asarray(theirs, dtype=int)).mean()
    flipped = np.abs(np.asarray(ours.rotate(180), dtype=int) - np.asarray(theirs, dtype=int)).mean()
    assert diff < 12 < flipped


def test_keyframe_mode_returns_keyframes(media, s, tmp_path):
    path = media.get("long.mp4")  # keyframes every 50 frames = 2 s
    info = load_video_file(path, s)
    thumbs = make_thumbnails(path, info, 4, tmp_path / "th", s, exact=False)
    assert [t.time for t in thumbs] == [0.0, 2.0, 6.0, 8.0]


@pytest.mark.parametrize("n", [0, -1, 101, 2.5, True])
def test_thumbnail_count_is_validated(media, s, tmp_path, n):
    info = load_video_file(media.get("mp4_h264.mp4"), s)
    with pytest.raises(InvalidRequestError, match="between 1 and 100"):
        make_thumbnails(media.get("mp4_h264.mp4"), info, n, tmp_path, s)


def test_scene_cuts_are_found_with_thumbnails(media, s, tmp_path):
    path = media.get("scenes.mp4")
    info = load_video_file(path, s)
    result = detect_scenes(path, info, s, thumb_dir=tmp_path / "sc")
    assert [(x.start_frame, x.end_frame) for x in result.scenes] == [(0, 25), (25, 50), (50, 75)]
    assert result.cut_list() == [[0.0, 1.0], [1.0, 2.0], [2.0, 3.0]]
    assert all(x.length == pytest.approx(1.0) for x in result.scenes)
    # the third scene is solid red: its thumbnail must be red
    red = np.asarray(Image.open(result.scenes[2].thumbnail).convert("RGB"), dtype=int).mean((0, 1))
    assert red[0] > 200 and red[1] < 40 and red[2] < 40


def test_scene_threshold_changes_the_result(media, s):
    path = media.get("scenes.mp4")
    info = load_video_file(path, s)
    assert len(detect_scenes(path, info, s, threshold=255).scenes) == 1
    assert len(detect_scenes(path, info, s, downscale=2).scenes) == 3


@pytest.mark.parametrize("kw", [{"threshold": 0}, {"threshold": float("nan")},
                                {"downscale": -1}, {"min_scene_len": 0}])
def test_scene_settings_are_validated(media, s, kw):
    info = load_video_file(media.get("scenes.mp4"), s)
    with pytest.raises(InvalidRequestError):
        detect_scenes(media.get("scenes.mp4"), info, s, **kw)


def test_worker_cancel_kills_the_child():
    token = notify.CancelToken()
    threading.Timer(0.3, token.cancel).start()
    t0 = time.monotonic()
    with notify.sink(cancel=token), pytest.raises(Cancelled):
        worker.run_child(sleepy, 30.0, timeout=60)
    assert time.monotonic() - t0 < 5


def test_worker_timeout_and_crash():
    with pytest.raises(OperationTimeoutError):
        worker.run_child(sleepy, 30.0, timeout=0.5)
    with pytest.raises(worker.ChildCrashed):
        worker.run_child(sleepy, -1.0, timeout=10)  # the helper kills itself


def test_playable_source_is_not_transcoded(media, s, tmp_path):
    path = media.get("mp4_h264_aac.mp4")
    info = load_video_file(path, s)
    assert browser_playable(info)
    assert make_preview(path, info, tmp_path, timeout=30) == (path, False)


@pytest.mark.parametrize("name", ["h264_444.mkv", "mov_mpeg4.mov"])
def test_unplayable_source_is_transcoded_to_h264(media, s, tmp_path, name):
    path = media.get(name)
    info = load_video_file(path, s)
    assert not browser_playable(info)
    out, transcoded = make_preview(path, info, tmp_path / "pv", timeout=60)
    assert transcoded
    back = load_video_file(out, s)
    assert (back.format, back.video_codec, back.pix_fmt) == ("mp4", "h264", "yuv420p")
    assert browser_playable(back)
    assert [p.name for p in (tmp_path / "pv").iterdir()] == [out.name]


def test_transcode_timeout_leaves_nothing(s, tmp_path):
    import subprocess

    from tests.video_fixtures import ffmpeg_exe

    # long enough that no machine transcodes it inside the timeout (a 1 s clip sometimes made it)
    path = tmp_path / "long444.mkv"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=640x480:rate=25", "-t", "20", "-c:v", "libx264", "-preset",
                    "ultrafast", "-pix_fmt", "yuv444p", str(path)], check=True)
    info = load_video_file(path, s)
    with pytest.raises(OperationTimeoutError):
        make_preview(path, info, tmp_path / "pv", timeout=0.2)
    assert list((tmp_path / "pv").iterdir()) == []


def test_properties_export_json_and_yaml(media, s, tmp_path):
    info = load_video_file(media.get("mp4_h264_aac.mp4"), s)
    j = load_json(export_properties(info, tmp_path / "p.json", "json"))
    y = load_yaml(export_properties(info, tmp_path / "p.yaml", "yaml"))
    assert j == y
    assert j["width"] == 160 and j["audio"]["codec"] == "aac"
    with pytest.raises(InvalidRequestError):
        export_properties(info, tmp_path / "p.xml", "xml")


def test_scene_export_csv_and_json(media, s, tmp_path):
    path = media.get("scenes.mp4")
    result = detect_scenes(path, load_video_file(path, s), s)
    with open(export_scenes(result, tmp_path / "s.csv", "csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["start"], r["end"]) for r in rows] == [("0.0", "1.0"), ("1.0", "2.0"), ("2.0", "3.0")]
    doc = json.loads((export_scenes(result, tmp_path / "s.json", "json")).read_text())
    assert [r["start_frame"] for r in doc["scenes"]] == [0, 25, 50]


def test_playable_content_under_a_wrong_name_gets_the_right_extension(media, s, tmp_path):
    path = tmp_path / "clip.mov"
    path.write_bytes(media.get("mp4_h264_aac.mp4").read_bytes())
    info = load_video_file(path, s)
    out, transcoded = make_preview(path, info, tmp_path / "pv", timeout=30)
    assert not transcoded and out.suffix == ".mp4" and out.read_bytes() == path.read_bytes()


def test_ffmpeg_missing_for_the_preview_is_a_named_error(media, s, tmp_path, monkeypatch):
    import imageio_ffmpeg

    from opusclip_ui.errors import ToolMissingError

    def gone():
        raise RuntimeError("No ffmpeg exe could be found.")

    info = load_video_file(media.get("h264_444.mkv"), s)
    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", gone)
    with pytest.raises(ToolMissingError, match="ffmpeg"):
        make_preview(media.get("h264_444.mkv"), info, tmp_path / "pv", timeout=30)


def test_ffmpeg_killed_mid_encode_leaves_no_partial_preview(media, s, tmp_path, monkeypatch):
    from opusclip_ui.errors import ToolFailedError
    from opusclip_ui.video import preview

    fake = tmp_path / "ffmpeg"
    # writes half a file to its output (the last argument), then dies like a killed process
    fake.write_text('#!/bin/sh\nfor a; do out="$a"; done\nprintf "partial" > "$out"\nkill -9 $$\n')
    fake.chmod(0o755)
    info = load_video_file(media.get("h264_444.mkv"), s)
    monkeypatch.setattr(preview, "ffmpeg_exe", lambda: str(fake))
    with pytest.raises(ToolFailedError, match="could not make a playable preview"):
        make_preview(media.get("h264_444.mkv"), info, tmp_path / "pv", timeout=30)
    assert list((tmp_path / "pv").iterdir()) == []


def test_a_cancelled_job_stops_before_scene_detection(media, s):
    path = media.get("scenes.mp4")
    info = load_video_file(path, s)
    token = notify.CancelToken()
    token.cancel()
    with notify.sink(cancel=token), pytest.raises(Cancelled):
        detect_scenes(path, info, s)


def test_each_inspection_gets_its_own_folder(media, s):
    from opusclip_ui.video.service import InspectService

    svc = InspectService(s)
    a = svc.inspect(media.get("mp4_h264.mp4"), thumbnails=2)
    b = svc.inspect(media.get("mp4_h264.mp4"), thumbnails=2)
    assert a.job_id != b.job_id
    folders = {Path(t.path).parent.parent for t in a.thumbnails} | {
        Path(t.path).parent.parent for t in b.thumbnails}
    assert folders == {svc.root / a.job_id, svc.root / b.job_id}
    with pytest.raises(InvalidRequestError, match="unknown or has expired"):
        svc.job_folder("../../etc")


def test_strip_thumbnails_stay_in_their_slice_with_less_decoding(media, s, tmp_path):
    from opusclip_ui.video.thumbs import strip_tolerance

    path = media.get("long.mp4")  # 10 s, keyframes every 2 s
    info = load_video_file(path, s)
    tol = strip_tolerance(info.duration, 5)  # slices of 2 s, tolerance 1 s
    thumbs = make_thumbnails(path, info, 5, tmp_path / "th", s, tolerance=tol)
    for i, th in enumerate(thumbs):
        assert 2.0 * i <= th.time < 2.0 * (i + 1)
    assert [th.time for th in thumbs] == [0.0, 2.0, 4.0, 6.0, 8.0]  # the keyframes themselves
