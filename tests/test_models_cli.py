"""``python -m opusclip_ui models ...``: list, load, embed, pull, through the real CLI entry point."""
from __future__ import annotations

import json

import pytest

from opusclip_ui.cli import main
from tests.models_fixtures import tiny_cache  # noqa: F401


@pytest.fixture
def cli_env(monkeypatch, tmp_path, tiny_cache):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OPUSCLIP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("OPUSCLIP_CACHE_DIR", str(tiny_cache))
    return tmp_path


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_models_list_json(cli_env, capsys):
    code, out, _ = _run(capsys, "models", "list", "--json")
    assert code == 0
    data = json.loads(out)
    rows = {r["name"]: r for r in data["models"]}
    assert rows["minilm"]["status"] == "cached" and rows["minilm"]["fit"] == "fits"
    assert rows["wan2.1-t2v-1.3b"]["status"] == "unavailable-offline"
    assert rows["tiny-random-t2v"]["warning"].startswith("random weights")
    assert data["recommended"]["text-encoder"] == "minilm"


def test_models_load_json(cli_env, capsys):
    code, out, _ = _run(capsys, "models", "load", "tiny-random-t2v", "--json")
    assert code == 0
    info = json.loads(out)
    assert info["device"] == "cpu" and info["dtype"] == "float32" and info["rung"] == "full"
    assert info["seconds"] > 0
    assert {c["component"] for c in info["components"]} >= {"transformer", "vae", "text_encoder"}


def test_models_embed_json(cli_env, capsys):
    code, out, _ = _run(capsys, "models", "embed", "minilm", "a dog runs in the park",
                        "a puppy is running on grass", "tax law changed in 2019", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["shape"] == [3, 384]
    sim = data["similarity"]
    assert sim[0][1] > sim[0][2] and sim[0][1] > sim[1][2]


def test_models_pull_offline_is_one_friendly_line(cli_env, capsys):
    code, out, err = _run(capsys, "models", "pull", "cogvideox-2b")
    assert code == 2 and out == ""
    assert err.startswith("error: ") and "offline" in err
    assert "models pull cogvideox-2b" in err


def test_models_embed_wrong_kind(cli_env, capsys):
    code, _, err = _run(capsys, "models", "embed", "tiny-random-t2v", "hello")
    assert code == 2 and "not a loaded text encoder" in err


def test_listing_models_does_not_import_torch(tmp_path):
    """Cards, status and fit are cheap: the app starts and lists models without torch."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys\nfrom pathlib import Path\n"
            "from opusclip_ui.settings import Settings\n"
            "from opusclip_ui.models.manager import ModelManager\n"
            f"m = ModelManager(Settings(data_dir=Path({str(tmp_path)!r})))\n"
            "rows = m.list_models()['models']\n"
            "print(len(rows), 'torch' in sys.modules, 'diffusers' in sys.modules)\n")
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root,
                         timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr
    count, torch_loaded, diffusers_loaded = out.stdout.split()
    assert int(count) >= 6 and torch_loaded == "False" and diffusers_loaded == "False"
