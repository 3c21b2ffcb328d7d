"""The guard toolkit: decorators, retry, honest timeouts, monitors and the error tracker.

Timeouts are honest about what they can do:

* ``run_command`` and ``run_in_child`` run work in a child process in its own process group; on
  timeout (or cancel) the whole group is killed, so the work really stops.
* ``data_loading_safe(timeout=...)`` runs the function in a thread. A Python thread cannot be killed:
  on timeout the caller stops waiting and gets ``OperationTimeoutError``, while the thread may run on
  in the background. Use the child-process helpers for work that must be stopped.
"""
from __future__ import annotations

import collections
import contextvars
import functools
import gc
import inspect
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from . import notify
from .errors import (Cancelled, InputError, NetworkError, OperationTimeoutError, OpusClipError,
                     OutOfMemoryError, ToolFailedError, ToolMissingError,
                     WeightsUnavailableOfflineError, map_errors, map_exception)
from .log import setup_logging

__all__ = [
    "is_transient", "retry", "backoff_delay",
    "data_loading_safe", "model_inference_safe", "file_operation_safe", "network_operation_safe",
    "run_command", "run_in_child", "report_progress", "add_forkserver_preload",
    "kill_process_group",
    "SafeOperationContext", "MemoryMonitor", "ErrorTracker", "run_strategies", "cleanup_memory",
]

T = TypeVar("T")
_log = setup_logging("guards")


# --- retry ------------------------------------------------------------------------------------

def is_transient(exc: BaseException) -> bool:
    """True for errors that may go away on retry: network faults (not HTTP 4xx), timeouts, and a
    hub that could not be reached because of one."""
    exc = map_exception(exc)
    if isinstance(exc, (NetworkError, WeightsUnavailableOfflineError)):
        return exc.transient
    return isinstance(exc, OperationTimeoutError)


def backoff_delay(attempt: int, base_delay: float, max_delay: float, jitter: float,
                  rng: Callable[[], float] = random.random) -> float:
    """Exponential backoff for retry ``attempt`` (0-based), capped, with +-``jitter`` spread."""
    delay = min(max_delay, base_delay * (2 ** attempt))
    return max(0.0, delay * (1 + jitter * (2 * rng() - 1)))


def retry(fn: Callable[[], T], *, max_retries: int = 3, base_delay: float = 0.5,
          max_delay: float = 8.0, jitter: float = 0.1, sleep: Callable[[float], None] = time.sleep,
          transient: Callable[[BaseException], bool] = is_transient,
          rng: Callable[[], float] = random.random, what: str = "operation") -> T:
    """Call ``fn`` until it succeeds, retrying transient errors with exponential backoff.

    Non-transient errors raise at once. After the last attempt the error is raised as our type.
    ``sleep`` and ``rng`` are injectable so tests run on a fake clock.
    """
    for attempt in range(max_retries + 1):
        try:
            return fn()
        except Exception as exc:
            mapped = map_exception(exc)
            if attempt >= max_retries or not transient(mapped):
                if mapped is exc:
                    raise
                raise mapped from exc
            delay = backoff_delay(attempt, base_delay, max_delay, jitter, rng)
            _log.warning("%s failed (attempt %d of %d): %s; retrying in %.2fs",
                         what, attempt + 1, max_retries + 1, mapped, delay)
        notify.check_cancel()
        sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


# --- decorators -------------------------------------------------------------------------------

def _accepts(fn: Callable, name: str) -> bool:
    params = inspect.signature(fn).parameters
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _wait_in_thread(fn: Callable[..., T], args: tuple, kwargs: dict, timeout: float,
                    what: str) -> T:
    box: dict[str, Any] = {}
    ctx = contextvars.copy_context()

    def target() -> None:
        try:
            box["result"] = ctx.run(fn, *args, **kwargs)
        except BaseException as exc:  # handed to the waiting caller
            box["error"] = exc

    worker = threading.Thread(target=target, name=f"opusclip-{what}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise OperationTimeoutError(
            f"{what} did not finish within {timeout:g} s.",
            details="thread-based timeout: the worker thread cannot be killed and may still run")
    if "error" in box:
        raise box["error"]
    return box["result"]


