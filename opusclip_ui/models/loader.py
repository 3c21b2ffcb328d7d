"""Loading a card's weights onto a device, falling back one rung at a time when memory runs out.

Text encoders load with transformers' ``AutoModel`` + ``AutoTokenizer``; text-to-video pipelines with
diffusers' ``DiffusionPipeline.from_pretrained``. Always safetensors, never ``trust_remote_code``,
always from a local folder (``WeightsStore`` resolves it; loading never downloads).

The ladder (``RUNGS``), tried in order from the starting rung picked by the memory estimate:

1. ``full``: the card's precision, everything on the device;
2. ``retry``: the same after a cleanup (gc, ``empty_cache``, ``ipc_collect``, outside the ``except``
   block so the traceback no longer pins tensors);
3. ``half``: bf16 where the device supports it, else fp16;
4. ``model_offload``: ``enable_model_cpu_offload`` (``enable_group_offload`` when accelerate is
   missing); pipelines only;
5. ``sequential_offload``: ``enable_sequential_cpu_offload`` (accelerate's ``cpu_offload`` for a
   text encoder);
6. ``cpu``: everything on the CPU in fp32, only when the RAM check passes; otherwise a clear error.

Rungs that cannot apply (offload on a CPU-only load, ``half`` when already 16-bit) are skipped. Each
rung taken after the first is a ``notify.warn`` (a ``gr.Warning`` in the UI) and a log line; the
returned ``LoadedModel`` records the rung it ended on.
"""
from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .. import notify
from ..errors import (DeviceUnavailableError, ModelLoadError, OpusClipError, OutOfMemoryError,
                      is_oom, map_exception)
from ..guards import cleanup_memory
from ..log import setup_logging
from .cards import ModelCard
from .weights import WeightsEstimate, check_safetensors_only, estimate_weights

__all__ = ["LoadedModel", "ModelLoader", "RUNGS", "resolve_device", "resolve_dtype",
           "HEADROOM", "inject_oom"]

_log = setup_logging("models.loader")

RUNGS = ("full", "retry", "half", "model_offload", "sequential_offload", "cpu")
#: Extra room asked for on top of the weights' size (activations, allocator slack).
HEADROOM = 1.2
_RUNG_TEXT = {
    "retry": "retrying after freeing memory",
    "half": "switching to half precision",
    "model_offload": "offloading idle components to the CPU (slower)",
    "sequential_offload": "offloading layer by layer to the CPU (much slower)",
    "cpu": "running on the CPU (very slow)",
}


def _torch():
    import torch
    return torch


def _has_accelerate() -> bool:
    return importlib.util.find_spec("accelerate") is not None


def inject_oom(settings: Any, stage: str) -> None:
    """TEST ONLY: raise a torch OOM when ``settings.inject_oom`` lists ``stage`` (e.g. ``load.full``)."""
    stages = getattr(settings, "inject_oom", None) or ""
    wanted = {s.strip() for s in stages.split(",") if s.strip()}
    if stage in wanted or stage.split(".")[0] + ".*" in wanted:
        raise _torch().OutOfMemoryError(f"CUDA out of memory (injected for testing at {stage}).")


def cuda_available() -> bool:
    return _torch().cuda.is_available()


def mps_available() -> bool:
    torch = _torch()
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def resolve_device(requested: str) -> str:
    """``auto`` picks CUDA, then MPS, then CPU. Asking for a device that is absent is an error."""
    if requested == "auto":
        return "cuda" if cuda_available() else "mps" if mps_available() else "cpu"
    if requested == "cuda" and not cuda_available():
        raise DeviceUnavailableError("This card asks for device `cuda`, but no CUDA GPU is available.",
                                     "Set `device: auto` (or `cpu`) in the card.")
    if requested == "mps" and not mps_available():
        raise DeviceUnavailableError("This card asks for device `mps`, but MPS is not available.",
                                     "Set `device: auto` (or `cpu`) in the card.")
    return requested


def _bf16_ok(device: str) -> bool:
    torch = _torch()
    if device == "cuda":
        try:
            return torch.cuda.is_bf16_supported()
        except Exception:
            return False
    return device in ("cpu", "mps")


def resolve_dtype(precision: str, device: str):
    """``auto``: bf16 where supported on an accelerator, else fp16 there, fp32 on the CPU."""
    torch = _torch()
    if precision == "fp32":
        return torch.float32
    if precision == "fp16":
        return torch.float16
    if precision == "bf16":
        return torch.bfloat16
    if device == "cpu":
        return torch.float32
    return torch.bfloat16 if _bf16_ok(device) else torch.float16


