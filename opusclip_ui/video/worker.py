"""Run untrusted-media work in a child process that can be killed: probe, thumbnails, scene cuts.

A hostile file can crash or hang a decoder. Everything that opens a user's file runs here, in a child
process with a wall-clock timeout, an address-space limit and its own process group, so the worst a
file can do is kill or hang that child. The parent polls a pipe, forwards progress to
``notify.progress``, kills the child when the job's cancel token is set, and turns a dead child into a
typed error.

Why not a fresh ``python`` per call: importing PyAV, numpy and Pillow costs 0.2 to 0.7 s, far more
than the whole probe. Children are forked from a *forkserver* that preloads those modules once (it is
a clean, single-threaded process, so forking it is safe even though the app itself runs many
threads): a probe then costs tens of milliseconds end to end (see benchmarks/RESULTS_inspect.md).

Caveat (measured): when the app runs as a *script* (``python app.py``), multiprocessing makes every
forkserver child re-import that script as ``__mp_main__`` unless the forkserver preloaded
``"__main__"``; a script that builds the app at module level would then rebuild it in each child.
The fix belongs to app.py (skip module-level work when ``__name__ == "__mp_main__"``) plus
``"__main__"`` in the guards' preload list; ``python -m`` entry points and pytest are not affected.

The child reports progress with :func:`report` (a no-op outside a worker child).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
import traceback
from typing import Any, Callable

from .. import notify
from ..errors import OperationTimeoutError, ToolFailedError
from ..log import setup_logging

__all__ = ["run_child", "report", "prepare", "warm_up", "ChildCrashed", "PRELOAD"]

_log = setup_logging("video.worker")

#: Modules the forkserver imports once, so each child starts with them loaded.
PRELOAD = ["opusclip_ui.guards", "opusclip_ui.video._media"]

_ctx_lock = threading.Lock()
_ctx: Any = None
_conn = None  # the child's end of the pipe, set in the child only


class ChildCrashed(ToolFailedError):
    """The child died without an answer (a signal, the memory limit, a decoder crash)."""

    def __init__(self, user_message: str, *, exitcode: int | None, details: str | None = None):
        super().__init__(user_message, details=details)
        self.exitcode = exitcode


def _context():
    """The app's one forkserver context (shared with ``guards.run_in_child``), PyAV preloaded.

    The forkserver is a process-wide singleton: whoever starts it first fixes its preload list.
    We take the guards' context and widen its preload before the server starts, so probes run by
    either runner start with PyAV, numpy and Pillow already imported. If the server is already
    running, this changes nothing (children then import them themselves: slower, still correct).
    """
    global _ctx
    with _ctx_lock:
        if _ctx is None:
            try:
                from .. import guards

                ctx = guards._context()
            except (ImportError, AttributeError):  # no shared context: our own
                ctx = mp.get_context("forkserver")
            ctx.set_forkserver_preload(_merged_preload())
            _ctx = ctx
        return _ctx


def _merged_preload() -> list[str]:
    """Our modules added to whatever the guards asked the forkserver to preload (never fewer)."""
    try:
        from multiprocessing import forkserver

        current = list(getattr(forkserver._forkserver, "_preload_modules", []) or [])
    except (ImportError, AttributeError):
        current = []
    return current + [m for m in PRELOAD if m not in current]


def prepare() -> None:
    """Set up the shared forkserver context (call before the first child starts)."""
    _context()


def warm_up() -> None:
    """Start the forkserver now (about 0.3 to 1 s), so the first upload does not pay for it."""
    run_child(_noop, timeout=30)


def _noop() -> None:
    return None


def report(fraction: float, desc: str = "") -> None:
    """Send progress from inside a worker child to the parent (no-op elsewhere)."""
    if _conn is not None:
        try:
            _conn.send(("progress", float(fraction), desc))
        except (OSError, ValueError):
            pass


def _limit_memory(memory_limit_mb: int | None) -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crashing decoder leaves no core file
        if memory_limit_mb:
            limit = int(memory_limit_mb) * 2**20
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):  # not on this platform: the timeout still holds
        pass


def _entry(conn, fn: Callable[..., Any], args: tuple, memory_limit_mb: int | None) -> None:
    global _conn
    _conn = conn
    try:
        os.setpgrp()  # our own group, so a kill reaches anything the decoder started
    except OSError:
        pass
    _limit_memory(memory_limit_mb)
    try:
        result = fn(*args)
        conn.send(("ok", result))
    except MemoryError:
        conn.send(("memory", "", ""))
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent as data
        conn.send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=8)))
    finally:
        conn.close()


def _kill(proc) -> None:
    if proc.pid is None:
        return
    for kill in (lambda: os.killpg(proc.pid, signal.SIGKILL), lambda: os.kill(proc.pid, signal.SIGKILL)):
        try:
            kill()
        except (ProcessLookupError, PermissionError, OSError):
            pass
    proc.join(5)


def run_child(fn: Callable[..., Any], *args: Any, timeout: float, memory_limit_mb: int | None = None,
              what: str = "The video") -> Any:
    """Run top-level ``fn(*args)`` in a killable child and return its (picklable) result.

    Args:
        fn: a top-level function in an importable module.
        timeout: wall-clock seconds before the child is killed.
        memory_limit_mb: address-space limit for the child (None: no limit).
        what: subject for messages, e.g. "Probing the video".

    Raises:
        OperationTimeoutError: the child ran past ``timeout``.
        Cancelled: the current job's cancel token was set (the child is killed).
        MemoryError: the child hit its memory limit.
        ChildCrashed: the child died or raised; ``details`` carries its traceback.
    """
    ctx = _context()
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_entry, args=(child, fn, args, memory_limit_mb), daemon=True)
    proc.start()
    child.close()
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                notify.check_cancel()
            except BaseException:
                _kill(proc)
                raise
            left = deadline - time.monotonic()
            if left <= 0:
                _kill(proc)
                raise OperationTimeoutError(
                    f"{what} did not finish within {timeout:g} s, so it was stopped.",
                    "The file may be damaged or built to stall decoders; try another file, or "
                    "re-encode it to MP4/H.264.")
            try:
                ready = parent.poll(min(left, 0.1))
            except (EOFError, OSError):
                ready = True
            if not ready:
                continue
            try:
                msg = parent.recv()
            except (EOFError, OSError):
                proc.join(2)
                code = proc.exitcode
                raise ChildCrashed(f"{what} crashed the decoder (exit code {code}).", exitcode=code)
            if msg[0] == "progress":
                notify.progress(msg[1], msg[2])
                continue
            proc.join(5)
            if msg[0] == "ok":
                return msg[1]
            if msg[0] == "memory":
                raise MemoryError(f"{what}: the child process hit its memory limit")
            raise ChildCrashed(f"{what} failed: {msg[1]}", exitcode=proc.exitcode, details=msg[2])
    finally:
        parent.close()
        if proc.is_alive():
            _kill(proc)
