"""The one guard every handler goes through.

* our typed errors become ``gr.Error(user_message + hint, title=...)``;
* ``notify.warn`` inside the handler becomes ``gr.Warning``, ``notify.progress`` drives the handler's
  ``gr.Progress`` (when it declares one);
* every failure is recorded in the services' error tracker;
* an unknown exception becomes a short generic toast with a reference; its traceback goes to the log
  only, never to the browser;
* with the debug setting, errors re-raise unchanged.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import time
import uuid
from typing import Any, Callable, Iterator

import gradio as gr

from opusclip_ui import notify
from opusclip_ui.errors import Cancelled, OpusClipError, map_errors
from opusclip_ui.log import setup_logging

__all__ = ["guarded", "GENERIC_MESSAGE"]

_log = setup_logging("ui")
GENERIC_MESSAGE = ("Something went wrong on our side. The details were logged (reference {ref}). "
                   "Please try again; if it keeps happening, check the Diagnostics panel.")


def _find_progress(args: tuple, kwargs: dict) -> gr.Progress | None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, gr.Progress):
            return value
    return None


def _toast_warning(message: str) -> None:
    gr.Warning(message, duration=15)


@contextlib.contextmanager
def _edge(services: Any, context: str, progress: gr.Progress | None) -> Iterator[None]:
    start = time.perf_counter()
    on_progress = None
    if progress is not None:
        def on_progress(fraction: float, desc: str) -> None:
            progress(fraction, desc=desc or None)
    try:
        with notify.sink(on_warn=_toast_warning, on_progress=on_progress), map_errors():
            yield
    except gr.Error:
        raise  # a handler that speaks Gradio directly already chose its message
    except Cancelled as exc:
        _log.info("%s cancelled", context)
        if services.settings.debug:
            raise
        raise gr.Error(exc.friendly(), title=exc.title, print_exception=False) from None
    except OpusClipError as exc:
        services.tracker.record(exc, context, time.perf_counter() - start)
        _log.info("%s failed: %s (%s)", context, exc.user_message, exc.details or "-")
        if services.settings.debug:
            raise
        raise gr.Error(exc.friendly(), title=exc.title, print_exception=False) from None
    except Exception as exc:
        ref = uuid.uuid4().hex[:8]
        services.tracker.record(exc, context, time.perf_counter() - start)
        _log.error("%s crashed (reference %s)", context, ref, exc_info=exc)
        if services.settings.debug:
            raise
        raise gr.Error(GENERIC_MESSAGE.format(ref=ref), title="Unexpected error",
                       print_exception=False) from None


def guarded(services: Any, context: str) -> Callable[[Callable], Callable]:
    """Wrap a Gradio handler (plain function or generator) in the guard.

    Args:
        services: the app's ``Services`` (its tracker and debug setting are used).
        context: where this handler lives, e.g. ``"inspect.upload"``; shown in Diagnostics.
    """
    def decorate(fn: Callable) -> Callable:
        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def gen_wrapper(*args: Any, **kwargs: Any):
                progress = _find_progress(args, kwargs)
                with _edge(services, context, progress):
                    iterator = fn(*args, **kwargs)
                while True:
                    # Gradio may run each step in another thread: install the sink per step.
                    with _edge(services, context, progress):
                        try:
                            value = next(iterator)
                        except StopIteration:
                            return
                    yield value
            return gen_wrapper

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any):
            with _edge(services, context, _find_progress(args, kwargs)):
                return fn(*args, **kwargs)
        return wrapper
    return decorate