def data_loading_safe(validate_data: bool = True, timeout: float | None = None):
    """Guard a loader: map errors, log start/end, optionally time out and reject empty results.

    Args:
        validate_data: raise ``InputError`` when the loader returns None or an empty container.
        timeout: seconds to wait; the caller stops waiting (a thread cannot be killed; see module doc).
    """
    def decorate(fn: Callable[..., T]) -> Callable[..., T]:
        what = fn.__name__

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> T:
            with SafeOperationContext(what), map_errors():
                if timeout is None:
                    result = fn(*args, **kwargs)
                else:
                    result = _wait_in_thread(fn, args, kwargs, timeout, what)
                if validate_data and (result is None or
                                      (hasattr(result, "__len__") and len(result) == 0)):
                    raise InputError(f"{what} found no usable data.",
                                     "Check that the input is not empty and try again.")
                return result
        return wrapper
    return decorate


def model_inference_safe(gpu_fallback: bool = True, memory_monitoring: bool = True,
                         threshold_mb: int = 1024):
    """Guard inference: map errors, watch memory, and on GPU OOM run once more on the CPU.

    The fallback needs the function to take a ``device`` keyword; it is called again with
    ``device="cpu"`` after memory is cleaned up (outside the ``except`` block, whose traceback would
    keep GPU tensors alive).
    """
    def decorate(fn: Callable[..., T]) -> Callable[..., T]:
        can_fallback = gpu_fallback and _accepts(fn, "device")

        def attempt(args: tuple, kwargs: dict) -> T:
            with SafeOperationContext(fn.__name__), map_errors():
                if not memory_monitoring:
                    return fn(*args, **kwargs)
                with MemoryMonitor(threshold_mb):
                    return fn(*args, **kwargs)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> T:
            try:
                return attempt(args, kwargs)
            except OutOfMemoryError as exc:
                if not can_fallback or exc.device == "cpu":
                    raise
                device = exc.device
            cleanup_memory()
            notify.warn(f"The GPU ran out of memory ({device}); running this on the CPU instead "
                        "(slower).")
            return attempt(args, {**kwargs, "device": "cpu"})
        return wrapper
    return decorate


def file_operation_safe(backup: bool = True, verify_after_write: bool = True):
    """Guard a function ``fn(path, ...)`` that writes ``path``.

    With ``backup`` the old file is copied to ``<name>.bak`` first and restored if the write fails.
    With ``verify_after_write`` the file must exist and be non-empty afterwards.
    """
    def decorate(fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)
        def wrapper(path: str | Path, *args: Any, **kwargs: Any) -> T:
            target = Path(path)
            bak = target.with_name(target.name + ".bak")
            had_old = backup and target.exists()
            with SafeOperationContext(fn.__name__), map_errors():
                if had_old:
                    shutil.copy2(target, bak)
                try:
                    result = fn(path, *args, **kwargs)
                    if verify_after_write and (not target.is_file() or target.stat().st_size == 0):
                        raise ToolFailedError(f"{target.name} was not written.",
                                              "Check free disk space and permissions, then retry.")
                except BaseException:
                    if had_old:
                        os.replace(bak, target)
                        shutil.copy2(target, bak)
                    raise
                return result
        return wrapper
    return decorate


def network_operation_safe(max_retries: int = 3, timeout: float = 30.0, base_delay: float = 0.5,
                           max_delay: float = 8.0, sleep: Callable[[float], None] | None = None):
    """Guard a network call: map errors and retry transient ones with backoff and jitter.

    ``timeout`` is passed to the function as ``timeout=`` when it takes one and the caller gave none
    (the I/O library enforces it; nothing is killed).
    """
    def decorate(fn: Callable[..., T]) -> Callable[..., T]:
        pass_timeout = _accepts(fn, "timeout")

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> T:
            if pass_timeout:
                kwargs.setdefault("timeout", timeout)
            with SafeOperationContext(fn.__name__):
                return retry(lambda: fn(*args, **kwargs), max_retries=max_retries,
                             base_delay=base_delay, max_delay=max_delay,
                             sleep=sleep or time.sleep, what=fn.__name__)
        return wrapper
    return decorate


# --- child processes --------------------------------------------------------------------------