def _half_dtype(device: str):
    torch = _torch()
    return torch.bfloat16 if _bf16_ok(device) else torch.float16


def _dtype_bytes(dtype) -> int:
    return _torch().tensor([], dtype=dtype).element_size()


def _dtype_name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


@dataclass
class LoadedModel:
    """A model in memory, with how it got there."""

    name: str
    card: ModelCard
    model: Any                      # a DiffusionPipeline, or a transformers PreTrainedModel
    tokenizer: Any | None
    device: str                     # where it computes
    dtype: Any
    rung: str
    seconds: float
    folder: Path
    estimate: WeightsEstimate | None = None
    warnings: list[str] = field(default_factory=list)
    loaded_at: float = field(default_factory=time.time)

    @property
    def kind(self) -> str:
        return self.card.model_type

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "model_type": self.kind, "device": self.device,
                "dtype": _dtype_name(self.dtype), "rung": self.rung,
                "seconds": round(self.seconds, 3), "warnings": list(self.warnings),
                "params": self.estimate.params if self.estimate else None,
                "random_weights": self.card.random_weights}

    def release(self) -> None:
        """Drop every reference this object holds (hooks first, so nothing keeps tensors alive)."""
        model = self.model
        if model is not None:
            try:
                remove_offload_hooks(model)
            except Exception:  # pragma: no cover - best effort on a half-set-up pipeline
                _log.debug("removing offload hooks failed", exc_info=True)
        self.model = None
        self.tokenizer = None


@dataclass
class _Plan:
    device: str
    dtype: Any
    rungs: list[str]
    need_bytes: int
    free_bytes: int | None
    reason: str = ""
    estimate: WeightsEstimate | None = None


