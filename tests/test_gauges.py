"""Gauges: colour bands and what each bar says."""
from __future__ import annotations

import re

from components.gauges import level, render_gauges


def _snap(ram_pct=50.0, gpu=None, disk_free=50_000.0):
    total = 16_384.0
    return {
        "time": 1_700_000_000.0,
        "ram": {"total_mb": total, "used_mb": total * ram_pct / 100, "available_mb": total * (1 - ram_pct / 100),
                "percent": ram_pct, "source": "cgroup"},
        "process": {"rss_mb": 300.0, "cpu_percent": 12.0, "pid": 1},
        "disk": {"folder": "data/outputs", "free_mb": disk_free, "total_mb": 100_000.0,
                 "percent": 100 * (1 - disk_free / 100_000)},
        "gpu": gpu or {"mode": "cpu", "label": "CPU only", "devices": []},
    }


def test_colour_bands():
    assert [level(p) for p in (10, 74.9, 75, 89.9, 90, 100, None)] == \
        ["ok", "ok", "warn", "warn", "bad", "bad", "off"]


def test_cpu_only_machine_says_so_and_full_ram_is_red():
    out = render_gauges(_snap(ram_pct=95))
    assert re.search(r'data-gauge="RAM" data-level="bad"', out)
    assert re.search(r'data-gauge="GPU" data-level="off"', out) and "CPU only" in out
    assert "300 MB, CPU 12%" in out and "48.8 GB free" in out and "updated " in out


def test_each_gpu_gets_a_bar_with_utilisation():
    gpu = {"mode": "nvml", "label": "H200", "devices": [
        {"index": 0, "name": "H200", "used_mb": 130_000.0, "total_mb": 143_000.0, "util_percent": 97.0}]}
    out = render_gauges(_snap(gpu=gpu))
    assert 'data-gauge="GPU 0" data-level="bad"' in out and "util 97%" in out