def kill_process_group(proc_pid: int) -> None:
    """SIGKILL a child that leads its own process group, and everything it started."""
    try:
        os.killpg(proc_pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(proc_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_command(args: Sequence[str], *, timeout: float, input: bytes | None = None,
                cwd: str | Path | None = None, env: dict[str, str] | None = None,
                check: bool = True, stdout: int | None = subprocess.PIPE,
                stderr: int | None = subprocess.PIPE, poll: float = 0.2
                ) -> subprocess.CompletedProcess:
    """Run a command in its own process group; kill the whole group on timeout or cancel.

    Raises:
        ToolMissingError: the program is not installed.
        OperationTimeoutError: it ran past ``timeout`` (the group was killed).
        Cancelled: the current job was cancelled (the group was killed).
        ToolFailedError: it exited non-zero (with ``check``); stderr's tail goes to ``details``.
    """
    name = Path(str(args[0])).name
    try:
        proc = subprocess.Popen(list(map(str, args)), stdin=subprocess.PIPE if input else None,
                                stdout=stdout, stderr=stderr, cwd=cwd, env=env,
                                start_new_session=True)
    except FileNotFoundError as exc:
        raise ToolMissingError(f"`{name}` is not installed or not on the PATH.") from exc
    except PermissionError as exc:
        raise ToolMissingError(f"`{name}` cannot be executed (permission denied).") from exc
    deadline = time.monotonic() + timeout
    out = err = None
    pending_input = input
    try:
        while True:
            try:
                out, err = proc.communicate(pending_input,
                                            timeout=min(poll, max(0.0, deadline - time.monotonic())))
                break
            except subprocess.TimeoutExpired:
                pending_input = None
                if time.monotonic() >= deadline:
                    raise OperationTimeoutError(f"`{name}` did not finish within {timeout:g} s "
                                                "and was stopped.") from None
                notify.check_cancel()
    except BaseException:
        kill_process_group(proc.pid)
        proc.wait()
        raise
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    if check and proc.returncode != 0:
        tail = (err or b"")[-2000:].decode("utf-8", "replace") if isinstance(err, bytes) else ""
        how = (f"was killed by signal {-proc.returncode}" if proc.returncode < 0
               else f"failed with exit code {proc.returncode}")
        raise ToolFailedError(f"`{name}` {how}.", details=tail)
    return result


_child_conn = None  # the child's end of the pipe, set in run_in_child children only


def report_progress(fraction: float, desc: str = "") -> None:
    """From inside a ``run_in_child`` child: send progress to the parent's ``notify.progress``.

    A no-op anywhere else, so code that runs in both places can call it freely.
    """
    if _child_conn is not None:
        try:
            _child_conn.send(("progress", float(fraction), desc))
        except (OSError, ValueError):
            pass


def _child_main(conn, fn: Callable, args: tuple, memory_limit_mb: int | None) -> None:
    global _child_conn
    _child_conn = conn
    os.setsid()
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crashing decoder leaves no core file
        if memory_limit_mb:
            limit = memory_limit_mb * 2**20
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):  # not on this platform: the timeout still holds
        pass
    try:
        conn.send(("ok", fn(*args)))
    except BaseException as exc:  # sent back to the parent as our type when possible
        mapped = map_exception(exc)
        if isinstance(mapped, OpusClipError):
            conn.send(("err", (type(mapped).__name__, mapped.user_message, mapped.hint,
                               mapped.details or f"{type(exc).__name__}: {exc}")))
        else:
            conn.send(("crash", (f"{type(exc).__name__}: {exc}",
                                 traceback.format_exc(limit=8))))
    finally:
        conn.close()


_mp_ctx = None
_mp_lock = threading.Lock()
_preload = ["__main__", "opusclip_ui.guards"]


def _context():
    global _mp_ctx
    with _mp_lock:
        if _mp_ctx is None:
            # forkserver: children fork from a clean server (no threads, no CUDA, no gradio), so a
            # threaded server can start them safely and cheaply. The server imports the main
            # script once (app.py guards its build against __mp_main__), so children don't.
            _mp_ctx = multiprocessing.get_context("forkserver")
            _mp_ctx.set_forkserver_preload(list(_preload))
        return _mp_ctx


def add_forkserver_preload(modules: Sequence[str]) -> None:
    """Have every child start with ``modules`` already imported (e.g. PyAV for probes).

    Takes effect if called before the first child starts; later it changes nothing (children
    then import the modules themselves: slower, still correct). Unimportable names are skipped.
    """
    with _mp_lock:
        _preload.extend(m for m in modules if m not in _preload)
        if _mp_ctx is not None:
            _mp_ctx.set_forkserver_preload(list(_preload))


def run_in_child(fn: Callable[..., T], *args: Any, timeout: float,
                 memory_limit_mb: int | None = None, what: str | None = None) -> T:
    """Run a picklable top-level ``fn(*args)`` in a child process with a timeout and memory cap.

    The child leads its own process group; on timeout or cancel the group is killed. Our typed errors
    raised in the child come back as the same types; a crash (signal, memory cap) becomes
    ``ToolFailedError``.
    """
    from . import errors as errors_mod

    what = what or fn.__name__
    ctx = _context()
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_main, args=(send, fn, args, memory_limit_mb), daemon=True)
    proc.start()
    send.close()
    deadline = time.monotonic() + timeout
    try:
        while True:
            if not recv.poll(0.05):
                if not proc.is_alive() and not recv.poll(0):
                    raise ToolFailedError(f"{what} crashed (exit code {proc.exitcode}).",
                                          details="the child process died without an answer")
                if time.monotonic() >= deadline:
                    raise OperationTimeoutError(f"{what} did not finish within {timeout:g} s "
                                                "and was stopped.")
                notify.check_cancel()
                continue
            try:
                status, *payload = recv.recv()
            except EOFError:  # the child closed the pipe by dying
                proc.join(5)
                raise ToolFailedError(f"{what} crashed (exit code {proc.exitcode}).",
                                      details="the child process died without an answer") from None
            if status != "progress":
                payload = payload[0]
                break
            notify.progress(*payload)
    except BaseException:
        kill_process_group(proc.pid)
        raise
    finally:
        recv.close()
        proc.join(1)
        if proc.is_alive():
            kill_process_group(proc.pid)
            proc.join()
    if status == "ok":
        return payload
    if status == "err":
        name, message, hint, details = payload
        cls = getattr(errors_mod, name, OpusClipError)
        err = cls.__new__(cls)
        OpusClipError.__init__(err, message, hint, details=details)
        if isinstance(err, OutOfMemoryError):
            err.device = "cpu"
        raise err
    message, child_traceback = payload
    raise ToolFailedError(f"{what} failed: {message}", details=child_traceback)