class ModelLoader:
    """Loads cards through the ladder.

    Args:
        settings: app settings (``inject_oom`` is honoured, for tests only).
        free_memory: ``free_memory(device) -> bytes | None``; injectable for tests.
        ram_available: ``() -> bytes``; injectable for tests.
    """

    def __init__(self, settings: Any = None, *,
                 free_memory: Callable[[str], int | None] | None = None,
                 ram_available: Callable[[], int] | None = None):
        self.settings = settings
        self._free_memory = free_memory or _free_memory
        self._ram_available = ram_available or _ram_available

    # --- planning ------------------------------------------------------------------------------
    def plan(self, card: ModelCard, folder: Path, device: str | None = None) -> _Plan:
        """Pick the device, dtype and the rungs to try, from the weights' size and free memory.

        Raises:
            OutOfMemoryError: before anything loads, when not even the CPU rung can fit.
        """
        device = resolve_device(device or card.device)
        dtype = resolve_dtype(card.precision, device)
        est = estimate_weights(folder)
        if est.file_bytes == 0:
            check_safetensors_only(folder)  # raises: pickles only, or no weights at all
        need = est.bytes_at(_dtype_bytes(dtype))
        need_half = est.bytes_at(2)
        ram = self._ram_available()
        pipeline = card.model_type == "text-to-video"
        is_half = _dtype_bytes(dtype) == 2
        if device == "cpu":
            rungs = ["full", "retry"] + ([] if is_half else ["half"])
            if need * HEADROOM <= ram:
                return _Plan(device, dtype, rungs, need, ram, estimate=est)
            if not is_half and need_half * HEADROOM <= ram:
                return _Plan(device, dtype, ["half"], need, ram,
                             f"the model needs about {_gb(need)} in {_dtype_name(dtype)} but only "
                             f"{_gb(ram)} of RAM is free", est)
            raise OutOfMemoryError(
                f"`{card.name}` needs about {_gb(min(need, need_half))} of RAM and only {_gb(ram)} "
                "is free; nothing was loaded.",
                "Close other programs or jobs, or pick a smaller card (for example `minilm` or "
                "`tiny-random-t2v`).", device="cpu")
        rungs = ["full", "retry"] + ([] if is_half else ["half"])
        if pipeline:
            rungs.append("model_offload")      # group offload stands in when accelerate is missing
        if _has_accelerate():
            rungs.append("sequential_offload")  # both kinds need accelerate for this one
        # The CPU rung in fp32 needs the fp32 size in RAM.
        if est.bytes_at(4) * HEADROOM <= ram:
            rungs.append("cpu")
        free = self._free_memory(device)
        start, reason = 0, ""
        if free is not None:
            largest_half = est.largest_component_params * 2
            if need * HEADROOM <= free:
                start = 0
            elif "half" in rungs and need_half * HEADROOM <= free:
                start, reason = rungs.index("half"), "full precision does not fit"
            elif "model_offload" in rungs and largest_half * HEADROOM <= free:
                start, reason = rungs.index("model_offload"), "the whole model does not fit"
            elif "sequential_offload" in rungs:
                start, reason = rungs.index("sequential_offload"), "no component fits whole"
            elif "cpu" in rungs:
                start, reason = rungs.index("cpu"), "it does not fit on the GPU"
            else:
                raise OutOfMemoryError(
                    f"`{card.name}` needs about {_gb(need_half)} but the {device} device has "
                    f"{_gb(free)} free and the RAM ({_gb(ram)} free) cannot hold it either.",
                    "Free memory or pick a smaller card.", device=device)
            if reason:
                reason = (f"{reason}: the model needs about {_gb(need)} in {_dtype_name(dtype)} and "
                          f"{device} has {_gb(free)} free")
        return _Plan(device, dtype, rungs[start:], need, free, reason, est)

    # --- loading -------------------------------------------------------------------------------
    def load(self, card: ModelCard, folder: Path, *, device: str | None = None) -> LoadedModel:
        """Load ``card`` from ``folder`` and place it through the ladder.

        Raises:
            OutOfMemoryError: every rung ran out of memory (names the smallest setting left).
            ModelLoadError: the weights are broken or not safetensors.
            DeviceUnavailableError: the card asks for a device this machine lacks.
        """
        t0 = time.perf_counter()
        plan = self.plan(card, folder, device)
        warned: list[str] = []

        def warn(message: str) -> None:
            warned.append(message)
            notify.warn(message)

        if plan.reason:
            warn(f"Loading `{card.name}` at the `{plan.rungs[0]}` rung: {plan.reason}; "
                 f"{_RUNG_TEXT.get(plan.rungs[0], 'loading as usual')}.")
        _log.info("loading %s from %s on %s as %s, rungs %s", card.name, folder, plan.device,
                  _dtype_name(plan.dtype), plan.rungs)
        # Starting at `half` (not enough memory for full precision) reads the weights in half
        # precision straight away, so the full-precision copy never has to fit.
        load_dtype = _half_dtype(plan.device) if plan.rungs[0] == "half" else plan.dtype
        model, tokenizer = self._from_pretrained(card, folder, load_dtype)
        loaded = self._climb(card, folder, plan, model, tokenizer, warn)
        loaded.warnings = warned
        loaded.seconds = time.perf_counter() - t0
        loaded.estimate = plan.estimate
        _log.info("loaded %s on %s (%s) at rung %s in %.2fs", card.name, loaded.device,
                  _dtype_name(loaded.dtype), loaded.rung, loaded.seconds)
        return loaded

    def _from_pretrained(self, card: ModelCard, folder: Path, dtype):
        """Read the weights into CPU memory. A failure here is a load error, not a rung."""
        try:
            if card.model_type == "text-to-video":
                from diffusers import DiffusionPipeline
                pipe = DiffusionPipeline.from_pretrained(
                    str(folder), dtype=dtype, use_safetensors=True, local_files_only=True,
                    trust_remote_code=False)
                pipe.set_progress_bar_config(disable=True)
                return pipe, None
            from transformers import AutoModel, AutoTokenizer
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True,
                                                      trust_remote_code=False)
            model = AutoModel.from_pretrained(str(folder), dtype=dtype, use_safetensors=True,
                                              local_files_only=True, trust_remote_code=False)
            model.eval()
            return model, tokenizer
        except OpusClipError:
            raise
        except Exception as exc:
            mapped = map_exception(exc)
            if mapped is not exc:
                raise mapped from exc
            raise ModelLoadError(f"`{card.name}` could not be read from {folder}: {exc}",
                                 "Check the weights are complete; pull the model again if needed.",
                                 details=repr(exc)) from exc

    def _climb(self, card: ModelCard, folder: Path, plan: _Plan, model, tokenizer,
               warn: Callable[[str], None]) -> LoadedModel:
        last_error = ""
        for i, rung in enumerate(plan.rungs):
            if i > 0:
                warn(f"`{card.name}` ran out of memory ({last_error}); "
                            f"{_RUNG_TEXT[rung]}.")
            failed = None
            try:
                inject_oom(self.settings, f"load.{rung}")
                device = self._place(model, rung, plan.device)
                return LoadedModel(card.name, card, model, tokenizer, device, _model_dtype(model),
                                   rung, 0.0, folder)
            except Exception as exc:  # noqa: BLE001 - only OOM climbs; the rest re-raise below
                if not is_oom(exc):
                    mapped = map_exception(exc)
                    if mapped is exc:
                        raise
                    raise mapped from exc
                failed = f"{type(exc).__name__} at the `{rung}` rung"
                _log.warning("%s: out of memory at rung %s: %s", card.name, rung, exc)
            # Outside the except block: the traceback no longer pins the GPU tensors.
            last_error = failed
            self._undo(model)
            cleanup_memory()
        raise OutOfMemoryError(
            f"`{card.name}` did not fit even at the `{plan.rungs[-1]}` rung ({last_error}).",
            "Close other jobs and try again, or pick a smaller card such as `tiny-random-t2v`"
            + (" (the CPU fallback was skipped: not enough RAM)"
               if plan.device != "cpu" and "cpu" not in plan.rungs else "") + ".",
            device=plan.device)

    def _place(self, model, rung: str, device: str) -> str:
        """Put ``model`` on ``device`` the way ``rung`` says; returns the compute device."""
        torch = _torch()
        pipeline = hasattr(model, "components")
        if rung in ("full", "retry"):
            if device != "cpu":  # from_pretrained already put it on the CPU; .to() would walk it
                model.to(device)
            return device
        if rung == "half":
            half = _half_dtype(device)
            model.to(dtype=half) if pipeline else model.to(half)
            model.to(device)
            return device
        if rung == "model_offload":
            if _has_accelerate():
                model.enable_model_cpu_offload(device=device)
            else:
                model.enable_group_offload(onload_device=torch.device(device),
                                           offload_type="block_level", num_blocks_per_group=1)
            return device
        if rung == "sequential_offload":
            if pipeline:
                model.enable_sequential_cpu_offload(device=device)
            else:
                from accelerate import cpu_offload
                cpu_offload(model, execution_device=torch.device(device))
            return device
        if rung == "cpu":
            model.to(dtype=torch.float32) if pipeline else model.to(torch.float32)
            model.to("cpu")
            return "cpu"
        raise ValueError(f"unknown rung {rung}")

    @staticmethod
    def _undo(model) -> None:
        """Bring a half-placed model back to the CPU and drop offload hooks before the next rung."""
        try:
            remove_offload_hooks(model)
            model.to("cpu")
        except Exception:  # best effort; the next rung starts from whatever is left
            _log.debug("undo before the next rung failed", exc_info=True)


