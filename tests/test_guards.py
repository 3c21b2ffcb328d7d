"""The guard toolkit: retry on a fake clock, decorators, honest timeouts, monitors, tracker."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
import time

import psutil
import pytest

from opusclip_ui import guards, notify
from opusclip_ui.errors import (Cancelled, DiskFullError, InputError, InvalidVideoError,
                                NetworkError, OperationTimeoutError, OutOfMemoryError,
                                ToolFailedError, ToolMissingError)
from opusclip_ui.guards import (ErrorTracker, MemoryMonitor, SafeOperationContext, backoff_delay,
                                data_loading_safe, file_operation_safe, model_inference_safe,
                                network_operation_safe, retry, run_command, run_in_child,
                                run_strategies)
from tests import helpers_child


class FakeClock:
    def __init__(self):
        self.sleeps: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def flaky(failures: list[BaseException], value="ok"):
    calls = {"n": 0}

    def fn():
        calls["n"] += 1
        if failures:
            raise failures.pop(0)
        return value
    return fn, calls


# --- retry --------------------------------------------------------------------------------------

def test_retry_backs_off_exponentially_then_succeeds():
    clock = FakeClock()
    fn, calls = flaky([ConnectionResetError(), ConnectionResetError(), TimeoutError()])
    assert retry(fn, max_retries=3, base_delay=1.0, jitter=0.0, sleep=clock) == "ok"
    assert calls["n"] == 4
    assert clock.sleeps == [1.0, 2.0, 4.0]


def test_retry_caps_delay_and_jitter_stays_in_bounds():
    assert backoff_delay(10, 0.5, 8.0, 0.0) == 8.0
    lo = backoff_delay(2, 1.0, 60, 0.25, rng=lambda: 0.0)
    hi = backoff_delay(2, 1.0, 60, 0.25, rng=lambda: 1.0)
    assert (lo, hi) == (3.0, 5.0)


def test_retry_gives_up_with_our_error_after_max_retries():
    clock = FakeClock()
    fn, calls = flaky([ConnectionRefusedError()] * 5)
    with pytest.raises(NetworkError):
        retry(fn, max_retries=2, base_delay=0.1, jitter=0.0, sleep=clock)
    assert calls["n"] == 3 and len(clock.sleeps) == 2


def test_retry_does_not_retry_permanent_errors():
    clock = FakeClock()
    fn, calls = flaky([ValueError("bad input")])
    with pytest.raises(ValueError):
        retry(fn, sleep=clock)
    fn404, calls404 = flaky([NetworkError("HTTP 404", status=404)])
    with pytest.raises(NetworkError):
        retry(fn404, sleep=clock)
    assert calls["n"] == 1 and calls404["n"] == 1 and clock.sleeps == []


def test_network_operation_safe_passes_timeout_and_retries():
    clock = FakeClock()
    seen = []

    @network_operation_safe(max_retries=2, timeout=7.5, sleep=clock)
    def fetch(url, timeout=None):
        seen.append(timeout)
        if len(seen) < 3:
            raise ConnectionResetError("reset")
        return url

    assert fetch("http://x") == "http://x"
    assert seen == [7.5, 7.5, 7.5] and len(clock.sleeps) == 2


# --- decorators ---------------------------------------------------------------------------------

def test_data_loading_safe_maps_errors_and_rejects_empty():
    @data_loading_safe(validate_data=True)
    def load(path):
        if path == "missing":
            raise FileNotFoundError(errno.ENOENT, "No such file", path)
        return {}

    with pytest.raises(InputError, match="not found"):
        load("missing")
    with pytest.raises(InputError, match="no usable data"):
        load("empty")


def test_data_loading_safe_timeout_stops_waiting():
    release = threading.Event()

    @data_loading_safe(validate_data=False, timeout=0.2)
    def slow():
        release.wait(5)
        return 1

    start = time.perf_counter()
    with pytest.raises(OperationTimeoutError) as info:
        slow()
    release.set()
    assert time.perf_counter() - start < 2
    assert "cannot be killed" in info.value.details


def test_model_inference_safe_falls_back_to_cpu_and_warns():
    devices = []

    @model_inference_safe(gpu_fallback=True, memory_monitoring=True)
    def infer(x, device="cuda"):
        devices.append(device)
        if device == "cuda":
            raise RuntimeError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return x * 2

    with notify.collect_warnings() as warned:
        assert infer(21) == 42
    assert devices == ["cuda", "cpu"]
    assert len(warned) == 1 and "CPU" in warned[0]


def test_model_inference_safe_without_fallback_raises_oom():
    @model_inference_safe(gpu_fallback=False)
    def infer(device="cuda"):
        raise RuntimeError("CUDA out of memory.")

    with pytest.raises(OutOfMemoryError):
        infer()


def test_file_operation_safe_restores_old_file_on_failure(tmp_path):
    target = tmp_path / "cfg.json"
    target.write_text('{"v": 1}')

    @file_operation_safe(backup=True, verify_after_write=True)
    def write(path, text, fail=False):
        with open(path, "w") as fh:
            fh.write(text[:3])
            if fail:
                raise OSError(errno.ENOSPC, "No space left on device")
            fh.write(text[3:])

    with pytest.raises(DiskFullError):
        write(target, '{"v": 2}', fail=True)
    assert json.loads(target.read_text()) == {"v": 1}
    write(target, '{"v": 3}')
    assert json.loads(target.read_text()) == {"v": 3}
    assert json.loads((tmp_path / "cfg.json.bak").read_text()) == {"v": 1}


def test_file_operation_safe_verifies_the_write(tmp_path):
    @file_operation_safe(backup=False, verify_after_write=True)
    def forgets_to_write(path):
        return None

    with pytest.raises(ToolFailedError, match="was not written"):
        forgets_to_write(tmp_path / "x.json")


# --- child processes ----------------------------------------------------------------------------

def test_run_command_kills_the_whole_process_group(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    script = f"sleep 30 & echo $! > {pidfile}; wait"
    with pytest.raises(OperationTimeoutError):
        run_command(["bash", "-c", script], timeout=1.0)
    grandchild = int(pidfile.read_text())
    time.sleep(0.2)
    assert not psutil.pid_exists(grandchild) or \
        psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE


def test_run_command_reports_missing_and_failing_tools():
    with pytest.raises(ToolMissingError):
        run_command(["definitely-not-a-tool-xyz"], timeout=5)
    with pytest.raises(ToolFailedError, match="exit code 3"):
        run_command([sys.executable, "-c", "import sys; sys.exit(3)"], timeout=30)


def test_run_command_stops_on_cancel():
    token = notify.CancelToken()
    threading.Timer(0.3, token.cancel).start()
    start = time.perf_counter()
    with notify.sink(cancel=token), pytest.raises(Cancelled):
        run_command(["sleep", "30"], timeout=60)
    assert time.perf_counter() - start < 5


def test_run_in_child_returns_and_maps_errors():
    assert run_in_child(helpers_child.add, 2, 3, timeout=60) == 5
    with pytest.raises(InvalidVideoError, match="not a video"):
        run_in_child(helpers_child.raise_ours, timeout=60)
    with pytest.raises(ToolFailedError, match="crashed"):
        run_in_child(helpers_child.hard_crash, timeout=60)


def test_run_in_child_timeout_kills_the_child(tmp_path):
    pidfile = tmp_path / "child.pid"
    with pytest.raises(OperationTimeoutError):
        run_in_child(helpers_child.sleep_and_write_pid, str(pidfile), 30, timeout=3)
    time.sleep(0.3)
    pid = int(pidfile.read_text())
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_run_in_child_memory_cap_stops_a_hungry_child():
    with pytest.raises((ToolFailedError, OutOfMemoryError)):
        run_in_child(helpers_child.allocate, 4096, timeout=60, memory_limit_mb=1024)


# --- contexts and tracker -----------------------------------------------------------------------

def test_safe_operation_context_never_swallows_and_records(caplog):
    tracker = ErrorTracker()
    ctx = SafeOperationContext("probe", tracker=tracker)
    with pytest.raises(ZeroDivisionError):
        with ctx:
            1 / 0
    assert ctx.success is False and ctx.duration >= 0
    assert tracker.report()["by_context"] == {"probe": 1}
    with SafeOperationContext("ok") as good:
        pass
    assert good.success is True


def test_memory_monitor_sees_rss_growth_and_warns(caplog):
    with MemoryMonitor(threshold_mb=20, name="alloc") as mon:
        blob = bytearray(80 * 2**20)
        blob[::4096] = b"x" * len(blob[::4096])
    assert mon.rss_delta_mb > 40 and mon.over_threshold
    assert mon.gpu_peak_mb is None
    assert any("used a lot of memory" in r.getMessage() for r in caplog.records)
    del blob


def test_error_tracker_is_bounded_and_counts_everything():
    tracker = ErrorTracker(max_records=5)
    for i in range(12):
        tracker.record(ValueError(f"e{i}") if i % 2 else InvalidVideoError(f"v{i}"),
                       "inspect" if i < 6 else "generate", 0.01)
    report = tracker.report()
    assert report["total"] == 12
    assert report["by_type"] == {"InvalidVideoError": 6, "ValueError": 6}
    assert report["by_context"] == {"inspect": 6, "generate": 6}
    assert [r["message"] for r in report["recent"]] == ["e7", "v8", "e9", "v10", "e11"]
    assert "traceback" not in report["recent"][0]
    json.dumps(tracker.report(with_tracebacks=True))  # the export is plain JSON


def test_error_tracker_is_thread_safe():
    tracker = ErrorTracker(max_records=50)

    def hammer():
        for _ in range(500):
            tracker.record(RuntimeError("x"), "load")

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = tracker.report(recent=100)
    assert report["total"] == 4000 and len(report["recent"]) == 50


def test_run_strategies_falls_through_in_order_and_announces():
    calls = []

    def fail(name, exc):
        def fn():
            calls.append(name)
            raise exc
        return fn

    strategies = [("GPU", fail("GPU", RuntimeError("CUDA out of memory"))),
                  ("half precision", fail("half", MemoryError())),
                  ("CPU", lambda: calls.append("CPU") or "done")]
    with notify.collect_warnings() as warned:
        result, used = run_strategies(strategies)
    assert (result, used) == ("done", "CPU")
    assert calls == ["GPU", "half", "CPU"]
    assert len(warned) == 2 and warned[0].endswith("Trying: half precision.")


def test_run_strategies_raises_the_last_error_and_respects_cancel():
    with pytest.raises(OutOfMemoryError):
        run_strategies([("a", lambda: (_ for _ in ()).throw(MemoryError())),
                        ("b", lambda: (_ for _ in ()).throw(MemoryError()))], announce=False)
    calls = []

    def cancelled():
        calls.append(1)
        raise Cancelled()
    with pytest.raises(Cancelled):
        run_strategies([("a", cancelled), ("b", lambda: calls.append(2))])
    assert calls == [1]


def test_notify_sinks_are_per_thread_context():
    seen: dict[str, list[str]] = {"a": [], "b": []}

    def job(name):
        with notify.sink(on_warn=seen[name].append):
            for i in range(50):
                notify.warn(f"{name}{i}")

    threads = [threading.Thread(target=job, args=(n,)) for n in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(m.startswith("a") for m in seen["a"]) and len(seen["a"]) == 50
    assert all(m.startswith("b") for m in seen["b"]) and len(seen["b"]) == 50


def test_collect_warnings_still_reaches_the_outer_sink():
    shown = []
    with notify.sink(on_warn=shown.append):
        with notify.collect_warnings() as inner:
            notify.warn("rung 2: tiled decode")
    assert inner == ["rung 2: tiled decode"] and shown == ["rung 2: tiled decode"]


def test_run_in_child_forwards_progress_to_the_parent():
    seen = []
    with notify.sink(on_progress=lambda f, d: seen.append((f, d))):
        assert run_in_child(helpers_child.with_progress, timeout=60) == "done"
    assert seen == [(0.25, "first quarter"), (0.75, "nearly")]