# --- context managers and the tracker ---------------------------------------------------------

class SafeOperationContext:
    """Log the start and end (with duration) of an operation; never swallows exceptions.

    ``success`` tells afterwards whether the block finished; ``tracker`` (optional) records failures.
    """

    def __init__(self, operation_name: str, tracker: "ErrorTracker | None" = None,
                 logger_name: str = "operation"):
        self.operation_name = operation_name
        self.tracker = tracker
        self.logger = setup_logging(logger_name)
        self.success = False
        self.duration = 0.0
        self._start = 0.0

    def __enter__(self) -> "SafeOperationContext":
        self._start = time.perf_counter()
        self.logger.debug("start %s", self.operation_name)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.duration = time.perf_counter() - self._start
        if exc is None:
            self.success = True
            self.logger.debug("done %s in %.3fs", self.operation_name, self.duration)
        else:
            self.logger.info("failed %s after %.3fs: %s: %s", self.operation_name, self.duration,
                             exc_type.__name__, exc)
            if self.tracker is not None and isinstance(exc, Exception):
                self.tracker.record(exc, self.operation_name, self.duration)
        return False


class MemoryMonitor:
    """Measure the process RSS change across a block, and the CUDA peak where CUDA is in use.

    Logs a warning when the RSS grew (or the GPU peak reached) more than ``threshold_mb``.
    Never initialises CUDA itself.
    """

    def __init__(self, threshold_mb: float = 1024, name: str = "block"):
        self.threshold_mb = threshold_mb
        self.name = name
        self.rss_start_mb = self.rss_end_mb = self.rss_delta_mb = 0.0
        self.gpu_peak_mb: float | None = None
        self.over_threshold = False

    @staticmethod
    def _cuda():
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            return torch.cuda
        return None

    def __enter__(self) -> "MemoryMonitor":
        import psutil

        self._proc = psutil.Process()
        self.rss_start_mb = self._proc.memory_info().rss / 2**20
        cuda = self._cuda()
        if cuda is not None:
            cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.rss_end_mb = self._proc.memory_info().rss / 2**20
        self.rss_delta_mb = self.rss_end_mb - self.rss_start_mb
        cuda = self._cuda()
        if cuda is not None:
            self.gpu_peak_mb = cuda.max_memory_allocated() / 2**20
        worst = max(self.rss_delta_mb, self.gpu_peak_mb or 0.0)
        self.over_threshold = worst > self.threshold_mb
        if self.over_threshold:
            _log.warning("%s used a lot of memory: RSS %+.0f MB, GPU peak %s MB (threshold %g MB)",
                         self.name, self.rss_delta_mb,
                         "n/a" if self.gpu_peak_mb is None else f"{self.gpu_peak_mb:.0f}",
                         self.threshold_mb)
        return False


