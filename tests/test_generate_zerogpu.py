"""ZeroGPU is optional: without the ``spaces`` package (or off a ZeroGPU Space) nothing of it runs."""
from __future__ import annotations

import importlib.util

from opusclip_ui.generate import zerogpu


def test_without_spaces_run_on_gpu_just_calls_the_job():
    if importlib.util.find_spec("spaces") is None:
        assert zerogpu.ZEROGPU_ACTIVE is False
    calls = []

    def job():
        calls.append(1)
        return "done"

    assert zerogpu.run_on_gpu(job) == "done" and calls == [1]


def test_gpu_duration_follows_the_estimate_within_limits():
    class Job:
        estimated_seconds = 40.0

    assert zerogpu.gpu_duration(Job()) == 70  # 40 * 1.5 + 10
    Job.estimated_seconds = 1.0
    assert zerogpu.gpu_duration(Job()) == 30
    Job.estimated_seconds = 10_000.0
    assert zerogpu.gpu_duration(Job()) == 300
