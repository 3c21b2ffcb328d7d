"""Optional ZeroGPU support: ``@spaces.GPU`` with a duration from the run's own estimate.

On a Hugging Face ZeroGPU Space a GPU is attached only inside a function decorated with
``spaces.GPU``, for at most its ``duration``. ``run_on_gpu(job)`` calls ``job()`` there, asking for
``job.estimated_seconds`` (with headroom). Without the ``spaces`` package, or off ZeroGPU, it just
calls ``job()``: nothing of this runs.
"""
from __future__ import annotations

import importlib.util
from typing import Any, Callable

from ..log import setup_logging
from ..resources import is_zerogpu

__all__ = ["run_on_gpu", "ZEROGPU_ACTIVE", "gpu_duration"]

_log = setup_logging("generate.zerogpu")
_MIN_S, _MAX_S = 30, 300


def gpu_duration(job: Any) -> int:
    """Seconds to ask ZeroGPU for: the estimate plus half again, within the platform's limits."""
    est = float(getattr(job, "estimated_seconds", 60.0) or 60.0)
    return int(min(_MAX_S, max(_MIN_S, est * 1.5 + 10)))


def _call(job: Callable[[], Any]) -> Any:
    return job()


ZEROGPU_ACTIVE = False
run_on_gpu: Callable[[Callable[[], Any]], Any] = _call
if is_zerogpu() and importlib.util.find_spec("spaces") is not None:
    try:
        import spaces  # type: ignore[import-not-found]

        run_on_gpu = spaces.GPU(duration=gpu_duration)(_call)
        ZEROGPU_ACTIVE = True
        _log.info("ZeroGPU: generation runs inside spaces.GPU with an estimated duration")
    except Exception as exc:  # a broken spaces install must not stop the app
        _log.warning("spaces is installed but unusable (%s); running without ZeroGPU", exc)
