"""The Generate service the tab and the CLI share: pick the model, hold it, run, list history.

``GenerateService.run`` validates the fields first (nothing loads for a bad request), holds the
model through the model manager for the length of the job (an unload or a switch meanwhile waits
for the job to end), and runs ``generate`` inside ``run_on_gpu`` (ZeroGPU when present).
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from ..errors import InvalidRequestError, ModelNotFoundError
from ..log import setup_logging
from .outputs import session_folder
from .request import make_plan, validate_request
from .run import GenerateResult, LocalPipelineSource, PipelineSource, generate
from .zerogpu import ZEROGPU_ACTIVE, run_on_gpu

__all__ = ["GenerateService", "ManagerSource"]

_log = setup_logging("generate.service")


class ManagerSource:
    """The ladder's reload hook for a model held through the model manager.

    Uses the manager's ``reload(name, dtype=, device=, offload=)`` when it has one (that swaps the
    slot's pipeline as a transaction). Otherwise it loads a private copy of the same weights folder
    for the rest of this run, after parking the manager's copy in CPU RAM so the two never share
    the GPU; ``close()`` (called when the run ends) drops the copy and moves the manager's pipeline
    back to its device.
    """

    def __init__(self, manager: Any, name: str, loaded: Any):
        self.manager = manager
        self.name = name
        self.loaded = loaded
        self.local = LocalPipelineSource(loaded.folder)
        self._parked: str | None = None

    def load(self, *, dtype: str, device: str, offload: str | None) -> Any:
        reload = getattr(self.manager, "reload", None)
        if callable(reload):
            loaded = reload(self.name, dtype=dtype, device=device, offload=offload)
            return getattr(loaded, "model", loaded)
        self._park()
        return self.local.load(dtype=dtype, device=device, offload=offload)

    def _park(self) -> None:
        pipe = self.loaded.model
        device = str(self.loaded.device)
        if self._parked is not None or pipe is None or device == "cpu" or self.loaded.rung in (
                "model_offload", "sequential_offload"):
            return
        _log.info("parking %s in CPU RAM while the run uses its own copy", self.name)
        pipe.to("cpu")
        self._parked = device

    def close(self) -> None:
        if self._parked is None:
            return
        from ..guards import cleanup_memory
        cleanup_memory()
        device, self._parked = self._parked, None
        try:
            self.loaded.model.to(device)
        except Exception as exc:
            from .. import notify
            _log.warning("could not move %s back to %s: %s", self.name, device, exc)
            notify.warn(f"`{self.name}` stays in CPU RAM after this run (no room on {device}); "
                        "unload and load it again in the Models tab.")
            self.loaded.device = "cpu"


class GenerateService:
    """Args: settings; models: the app's ``ModelManager`` (built from settings when omitted)."""

    def __init__(self, settings: Any, models: Any = None):
        self.settings = settings
        if models is None:
            from ..models.manager import build_model_manager
            models = build_model_manager(settings)
        self.models = models
        self._lock = threading.Lock()

    def model_names(self) -> list[str]:
        """Text-to-video cards, the ones that work offline on any machine first."""
        cards = getattr(self.models, "cards", {}) or {}
        names = [n for n, c in cards.items() if getattr(c, "model_type", "") == "text-to-video"]
        return sorted(names, key=lambda n: (not getattr(cards[n], "random_weights", False), n))

    def card(self, name: str) -> Any:
        return self.models.card(name)

    def presets(self, name: str) -> dict[str, Any]:
        from .request import QUALITIES, preset_for
        card = self.card(name)
        return {q: preset_for(card, q) for q in QUALITIES}

    def run(self, model: str, prompt: Any, duration_s: Any = 4, quality: Any = "medium",
            seed: Any = None, negative_prompt: Any = None, steps: Any = None, guidance: Any = None,
            long_mode: Any = "segments", *, session_id: str | None = None,
            out_path: str | Path | None = None) -> GenerateResult:
        """Validate, hold the model, generate. See ``generate`` for what it raises."""
        request = validate_request(prompt, duration_s, quality, seed, negative_prompt, steps,
                                   guidance, long_mode)
        if not isinstance(model, str) or not model:
            raise InvalidRequestError("No model was chosen.", "Pick a text-to-video model.")
        try:
            card = self.card(model)
        except ModelNotFoundError:
            raise
        if card.model_type != "text-to-video":
            raise InvalidRequestError(f"`{model}` is a {card.model_type} model, not text-to-video.",
                                      "Pick a text-to-video model.")
        make_plan(request, card, warn=False)  # shape errors surface before loading
        with self.models.use(model) as loaded:
            source: PipelineSource = ManagerSource(self.models, model, loaded)
            estimated = self._estimate_seconds(request, loaded) if ZEROGPU_ACTIVE else 60.0

            def job() -> GenerateResult:
                return generate(request, pipe=loaded.model, card=loaded.card, settings=self.settings,
                                session_id=session_id, source=source, out_path=out_path,
                                device=loaded.device, model_name=model)

            job.estimated_seconds = estimated  # type: ignore[attr-defined]
            return run_on_gpu(job)

    def _estimate_seconds(self, request: Any, loaded: Any) -> float:
        """The pre-flight time estimate, for ZeroGPU's ``duration``."""
        from ..resources import snapshot
        from .estimate import Calibration, estimate_run
        plan = make_plan(request, loaded.card, warn=False)
        est = estimate_run(plan, pipe=loaded.model, card=loaded.card, device=str(loaded.device),
                           dtype_bytes=2 if "16" in str(loaded.dtype) else 4,
                           snap=snapshot(self.settings.outputs),
                           calibration=Calibration(self.settings.cache / "generate_calibration.json"),
                           cfg=plan.guidance > 1.0)
        return est.seconds

    def history(self, session_id: str | None, limit: int = 50) -> list[dict[str, Any]]:
        """This session's finished videos, newest first: sidecar dicts with ``video_path`` added."""
        from ..safe_io import load_json
        folder = session_folder(self.settings.outputs, session_id)
        if not folder.is_dir():
            return []
        items = []
        for js in sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)[:limit]:
            video = js.with_suffix(".mp4")
            if not video.is_file():
                continue
            try:
                data = load_json(js)
            except Exception:
                continue
            data["video_path"] = str(video)
            items.append(data)
        return items
