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

The machinery (process group, memory cap, no core files, progress back to the parent, kill on
timeout or cancel) is ``guards.run_in_child``; this module adds PyAV to the forkserver's preload and
the messages for media. The child reports progress with :func:`report` (a no-op elsewhere).
"""
from __future__ import annotations

from typing import Any, Callable

from .. import guards
from ..errors import OperationTimeoutError, ToolFailedError

__all__ = ["run_child", "report", "prepare", "warm_up", "ChildCrashed", "PRELOAD"]

#: Modules the forkserver imports once, so each child starts with them loaded.
PRELOAD = ["opusclip_ui.video._media"]

#: A child that died (a signal, the memory limit, a decoder crash) or raised something unknown.
ChildCrashed = ToolFailedError

#: Progress from inside a worker child to the parent's progress bar.
report = guards.report_progress


def prepare() -> None:
    """Have the shared forkserver preload PyAV (call before the first child starts)."""
    guards.add_forkserver_preload(PRELOAD)


def warm_up() -> None:
    """Start the forkserver now (about 0.3 to 1 s), so the first upload does not pay for it."""
    run_child(_noop, timeout=30)


def _noop() -> None:
    return None


def run_child(fn: Callable[..., Any], *args: Any, timeout: float, memory_limit_mb: int | None = None,
              what: str = "The video") -> Any:
    """Run top-level ``fn(*args)`` in a killable child and return its (picklable) result.

    Raises:
        OperationTimeoutError: the child ran past ``timeout`` (it was killed).
        Cancelled: the current job's cancel token was set (the child is killed).
        OutOfMemoryError: the child hit its memory limit.
        ChildCrashed: the child died or raised; ``details`` carries its traceback.
    """
    prepare()
    try:
        return guards.run_in_child(fn, *args, timeout=timeout, memory_limit_mb=memory_limit_mb,
                                   what=what)
    except OperationTimeoutError as exc:
        raise OperationTimeoutError(
            f"{what} did not finish within {timeout:g} s, so it was stopped.",
            "The file may be damaged or built to stall decoders; try another file, or "
            "re-encode it to MP4/H.264.") from exc
