"""``python -m opusclip_ui generate``: offline with the tiny model, prints the sidecar; bad input is
one friendly line and exit code 2."""
from __future__ import annotations

import json

import numpy as np
import pytest

from opusclip_ui.cli import main


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("OPUSCLIP_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def test_cli_generate_json(env, capsys):
    out = env / "kite.mp4"
    rc = main(["generate", "--model", "tiny-random-t2v", "--prompt", "a red kite", "--duration", "1",
               "--quality", "low", "--seed", "7", "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    side = json.loads(captured.out)
    assert side["seed"] == 7 and side["prompt"] == "a red kite" and side["video_path"] == str(out)
    assert json.loads(out.with_suffix(".json").read_text())["seed"] == 7
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(out))
    meta = next(gen)
    assert len([np.frombuffer(f, np.uint8) for f in gen]) == side["output"]["frames"] == 8
    assert meta["fps"] == 8


@pytest.mark.parametrize("args,needle", [
    (["--prompt", " ", "--duration", "2"], "prompt is empty"),
    (["--prompt", "x", "--duration", "0"], "`duration` must be between 1 and 60"),
    (["--prompt", "x", "--duration", "nan"], "finite"),
    (["--prompt", "x", "--quality", "ultra"], "`quality` must be one of"),
    (["--prompt", "x", "--out", "/tmp/x.avi"], "must end in .mp4"),
])
def test_cli_bad_requests_are_one_line(env, capsys, args, needle):
    rc = main(["generate", *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert needle in err and "Traceback" not in err


def test_the_sidecars_reproduce_command_makes_the_same_video(env, capsys):
    import shlex

    first = env / "a.mp4"
    assert main(["generate", "--prompt", "a 'quoted' kite", "--duration", "1", "--quality", "low",
                 "--out", str(first), "--json"]) == 0
    side = json.loads(capsys.readouterr().out)
    argv = shlex.split(side["reproduce"]["command"])[3:]  # drop "python -m opusclip_ui"
    second = env / "b.mp4"
    assert main([*argv, "--out", str(second), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["seed"] == side["seed"] and side["seed_was_random"] is True
    import imageio_ffmpeg

    frames = [list(imageio_ffmpeg.read_frames(str(p)))[1:] for p in (first, second)]
    assert frames[0] == frames[1]
