"""The machine snapshot: cgroup-aware RAM, process, disk, GPU or "CPU only"; never imports torch."""
from __future__ import annotations

import subprocess
import sys

from opusclip_ui import resources


def test_snapshot_has_every_gauge(tmp_path):
    snap = resources.snapshot(tmp_path)
    assert snap["ram"]["total_mb"] > 0 and 0 <= snap["ram"]["percent"] <= 100
    assert snap["process"]["rss_mb"] > 10
    assert snap["disk"]["free_mb"] > 0 and snap["disk"]["folder"] == str(tmp_path)
    assert snap["gpu"]["mode"] in ("cpu", "nvml", "torch", "zerogpu")
    if snap["gpu"]["mode"] == "cpu":
        assert snap["gpu"]["label"] == "CPU only"


def test_cgroup_limit_wins_over_host_memory(monkeypatch):
    values = {"/sys/fs/cgroup/memory.max": 2 * 2**30, "/sys/fs/cgroup/memory.current": 2**30}
    monkeypatch.setattr(resources, "_read_int", values.get)
    ram = resources.ram_info()
    assert ram["source"] == "cgroup"
    assert round(ram["total_mb"]) == 2048 and ram["available_mb"] <= 1024


def test_unlimited_cgroup_falls_back_to_host(monkeypatch):
    monkeypatch.setattr(resources, "_read_int", lambda path: None)
    assert resources.ram_info()["source"] == "host"


def test_zerogpu_is_reported_per_job(monkeypatch):
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    assert resources.gpu_info()["label"] == "GPU attached per job"


def test_snapshot_does_not_import_torch():
    code = ("import sys; from opusclip_ui.resources import snapshot; snapshot('.'); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
