"""One generation run: pre-flight, denoise with progress/ETA/cancel, the run-time ladder, encode, sidecar.

The ladder, in order (each rung: ``notify.warn``, a log line, an entry in the result's ``rungs``):

1. ``retry``: OOM while denoising: memory is cleaned up (outside the ``except`` block, whose
   traceback would pin tensors) and the pass is retried once.
2. ``vae_tiling``: OOM while decoding: the latents are kept (the pipeline is always called with
   ``output_type="latent"``) and decoded again with VAE tiling and slicing, where the VAE has them.
   Denoising is not redone.
3. ``half_precision``: bf16 (fp16 where bf16 is not supported). When decoded frames are NaN or black,
   ``fp32_vae`` decodes the same latents again with the VAE in fp32.
4. ``model_offload``, then ``sequential_offload``: these need a freshly loaded pipeline (offload hooks
   cannot be stacked on a used one), so they ask the ``PipelineSource`` (the model manager) for one;
   without a source, or on a CPU-only run, they are skipped.
5. ``lower_quality``: the next lower preset; below ``low``, half the frames per pass, then a smaller
   frame. Each step is one rung. The duration stays what was asked (more segments).
6. ``cpu``: only if the RAM allows it; the warning gives the new ETA.

An OOM while decoding after rung 2 climbs the same ladder and decodes the kept latents again, unless
the rung changed what the latents mean (``lower_quality``), which redoes the denoising.

When every rung has failed, the error names the smallest setting that might still work.
"""
from __future__ import annotations

import functools
import json
import math
import platform
import sys
import threading
import time
import weakref
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import numpy as np

from .. import notify
from ..errors import (InvalidRequestError, ModelLoadError, OpusClipError, OutOfMemoryError, is_oom,
                      map_errors, map_exception)
from ..guards import cleanup_memory
from ..log import setup_logging
from .encode import encode_mp4, estimate_output_bytes, write_poster
from .estimate import Calibration, estimate_run, free_memory_mb
from .outputs import cleanup_outputs, new_output_path
from .request import GenerateRequest, Plan, lower_preset, make_plan, split_segments

__all__ = ["generate", "GenerateResult", "PipelineSource", "LocalPipelineSource", "OomInjector",
           "RungRecord", "LADDER", "SIDECAR_SCHEMA"]

_log = setup_logging("generate")

SIDECAR_SCHEMA = 1
#: The escalation order after the stage-specific first rung (retry / vae_tiling).
LADDER = ("half_precision", "model_offload", "sequential_offload", "lower_quality", "cpu")
_MIN_FRAMES_PER_PASS = 5
_MIN_SIDE = 16
_MAX_RUNGS = 24  # a hard stop, far above any real sequence


class PipelineSource(Protocol):
    """What the ladder needs from the model manager: a freshly loaded pipeline.

    ``load`` must drop (and free) any pipeline it handed out before for this run, then load one with
    ``dtype`` ("fp32", "fp16", "bf16") on ``device``, with ``offload`` None, "model" or "sequential".
    """

    def load(self, *, dtype: str, device: str, offload: str | None) -> Any: ...


