"""How core code talks to whoever is watching: warnings, progress and cancellation.

Core functions call ``warn()``, ``progress()`` and ``check_cancel()``. The UI layer (or the CLI, or a
test) installs a sink with ``sink(...)`` for the duration of one job; without a sink, warnings go to the
log only and progress is dropped. The sink lives in a context variable, so concurrent jobs in different
threads never see each other's messages.
"""
from __future__ import annotations

import contextlib
import contextvars
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterator

from .errors import Cancelled
from .log import setup_logging

__all__ = ["CancelToken", "Sink", "sink", "warn", "progress", "check_cancel", "collect_warnings",
           "current_cancel_token"]

_log = setup_logging("notify")


class CancelToken:
    """A flag a user sets from another request; the job checks it between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclass
class Sink:
    on_warn: Callable[[str], None] | None = None
    on_progress: Callable[[float, str], None] | None = None
    cancel: CancelToken | None = None
    warnings: list[str] = field(default_factory=list)


_current: contextvars.ContextVar[Sink | None] = contextvars.ContextVar("opusclip_sink", default=None)


@contextlib.contextmanager
def sink(on_warn: Callable[[str], None] | None = None,
         on_progress: Callable[[float, str], None] | None = None,
         cancel: CancelToken | None = None) -> Iterator[Sink]:
    """Route warn/progress/check_cancel of the code run inside to these callbacks.

    An argument left as None is inherited from the enclosing sink, so a handler can add its own
    cancel token inside the UI guard's sink and keep the guard's toasts and progress bar.
    """
    outer = _current.get()
    if outer is not None:
        on_warn = on_warn or outer.on_warn
        on_progress = on_progress or outer.on_progress
        cancel = cancel or outer.cancel
    s = Sink(on_warn, on_progress, cancel)
    token = _current.set(s)
    try:
        yield s
    finally:
        _current.reset(token)


@contextlib.contextmanager
def collect_warnings() -> Iterator[list[str]]:
    """Collect the warnings sent inside; each one still reaches the enclosing sink (the UI)."""
    outer = _current.get()

    def forward(message: str) -> None:
        outer.warnings.append(message)
        if outer.on_warn is not None:
            outer.on_warn(message)

    s = Sink(forward if outer else None, outer.on_progress if outer else None,
             outer.cancel if outer else None)
    token = _current.set(s)
    try:
        yield s.warnings
    finally:
        _current.reset(token)


def warn(message: str) -> None:
    """Tell the user something degraded or was changed for them. Always logged."""
    _log.warning(message)
    s = _current.get()
    if s is None:
        return
    s.warnings.append(message)
    if s.on_warn is not None:
        try:
            s.on_warn(message)
        except Exception:  # a broken UI callback must not break the job
            _log.exception("warning sink failed")


def progress(fraction: float, desc: str = "") -> None:
    """Report progress in [0, 1] with a short description."""
    s = _current.get()
    if s is not None and s.on_progress is not None:
        try:
            s.on_progress(min(max(float(fraction), 0.0), 1.0), desc)
        except Exception:
            _log.exception("progress sink failed")


def current_cancel_token() -> CancelToken | None:
    s = _current.get()
    return s.cancel if s else None


def check_cancel() -> None:
    """Raise ``Cancelled`` when the current job's cancel token is set."""
    token = current_cancel_token()
    if token is not None and token.cancelled:
        raise Cancelled()
