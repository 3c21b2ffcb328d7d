"""The core never imports gradio; the CLI speaks in one friendly line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_core_never_imports_gradio():
    code = (
        "import importlib, pkgutil, sys, opusclip_ui\n"
        "for m in pkgutil.walk_packages(opusclip_ui.__path__, 'opusclip_ui.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(n for n in sys.modules if n == 'gradio' or n.startswith('gradio.'))\n"
        "print(len(list(pkgutil.walk_packages(opusclip_ui.__path__))), bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         check=True)
    count, bad = out.stdout.strip().split(" ", 1)
    assert int(count) >= 10 and bad == "[]"


def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "opusclip_ui", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


def test_selftest_json_reports_ready(tmp_path):
    cfg = tmp_path / "app.yaml"
    cfg.write_text(f"data_dir: {tmp_path / 'data'}\n")
    out = _cli("--config", str(cfg), "selftest", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    names = {c["name"]: c for c in result["checks"]}
    assert result["ok"] is True
    assert {"ffmpeg", "output folder", "torch", "gpu"} <= set(names)
    assert names["ffmpeg"]["ok"] and result["versions"]["gradio"].startswith("6.")


def test_bad_input_is_one_friendly_line_and_nonzero_exit(tmp_path):
    cfg = tmp_path / "app.yaml"
    cfg.write_text("upload_max_mb: -3\n")
    out = _cli("--config", str(cfg), "selftest")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "upload_max_mb" in lines[0] and "Traceback" not in out.stderr
    missing = _cli("--config", str(tmp_path / "nope.yaml"), "selftest")
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    unknown = _cli("frobnicate")
    assert unknown.returncode == 2 and len(unknown.stderr.strip().splitlines()) == 1