def remove_offload_hooks(model) -> None:
    """Remove accelerate offload hooks and diffusers group-offload hooks from a model/pipeline."""
    modules = ([c for c in model.components.values() if hasattr(c, "named_modules")]
               if hasattr(model, "components") else [model])
    if hasattr(model, "remove_all_hooks") and _has_accelerate():
        model.remove_all_hooks()
    for module in modules:
        if getattr(module, "_hf_hook", None) is not None and _has_accelerate():
            from accelerate.hooks import remove_hook_from_module
            remove_hook_from_module(module, recurse=True)
        registry = getattr(module, "_diffusers_hook", None)
        if registry is not None:
            for name in list(registry.hooks):
                registry.remove_hook(name, recurse=True)


def _model_dtype(model):
    """The dtype of the model's main weights (a pipeline's transformer/UNet, or the module's)."""
    if hasattr(model, "components"):
        for key in ("transformer", "unet", "text_encoder", "vae"):
            comp = model.components.get(key)
            if comp is not None and hasattr(comp, "parameters"):
                model = comp
                break
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return _torch().float32


def _gb(n: int | float | None) -> str:
    if n is None:
        return "?"
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


def _free_memory(device: str) -> int | None:
    torch = _torch()
    if device == "cuda":
        free, _total = torch.cuda.mem_get_info()
        return int(free)
    if device == "mps":
        try:
            return int(torch.mps.recommended_max_memory() - torch.mps.current_allocated_memory())
        except Exception:
            return None
    return _ram_available()


def _ram_available() -> int:
    from ..resources import ram_info
    return int(ram_info()["available_mb"] * 2**20)
