"""``python -m opusclip_ui inspect``: JSON keys, thumbnails, scenes, and one-line errors (exit 2)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from opusclip_ui.cli import main
from opusclip_ui.video.probe import CLI_KEYS

from .video_fixtures import media  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("OPUSCLIP_DATA_DIR", str(tmp_path / "data"))


def test_inspect_json_has_the_documented_keys(media, capsys):
    assert main(["inspect", str(media.get("mp4_h264_aac.mp4")), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == list(CLI_KEYS)
    assert (out["width"], out["height"], out["fps"], out["format"]) == (160, 120, 25.0, "mp4")
    assert out["audio"] == {"codec": "aac", "channels": 1, "sample_rate": 48000,
                            "bit_rate": out["audio"]["bit_rate"]}


def test_inspect_thumbnails_and_scenes(media, capsys, tmp_path):
    folder = tmp_path / "thumbs"
    assert main(["inspect", str(media.get("scenes.mp4")), "--json", "--thumbnails", "5",
                 str(folder), "--scenes"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["scenes"] == [[0.0, 1.0], [1.0, 2.0], [2.0, 3.0]]
    files = sorted(folder.glob("*.jpg"))
    assert len(files) == 5 and all(Image.open(f).format == "JPEG" for f in files)
    # the job folder was cleaned up: only the requested thumbnails remain
    assert not list((tmp_path / "data").rglob("*.jpg"))


@pytest.mark.parametrize("args, words", [
    (["{text}", "--json"], "it looks like a text file"),
    (["{missing}", "--json"], "does not exist"),
    (["ftp://example.com/a.mp4", "--json"], "Only http:// and https://"),
    (["http://127.0.0.1:9/a.mp4", "--json"], "private or local network address"),
    (["{good}", "--thumbnails", "0", "{dir}"], "between 1 and 100"),
    (["{good}", "--thumbnails", "many", "{dir}"], "whole number"),
])
def test_bad_input_is_one_friendly_line_and_exit_2(media, capsys, tmp_path, args, words):
    subst = {"text": str(media.get("text.mp4")), "missing": str(tmp_path / "none.mp4"),
             "good": str(media.get("mp4_h264.mp4")), "dir": str(tmp_path / "t")}
    code = main(["inspect", *[a.format(**subst) for a in args]])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and words in err[0] and "Traceback" not in err[0]


def test_real_process_exit_code_and_stderr(media, tmp_path):
    env = {**os.environ, "OPUSCLIP_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.run([sys.executable, "-m", "opusclip_ui", "inspect",
                           str(media.get("audio.mp3")), "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "error: This file is not a video: it is an MP3 audio file with no picture. "
        "Upload a file that has a video track."]