class LocalPipelineSource:
    """Loads a diffusers pipeline folder with ``DiffusionPipeline.from_pretrained`` (safetensors only)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def load(self, *, dtype: str, device: str, offload: str | None) -> Any:
        import torch
        from diffusers import DiffusionPipeline

        cleanup_memory()
        pipe = DiffusionPipeline.from_pretrained(self.path, dtype=_TORCH_DTYPES[dtype](torch),
                                                 use_safetensors=True, local_files_only=True)
        pipe.set_progress_bar_config(disable=True)
        if offload == "model":
            pipe.enable_model_cpu_offload(device=device)
        elif offload == "sequential":
            pipe.enable_sequential_cpu_offload(device=device)
        else:
            pipe.to(device)
        return pipe


_TORCH_DTYPES: dict[str, Callable[[Any], Any]] = {
    "fp32": lambda t: t.float32, "fp16": lambda t: t.float16, "bf16": lambda t: t.bfloat16}


def _dtype_name(dtype: Any) -> str:
    return {"torch.float32": "fp32", "torch.float16": "fp16", "torch.bfloat16": "bf16"}.get(
        str(dtype), str(dtype))


class OomInjector:
    """TEST ONLY: raise a real ``torch.OutOfMemoryError`` at named stages (``Settings.inject_oom``).

    The spec is a comma list of ``stage`` or ``stage:N`` (the first N attempts at that stage fail).
    This module reads ``generate.denoise`` and ``generate.decode`` and ignores the others (the model
    loader's ``load.*`` stages). Counts are per run.
    """

    STAGES = ("generate.denoise", "generate.decode")

    def __init__(self, spec: str | None):
        self.remaining: dict[str, int] = {}
        for part in (spec or "").split(","):
            part = part.strip()
            if not part:
                continue
            stage, _, count = part.partition(":")
            try:
                n = int(count) if count else 1
            except ValueError:
                raise InvalidRequestError(f"inject_oom: bad count in {part!r}.") from None
            self.remaining[stage.strip()] = self.remaining.get(stage.strip(), 0) + n
        self.fired: dict[str, int] = {}

    def hit(self, stage: str) -> None:
        stage = f"generate.{stage}"
        if self.remaining.get(stage, 0) > 0:
            self.remaining[stage] -= 1
            self.fired[stage] = self.fired.get(stage, 0) + 1
            import torch
            raise torch.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate 2.00 GiB (injected for tests at {stage})")


@dataclass
class RungRecord:
    rung: str
    stage: str          # "preflight", "denoise", "decode"
    detail: str
    at_s: float         # seconds since the run started

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GenerateResult:
    video_path: Path
    sidecar_path: Path
    sidecar: dict[str, Any]
    warnings: list[str]
    rungs: list[RungRecord]
    seed: int

    @property
    def final_rung(self) -> str:
        return self.rungs[-1].rung if self.rungs else "full"


class _Stop(Exception):
    """Internal: the ladder has no rung left."""


class _ReloadOOM(Exception):
    """Internal: loading the pipeline for a rung ran out of memory; try the next rung."""


@dataclass
class _State:
    pipe: Any
    device: str
    dtype: str
    offload: str | None
    plan: Plan
    retried: bool = False
    vae_tiling: bool = False
    vae_fp32: bool = False
    reloaded: bool = False


_pipe_locks: "weakref.WeakKeyDictionary[Any, threading.Lock]" = weakref.WeakKeyDictionary()
_locks_guard = threading.Lock()


def _lock_for(pipe: Any) -> threading.Lock:
    """One lock per pipeline object: a diffusers pipeline keeps per-call state in its scheduler."""
    with _locks_guard:
        try:
            lock = _pipe_locks.get(pipe)
            if lock is None:
                lock = _pipe_locks[pipe] = threading.Lock()
        except TypeError:  # not weak-referenceable
            lock = threading.Lock()
        return lock


def _acquire(lock: threading.Lock) -> None:
    waited = False
    while not lock.acquire(timeout=0.5):
        if not waited:
            notify.progress(0.0, "Waiting for the model (another job is using it)")
            waited = True
        notify.check_cancel()


def _execution_device(pipe: Any) -> str:
    dev = getattr(pipe, "_execution_device", None) or getattr(pipe, "device", None)
    return str(dev) if dev is not None else "cpu"


def _half_dtype(device: str) -> str:
    if device.startswith("cuda"):
        import torch
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.startswith("mps"):
        return "fp16"
    return "bf16"


def _pipeline_dtype(pipe: Any) -> str:
    model = getattr(pipe, "transformer", None) or getattr(pipe, "unet", None)
    return _dtype_name(getattr(model, "dtype", "torch.float32"))


def _supports_latent_decode(pipe: Any) -> bool:
    """Pipelines whose latents we can decode ourselves (Wan family: latents_mean/std + z_dim)."""
    cfg = getattr(getattr(pipe, "vae", None), "config", None)
    return (cfg is not None and getattr(cfg, "latents_mean", None) is not None
            and getattr(cfg, "z_dim", None) is not None and hasattr(pipe, "video_processor"))


def _vae_supports_tiling(vae: Any) -> bool:
    return vae is not None and callable(getattr(vae, "enable_tiling", None)) and hasattr(vae, "use_tiling")


def _frames_bad(frames: np.ndarray) -> str | None:
    if not np.isfinite(frames).all():
        return "NaN values"
    if float(np.nanmax(frames)) < 1.0 / 255:
        return "all black"
    return None


def _peak_memory_probe(device: str) -> Callable[[], dict[str, Any]]:
    """Start measuring peak memory; the returned function reads it."""
    import psutil

    proc = psutil.Process()
    state = {"rss": proc.memory_info().rss}
    torch = sys.modules.get("torch")
    if device.startswith("cuda") and torch is not None and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()

        def read() -> dict[str, Any]:
            return {"device": device, "peak_mb": torch.cuda.max_memory_allocated() / 2**20,
                    "method": "torch.cuda.max_memory_allocated",
                    "process_rss_peak_mb": state["rss"] / 2**20}
    else:
        def read() -> dict[str, Any]:
            return {"device": device, "peak_mb": state["rss"] / 2**20,
                    "method": "process RSS sampled at every step and stage"}

    def sample() -> None:
        state["rss"] = max(state["rss"], proc.memory_info().rss)

    read.sample = sample  # type: ignore[attr-defined]
    return read


def _fmt_s(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class _Run:
    """The mutable state of one generation; ``generate`` drives it."""

    def __init__(self, request: GenerateRequest, card: Any, pipe: Any, settings: Any,
                 source: PipelineSource | None, device: str | None):
        self.request = request
        self.card = card
        self.settings = settings
        self.source = source
        self.t0 = time.monotonic()
        self.rungs: list[RungRecord] = []
        self.injector = OomInjector(getattr(settings, "inject_oom", None))
        self.timings: dict[str, float] = {"denoise": 0.0, "decode": 0.0}
        self.step_times: list[float] = []
        self.dev = device or _execution_device(pipe)
        plan = make_plan(request, card)
        self.asked_plan = replace(plan, segments=list(plan.segments))
        self.state = _State(pipe=pipe, device=self.dev, dtype=_pipeline_dtype(pipe),
                            offload=None, plan=plan)
        self.original_pipe = pipe
        self.tiling_was_on = bool(getattr(getattr(pipe, "vae", None), "use_tiling", False))
        self.peak = _peak_memory_probe(self.dev)
        self.ladder_pos = 0
        self.steps_done = 0
        self.segment_index = 0
        self.decode_seconds_per_segment: float | None = None

    # --- reporting ------------------------------------------------------------------------
    def record(self, rung: str, stage: str, detail: str) -> None:
        rec = RungRecord(rung=rung, stage=stage, detail=detail, at_s=round(time.monotonic() - self.t0, 3))
        self.rungs.append(rec)
        _log.info("ladder rung %s at %s", rung, stage)
        notify.warn(detail)  # logged there too

    def total_steps(self) -> int:
        return self.state.plan.steps * len(self.state.plan.segments)

    def eta(self) -> float | None:
        if not self.step_times:
            return None
        recent = self.step_times[-5:]
        per_step = sum(recent) / len(recent)
        remaining = max(0, self.total_steps() - self.steps_done)
        segs_left = len(self.state.plan.segments) - self.segment_index
        decode = self.decode_seconds_per_segment or 2 * per_step
        return per_step * remaining + decode * segs_left

    # --- one denoising pass ---------------------------------------------------------------
    def denoise(self, frames: int, seed: int) -> Any:
        import torch

        st = self.state
        plan = st.plan
        nseg = len(plan.segments)
        base = self.segment_index * plan.steps
        last = [time.monotonic()]

        def on_step(pipe: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            now = time.monotonic()
            self.step_times.append(now - last[0])
            last[0] = now
            self.steps_done = base + i + 1
            self.peak.sample()  # type: ignore[attr-defined]
            self.injector.hit("denoise")
            eta = self.eta()
            desc = (f"Segment {self.segment_index + 1}/{nseg} · step {i + 1}/{plan.steps}"
                    + (f" · ETA {_fmt_s(eta)}" if eta is not None else ""))
            notify.progress(0.95 * self.steps_done / max(1, self.total_steps()), desc)
            notify.check_cancel()
            return {}

        notify.check_cancel()
        generator = torch.Generator(device="cpu").manual_seed(seed)
        kwargs: dict[str, Any] = dict(
            prompt=self.request.prompt, negative_prompt=self.request.negative_prompt or None,
            height=plan.height, width=plan.width, num_frames=frames,
            num_inference_steps=plan.steps, guidance_scale=plan.guidance, generator=generator,
            callback_on_step_end=on_step)
        latent = _supports_latent_decode(st.pipe)
        kwargs["output_type"] = "latent" if latent else "np"
        t = time.monotonic()
        embeds = self._prompt_embeds() if latent else None
        if embeds is not None:  # encoded once per run, not once per segment
            kwargs.update(prompt=None, negative_prompt=None, prompt_embeds=embeds[0],
                          negative_prompt_embeds=embeds[1])
        try:
            out = st.pipe(**kwargs)
        finally:
            self.timings["denoise"] += time.monotonic() - t
        return out.frames

    def _prompt_embeds(self) -> tuple[Any, Any] | None:
        """The prompt's text-encoder output, cached for the run (re-made when the pipeline changes).

        A long video is several passes with the same prompt: encoding it once saves a text-encoder
        pass per segment (with model offload, also moving the text encoder to the GPU and back).
        """
        import inspect

        import torch

        st = self.state
        encode = getattr(st.pipe, "encode_prompt", None)
        if encode is None:
            return None
        params = inspect.signature(encode).parameters
        if not {"do_classifier_free_guidance", "max_sequence_length", "device"} <= set(params):
            return None
        cfg = st.plan.guidance > 1.0
        key = (id(st.pipe), st.device, st.dtype, cfg)
        cached = getattr(self, "_embeds_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        self._embeds_cache = None
        with torch.no_grad():
            pe, ne = encode(prompt=self.request.prompt,
                            negative_prompt=self.request.negative_prompt or None,
                            do_classifier_free_guidance=cfg, num_videos_per_prompt=1,
                            max_sequence_length=512, device=st.pipe._execution_device)
        self._embeds_cache = (key, (pe, ne))
        return pe, ne

    # --- decoding -------------------------------------------------------------------------
    def decode(self, latents: Any) -> np.ndarray:
        """Latents -> (T, H, W, 3) floats in [0, 1]. Mirrors the Wan pipeline's own decode."""
        import torch
        from diffusers.utils.torch_utils import get_module_execution_device

        if isinstance(latents, np.ndarray):  # a pipeline without a separate decode gave frames
            return latents[0] if latents.ndim == 5 else latents
        pipe = self.state.pipe
        vae = pipe.vae
        t = time.monotonic()
        try:
            notify.check_cancel()
            notify.progress(0.95 * self.steps_done / max(1, self.total_steps()),
                            f"Decoding segment {self.segment_index + 1}/{len(self.state.plan.segments)}")
            self.injector.hit("decode")
            with torch.no_grad():
                dev = get_module_execution_device(vae)
                z = latents.to(dev, dtype=vae.dtype)
                zdim = vae.config.z_dim
                mean = torch.tensor(vae.config.latents_mean).view(1, zdim, 1, 1, 1).to(z.device, z.dtype)
                inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, zdim, 1, 1, 1).to(z.device, z.dtype)
                video = vae.decode(z / inv_std + mean, return_dict=False)[0]
                frames = pipe.video_processor.postprocess_video(video, output_type="np")
            self.peak.sample()  # type: ignore[attr-defined]
            frames = np.asarray(frames, dtype=np.float32)
            return frames[0] if frames.ndim == 5 else frames
        finally:
            dt = time.monotonic() - t
            self.timings["decode"] += dt
            self.decode_seconds_per_segment = dt

    # --- rungs ----------------------------------------------------------------------------
    def _reload(self, *, dtype: str, device: str, offload: str | None) -> None:
        """Swap in a fresh pipeline from the source. Raises ``_ReloadOOM`` when that runs out of memory."""
        st = self.state
        st.pipe = None  # drop our reference before the source frees and loads
        cleanup_memory()
        failure: BaseException | None = None
        try:
            st.pipe = self.source.load(dtype=dtype, device=device, offload=offload)  # type: ignore[union-attr]
        except Exception as exc:
            if is_oom(exc):
                failure = _ReloadOOM(f"{type(exc).__name__}: {str(exc)[:200]}")
            else:
                mapped = map_exception(exc)
                if isinstance(mapped, OpusClipError):
                    raise mapped from exc
                raise ModelLoadError("The model could not be reloaded for the next memory-saving step.",
                                     details=f"{type(exc).__name__}: {exc}") from exc
        if failure is not None:
            cleanup_memory()  # outside the except block
            raise failure
        st.dtype, st.device, st.offload, st.reloaded = dtype, device, offload, True
        st.vae_fp32 = False
        if st.vae_tiling:
            self._enable_tiling()

    def _enable_tiling(self) -> bool:
        vae = getattr(self.state.pipe, "vae", None)
        if not _vae_supports_tiling(vae):
            return False
        try:
            vae.enable_tiling()
            if callable(getattr(vae, "enable_slicing", None)):
                vae.enable_slicing()
        except (NotImplementedError, AttributeError, TypeError) as exc:
            _log.info("VAE tiling not available: %s", exc)
            return False
        self.state.vae_tiling = True
        return True

    def applies(self, rung: str) -> str | None:
        """Why ``rung`` cannot be taken now (None when it can)."""
        st = self.state
        if rung == "half_precision":
            if st.pipe is None and self.source is None:
                return "no pipeline is loaded"
            return "already in half precision" if st.dtype in ("fp16", "bf16") else None
        if rung in ("model_offload", "sequential_offload"):
            if st.device == "cpu":
                return "runs on the CPU (nothing to offload to)"
            if self.source is None:
                return "needs a fresh pipeline from the model manager"
            if rung == "model_offload" and st.offload is not None:
                return "already offloading"
            if rung == "sequential_offload" and st.offload == "sequential":
                return "already offloading sequentially"
            return None
        if rung == "lower_quality":
            if st.pipe is None:
                return "no pipeline is loaded (the last reload ran out of memory)"
            return None if self._lower_plan() is not None else "already at the smallest setting"
        if rung == "cpu":
            if st.device == "cpu":
                return "already on the CPU"
            need = self._cpu_need_mb()
            avail = free_memory_mb("cpu", self._snapshot())
            if avail is not None and need > avail * 0.9:
                return f"not enough RAM (about {need:,.0f} MB needed, {avail:,.0f} MB available)"
            return None
        return "unknown rung"

    def _snapshot(self) -> dict[str, Any]:
        from ..resources import snapshot
        return snapshot(getattr(self.settings, "outputs", "."))

    def _cpu_need_mb(self) -> float:
        from .estimate import weights_bytes
        p = self.state.plan
        return (weights_bytes(self.state.pipe) * (4 / (2 if self.state.dtype != "fp32" else 4))
                + 900.0 * p.width * p.height * p.frames_per_pass) / 2**20

    def _lower_plan(self) -> Plan | None:
        p = self.state.plan
        lower = lower_preset(p.quality)
        if lower is not None:
            new = make_plan(self.request, self.card, quality=lower, warn=False)
            if self.request.long_mode == "clamp":
                new = _fit_total(new, p.frames_total)
            return new
        f = p.temporal_factor
        if p.frames_per_pass > _MIN_FRAMES_PER_PASS:
            half = max(_MIN_FRAMES_PER_PASS, 1 + ((p.frames_per_pass - 1) // 2 // f) * f)
            if half < p.frames_per_pass:
                return replace(p, frames_per_pass=half, segments=split_segments(p.frames_total, half))
        w, h = _shrink(p.width), _shrink(p.height)
        if (w, h) != (p.width, p.height):
            return replace(p, width=w, height=h)
        return None

    def take(self, rung: str, stage: str) -> None:
        """Apply ``rung`` (already checked with ``applies``) and record it."""
        st = self.state
        if rung == "half_precision":
            half = _half_dtype(st.device)
            if self.source is not None:
                self._reload(dtype=half, device=st.device, offload=st.offload)
                how = "reloaded"
            else:
                import torch
                st.pipe.to(dtype=_TORCH_DTYPES[half](torch))
                st.dtype = half
                how = "converted in place"
            self.record(rung, stage, f"Out of memory: switched the model to half precision ({half}, {how}).")
        elif rung == "model_offload":
            self._reload(dtype=st.dtype, device=st.device, offload="model")
            self.record(rung, stage, "Out of memory: reloaded the model with CPU offload (one part on "
                        "the GPU at a time); slower.")
        elif rung == "sequential_offload":
            self._reload(dtype=st.dtype, device=st.device, offload="sequential")
            self.record(rung, stage, "Out of memory: reloaded the model with sequential CPU offload "
                        "(one layer on the GPU at a time); much slower.")
        elif rung == "lower_quality":
            old, new = st.plan, self._lower_plan()
            assert new is not None
            st.plan = new
            self.record(rung, stage, "Out of memory: lowered the quality to "
                        f"{new.quality} ({new.width}x{new.height}, {new.frames_per_pass} frames per pass, "
                        f"{new.steps} steps; was {old.width}x{old.height}, {old.frames_per_pass} frames). "
                        f"The video still lasts {new.frames_total / new.fps:.1f} s.")
        elif rung == "cpu":
            if self.source is not None:
                self._reload(dtype="fp32", device="cpu", offload=None)
            else:
                import torch
                st.pipe.to("cpu", dtype=torch.float32)
                st.device, st.dtype, st.offload = "cpu", "fp32", None
            per_step = 3.0 * st.plan.width * st.plan.height * st.plan.frames_per_pass / 1e6 * 2
            eta = per_step * st.plan.steps * len(st.plan.segments)
            self.record(rung, stage, "Out of GPU memory at every setting: running on the CPU instead. "
                        f"This is slow: about {_fmt_s(eta)}.")
        else:
            raise ValueError(rung)

    def escalate(self, stage: str) -> None:
        """Take the next rung of the general ladder that applies, or raise ``_Stop``."""
        while self.ladder_pos < len(LADDER):
            rung = LADDER[self.ladder_pos]
            why = self.applies(rung)
            if why is None:
                if rung != "lower_quality":
                    self.ladder_pos += 1
                try:
                    self.take(rung, stage)
                    return
                except _ReloadOOM as exc:
                    _log.warning("ladder: loading the model for %s ran out of memory (%s)", rung, exc)
                    notify.warn(f"Not enough memory even to load the model for the `{rung}` step; "
                                "trying the next one.")
                    continue
            _log.info("ladder: skipping %s (%s)", rung, why)
            self.ladder_pos += 1
        raise _Stop()

    def smallest_setting(self) -> str:
        """The smallest request that might still work, for the final error."""
        from .request import preset_for
        low = preset_for(self.card, "low")
        text = f"quality low and duration 1 s ({low['width']}x{low['height']})"
        if self.state.plan.quality == "low" and self._lower_plan() is None:
            text += (", after freeing memory (close other jobs and unload other models) or on a "
                     "machine with more memory")
        return text


def _shrink(side: int) -> int:
    new = max(_MIN_SIDE, (side // 2) // 16 * 16)
    return new if new < side else side


def _fit_total(plan: Plan, total: int) -> Plan:
    total = min(total, plan.frames_per_pass)
    return replace(plan, frames_total=total, segments=[total], duration_used_s=total / plan.fps)


def _card_name(card: Any) -> str:
    name = card.get("name") if isinstance(card, dict) else getattr(card, "name", None)
    return str(name or "card")


@functools.lru_cache(maxsize=1)
def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for mod in ("torch", "diffusers", "transformers", "accelerate", "numpy"):
        m = sys.modules.get(mod)
        if m is None:
            try:
                m = __import__(mod)
            except Exception:
                continue
        out[mod] = getattr(m, "__version__", "?")
    try:
        import imageio_ffmpeg
        out["imageio_ffmpeg"] = imageio_ffmpeg.__version__
        out["ffmpeg"] = imageio_ffmpeg.get_ffmpeg_version()
    except Exception:
        pass
    from .. import __version__
    out["opusclip_ui"] = __version__
    return out


def _card_info(card: Any, pipe: Any) -> dict[str, Any]:
    def f(name: str) -> Any:
        return card.get(name) if isinstance(card, dict) else getattr(card, name, None)
    return {"name": f("name"), "model_path": f("model_path"), "revision": f("revision"),
            "random_weights": bool(f("random_weights")), "native_fps": f("native_fps"),
            "max_frames": f("max_frames"), "pipeline_class": type(pipe).__name__,
            # the folder's name only: the sidecar is served to browsers, server paths are not
            "loaded_from": Path(_loaded_from(pipe) or "").name or None,
            "resolved_revision": _resolved_revision(pipe)}


def _loaded_from(pipe: Any) -> str | None:
    return str(getattr(getattr(pipe, "config", None), "_name_or_path", "") or "") or None


def _resolved_revision(pipe: Any) -> str | None:
    """The commit of a hub snapshot folder (``.../snapshots/<commit>``), when loaded from one."""
    where = _loaded_from(pipe)
    if not where:
        return None
    p = Path(where)
    return p.name if p.parent.name == "snapshots" else None


def _reproduce_command(request: GenerateRequest, model: str | None) -> str:
    import shlex
    parts = ["python", "-m", "opusclip_ui", "generate", "--model", model or "?", "--prompt",
             request.prompt, "--duration", f"{request.duration_s:g}", "--quality", request.quality,
             "--seed", str(request.seed)]
    if request.negative_prompt:
        parts += ["--negative-prompt", request.negative_prompt]
    if request.steps is not None:
        parts += ["--steps", str(request.steps)]
    if request.guidance is not None:
        parts += ["--guidance", f"{request.guidance:g}"]
    if request.long_mode != "segments":
        parts += ["--long-mode", request.long_mode]
    return " ".join(shlex.quote(x) for x in parts)


def generate(request: GenerateRequest, *, pipe: Any, card: Any, settings: Any,
             session_id: str | None = None, source: PipelineSource | None = None,
             out_path: str | Path | None = None, device: str | None = None,
             model_name: str | None = None) -> GenerateResult:
    """Make the video for ``request`` with ``pipe`` (a loaded diffusers text-to-video pipeline).

    Args:
        request: a checked request (``validate_request``).
        pipe: the loaded pipeline, as the model manager holds it. Held under a per-pipeline lock for
            the run. Rungs that need a fresh pipeline get it from ``source``.
        card: its model card (``ModelCard`` or a dict with the same fields).
        settings: app ``Settings`` (outputs folder, cleanup limits, ``inject_oom``).
        session_id: the UI session; outputs of different sessions go to different folders.
        source: the model manager's reload hook for the offload/precision/CPU rungs.
        out_path: write the video here instead of the session folder (the CLI's ``--out``).
        device: the device the pipeline runs on (default: read from the pipeline).

    Returns:
        ``GenerateResult`` with the verified MP4, its JSON sidecar, the warnings and the rungs taken.

    Raises:
        OutOfMemoryError: every rung failed (names the smallest setting that might still work), or
            the pre-flight found too little RAM for a CPU run.
        DiskFullError, ToolMissingError, ToolFailedError, Cancelled, InvalidRequestError.
    """
    started = time.time()
    with notify.collect_warnings() as warnings:
        outputs_dir = Path(getattr(settings, "outputs", Path("data") / "outputs"))
        run = _Run(request, card, pipe, settings, source, device)
        plan = run.state.plan
        if request.prompt_capped_from:
            warnings.insert(0, f"The prompt was {request.prompt_capped_from:,} characters long; "
                            f"only the first {len(request.prompt):,} are used.")
        # --- pre-flight -------------------------------------------------------------------
        final = Path(out_path) if out_path else new_output_path(outputs_dir, session_id)
        if out_path is None:
            cleanup_outputs(outputs_dir, max_age_hours=settings.outputs_max_age_hours,
                            max_total_mb=settings.outputs_max_total_mb)
        from ..safe_io import check_free_space
        final.parent.mkdir(parents=True, exist_ok=True)
        check_free_space(final.parent, estimate_output_bytes(plan.frames_total, plan.width, plan.height)
                         + 64 * 1024)
        calibration = Calibration(Path(settings.cache) / "generate_calibration.json"
                                  if hasattr(settings, "cache") else None)
        snap = run._snapshot()
        est = estimate_run(plan, pipe=pipe, card=card, device=run.dev,
                           dtype_bytes=2 if run.state.dtype in ("fp16", "bf16") else 4, snap=snap,
                           calibration=calibration, cfg=plan.guidance > 1.0)
        _log.info("pre-flight: %s", est.to_dict())
        if not est.fits:
            lower = _fitting_lower_quality(request, card, pipe, run, snap, calibration)
            offer = (f"quality {lower} is estimated to fit" if lower
                     else run.smallest_setting() + " is the smallest setting")
            if run.dev == "cpu":
                raise OutOfMemoryError(
                    f"This needs about {est.peak_mb:,.0f} MB of RAM but only {est.free_mb:,.0f} MB is "
                    "available, so the run was not started.",
                    f"Try again with {offer}, or close other programs.", device="cpu")
            notify.warn(f"This run may not fit: about {est.peak_mb:,.0f} MB needed at full precision, "
                        f"{est.free_mb:,.0f} MB free. It will step down if it runs out; {offer} "
                        "and would start faster.")
        if est.seconds > 120:
            notify.warn(f"Estimated time: about {_fmt_s(est.seconds)}.")

        lock = _lock_for(pipe)
        _acquire(lock)
        try:
            if est.fits and est.start_rung != "full":
                # start where the estimate says it fits instead of waiting for the first OOM
                # (under the lock: a rung without a source changes the caller's pipeline)
                for rung in LADDER[: LADDER.index(est.start_rung) + 1]:
                    if run.applies(rung) is None:
                        run.ladder_pos = LADDER.index(rung) + 1
                        run.take(rung, "preflight")
            segments = _run_segments(run)
        finally:
            lock.release()
            _restore(run)
        notify.check_cancel()
        # --- encode -----------------------------------------------------------------------
        notify.progress(0.96, "Encoding the video")
        t = time.monotonic()
        probe = encode_mp4(None, final, run.state.plan.fps, segments=segments)
        write_poster(segments[0], final)  # the history gallery shows pictures, not file names
        run.timings["encode"] = time.monotonic() - t
        run.peak.sample()  # type: ignore[attr-defined]
        peak = run.peak()
        run.timings["total"] = time.monotonic() - run.t0
        used = run.state.plan
        pixel_frames = used.width * used.height * used.frames_per_pass
        if not run.rungs and pixel_frames:
            steps = used.steps * len(used.segments)
            measured_step = run.timings["denoise"] / max(1, steps)
            cfg = 2 if used.guidance > 1.0 else 1
            # activations above the resident baseline, per pixel-frame, normalised to fp32
            base_mb = snap["process"]["rss_mb"] if run.dev == "cpu" else est.weights_mb
            scale = (2 if run.state.dtype in ("fp16", "bf16") else 4) / 4.0
            act_bytes = max(0.0, (peak["peak_mb"] - base_mb) * 2**20)
            calibration.update(f"{_card_name(card)}@{run.dev.split(':')[0]}",
                               bppf=act_bytes / pixel_frames / scale or None,
                               spms=measured_step / (pixel_frames / 1e6) / cfg)
        sidecar = {
            "schema": SIDECAR_SCHEMA,
            "app": "Video-OpusClip",
            "video": final.name,
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt,
            "seed": request.seed,
            "seed_was_random": request.seed_was_random,
            "model": _card_info(card, run.state.pipe or pipe) | ({"name": model_name} if model_name else {}),
            "asked": {"duration_s": request.duration_s, "quality": request.quality,
                      "steps": request.steps, "guidance": request.guidance,
                      "long_mode": request.long_mode, "plan": run.asked_plan.to_dict()},
            "used": {"plan": used.to_dict(), "device": run.state.device, "dtype": run.state.dtype,
                     "offload": run.state.offload, "vae_tiling": run.state.vae_tiling,
                     "vae_fp32": run.state.vae_fp32},
            "segments": {"count": len(used.segments), "frames": used.segments,
                         "seeds": [request.seed + i for i in range(len(used.segments))],
                         "join": "hard cut, in order; each segment is its own pass with seed + index"},
            "rungs": [r.to_dict() for r in run.rungs],
            "final_rung": run.rungs[-1].rung if run.rungs else "full",
            "warnings": list(warnings),
            "estimate": est.to_dict(),
            "timings_s": {k: round(v, 4) for k, v in run.timings.items()},
            "peak_memory": peak,
            "output": {"frames": probe.frames, "width": probe.width, "height": probe.height,
                       "fps": probe.fps, "duration_s": probe.duration_s, "codec": probe.codec,
                       "pix_fmt": probe.pix_fmt, "bytes": final.stat().st_size},
            "versions": dict(_versions()),
        }
        sidecar["reproduce"] = {
            "command": _reproduce_command(request, sidecar["model"]["name"]),
            "note": "same card, revision, seed and settings; a run that stepped down the ladder "
                    "(see rungs) reproduces exactly only when it steps down the same way"}
        sidecar = json.loads(json.dumps(sidecar, default=str))  # exactly what the file will hold
        sidecar_path = final.with_suffix(".json")
        from ..safe_io import save_json
        try:
            with map_errors():
                save_json(sidecar_path, sidecar)
        except BaseException:
            final.unlink(missing_ok=True)  # a video without its record is not a result
            final.with_suffix(".jpg").unlink(missing_ok=True)
            raise
        _log.info("generated %s (%d frames, rung %s) in %.2f s", final.name, probe.frames,
                  sidecar["final_rung"], run.timings["total"])
        notify.progress(1.0, "Done")
        return GenerateResult(video_path=final, sidecar_path=sidecar_path, sidecar=sidecar,
                              warnings=list(warnings), rungs=list(run.rungs), seed=request.seed)


def _fitting_lower_quality(request: GenerateRequest, card: Any, pipe: Any, run: _Run,
                           snap: dict[str, Any], calibration: Calibration) -> str | None:
    """The highest preset below the asked one that the estimate says fits, if any."""
    q = lower_preset(request.quality)
    while q is not None:
        plan = make_plan(request, card, quality=q, warn=False)
        est = estimate_run(plan, pipe=pipe, card=card, device=run.dev,
                           dtype_bytes=2 if run.state.dtype in ("fp16", "bf16") else 4, snap=snap,
                           calibration=calibration, cfg=plan.guidance > 1.0)
        if est.fits:
            return q
        q = lower_preset(q)
    return None


def _restore(run: _Run) -> None:
    """Undo changes to the caller's pipeline that were only for this run (VAE tiling)."""
    pipe = run.original_pipe
    vae = getattr(pipe, "vae", None)
    if run.state.pipe is pipe and run.state.vae_tiling and not run.tiling_was_on and vae is not None:
        try:
            vae.disable_tiling()
            if callable(getattr(vae, "disable_slicing", None)):
                vae.disable_slicing()
        except Exception:
            pass
    run.state.pipe = None if run.state.reloaded else run.state.pipe
    close = getattr(run.source, "close", None)
    if callable(close):
        try:
            close()
        except Exception:  # never hide the run's own result or error behind a cleanup failure
            _log.exception("closing the pipeline source failed")
    if run.rungs or run.state.reloaded:
        # only after the ladder acted: a full gc costs ~0.2 s and a clean run has nothing to free
        # (the allocator's cached blocks serve the next run)
        cleanup_memory()


def _run_segments(run: _Run) -> list[np.ndarray]:
    """Denoise and decode every segment, climbing the ladder on OOM. Returns the frames per segment."""
    results: list[np.ndarray] = []
    latents = None
    attempts = 0
    while run.segment_index < len(run.state.plan.segments):
        attempts += 1
        if attempts > _MAX_RUNGS + 4 * len(run.state.plan.segments):
            raise OutOfMemoryError("The run kept running out of memory.", f"Try {run.smallest_setting()}.",
                                   device=run.state.device)
        plan = run.state.plan
        i = run.segment_index
        keep = plan.segments[i]
        native = 1 + math.ceil((keep - 1) / plan.temporal_factor) * plan.temporal_factor \
            if plan.temporal_factor > 1 else keep
        native = max(native, 1)
        stage = "denoise"
        oom: str | None = None
        try:
            if latents is None:
                latents = run.denoise(native, run.request.seed + i)
            stage = "decode"
            frames = run.decode(latents)
            bad = _frames_bad(frames) if run.state.dtype in ("fp16", "bf16") else None
            if bad is not None and not run.state.vae_fp32:
                run.state.pipe.vae.to(dtype=_torch().float32)
                run.state.vae_fp32 = True
                run.record("fp32_vae", "decode", f"Half-precision decoding gave {bad}: decoded again "
                           "with the VAE in full precision (fp32).")
                frames = run.decode(latents)
        except Exception as exc:
            if not is_oom(exc):
                raise
            oom = f"{type(exc).__name__}: {str(exc)[:200]}"
        if oom is not None:
            # outside the except block: the traceback (and the tensors its frames hold) is gone
            cleanup_memory()
            _log.warning("out of memory at %s of segment %d: %s", stage, i + 1, oom)
            try:
                _climb(run, stage)
            except _Stop:
                raise OutOfMemoryError(
                    f"Ran out of memory at every step down (last at {stage}).",
                    f"The smallest setting that might still work: {run.smallest_setting()}.",
                    device=run.state.device) from None
            if run.rungs and run.rungs[-1].rung == "lower_quality":
                latents = None
                results.clear()          # every segment must have the new size
                run.segment_index = 0
                run.steps_done = 0
            elif stage == "denoise":
                latents = None
            continue
        results.append(frames[:keep])
        latents = None
        run.segment_index += 1
    return results


def _climb(run: _Run, stage: str) -> None:
    st = run.state
    if stage == "denoise" and not st.retried:
        st.retried = True
        run.record("retry", stage, "Out of memory while denoising: freed memory and retried once.")
        return
    if stage == "decode" and not st.vae_tiling and _supports_latent_decode(st.pipe):
        if run._enable_tiling():
            run.record("vae_tiling", stage, "Out of memory while decoding: decoding the same latents "
                       "again with VAE tiling and slicing (denoising is not redone).")
            return
        _log.info("ladder: VAE of %s has no tiling; skipping that rung", type(st.pipe).__name__)
    run.escalate(stage)


def _torch() -> Any:
    import torch
    return torch