class ErrorTracker:
    """Thread-safe, bounded record of failures for the Diagnostics panel.

    Counts are cumulative; only the last ``max_records`` failures are kept in full.
    """

    def __init__(self, max_records: int = 200):
        self._lock = threading.Lock()
        self._records: collections.deque[dict[str, Any]] = collections.deque(maxlen=max_records)
        self._by_type: collections.Counter[str] = collections.Counter()
        self._by_context: collections.Counter[str] = collections.Counter()
        self._total = 0

    def record(self, error: BaseException, context: str, duration: float | None = None) -> None:
        message = error.user_message if isinstance(error, OpusClipError) else str(error)
        entry = {
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "type": type(error).__name__,
            "message": message[:500],
            "context": context,
            "duration_s": None if duration is None else round(duration, 3),
            "traceback": "".join(traceback.format_exception(error))[-4000:],
        }
        with self._lock:
            self._records.append(entry)
            self._by_type[entry["type"]] += 1
            self._by_context[context] += 1
            self._total += 1

    def report(self, recent: int = 10, with_tracebacks: bool = False) -> dict[str, Any]:
        """Total, counts by type and by context, and the last ``recent`` failures (newest last)."""
        with self._lock:
            last = list(self._records)[-recent:] if recent else []
            return {
                "total": self._total,
                "by_type": dict(self._by_type.most_common()),
                "by_context": dict(self._by_context.most_common()),
                "recent": [r if with_tracebacks else {k: v for k, v in r.items() if k != "traceback"}
                           for r in last],
            }

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
            self._by_type.clear()
            self._by_context.clear()
            self._total = 0


def cleanup_memory() -> None:
    """Collect garbage and release cached accelerator memory (only where torch is in use)."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is None:
        return
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
        torch.cuda.ipc_collect()
    mps = getattr(torch, "mps", None)
    if mps is not None and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        mps.empty_cache()


def run_strategies(strategies: Sequence[tuple[str, Callable[[], T]]], *,
                   between: Callable[[], None] | None = cleanup_memory,
                   announce: bool = True, retry_on: Callable[[BaseException], bool] | None = None
                   ) -> tuple[T, str]:
    """Try ``(name, fn)`` strategies in order; return ``(result, name)`` of the first that works.

    Each failure is logged; before the next strategy ``between`` runs outside the ``except`` block,
    and (with ``announce``) the user is told which fallback comes next. ``retry_on`` limits which
    errors move on to the next strategy (others raise at once). ``Cancelled`` always raises. When
    every strategy fails, the last error is raised.
    """
    if not strategies:
        raise ValueError("run_strategies needs at least one strategy")
    last: BaseException | None = None
    for index, (name, fn) in enumerate(strategies):
        if last is not None:
            if between is not None:
                between()
            if announce:
                notify.warn(f"{last} Trying: {name}.")
            last = None
        try:
            with map_errors():
                return fn(), name
        except Cancelled:
            raise
        except Exception as exc:
            if retry_on is not None and not retry_on(exc):
                raise
            _log.warning("strategy %d/%d (%s) failed: %s", index + 1, len(strategies), name, exc)
            if index == len(strategies) - 1:
                raise
            last = exc
    raise AssertionError("unreachable")  # pragma: no cover
