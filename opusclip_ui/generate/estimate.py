"""Pre-flight: will this run fit, how long will it take, and where should the ladder start?

Peak memory is modelled as ``weights + bytes_per_pixel_frame * width * height * frames_per_pass``
(the activations of the transformer and, usually the largest, of the VAE decoder grow with the
pixels of one pass), and time as ``seconds_per_megapixel_step * megapixel-frames * steps``. The two
coefficients start from conservative defaults, or from the card's memory table, and are calibrated
per card and device from measured runs (kept in ``<cache>/generate_calibration.json``, a moving
average). The estimate is compared with the live resource snapshot; it picks the starting rung and
warns before the user waits for nothing.
"""
from __future__ import annotations

import threading
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..log import setup_logging
from .request import Plan

__all__ = ["Estimate", "estimate_run", "weights_bytes", "Calibration", "free_memory_mb",
           "RUNG_MEMORY_FACTORS"]

_log = setup_logging("generate.estimate")

# Defaults before any measured run (fp32; half precision halves the activation term).
_DEFAULT_BPPF = {"cuda": 600.0, "mps": 600.0, "cpu": 900.0}
_DEFAULT_SPMS = {"cuda": 0.05, "mps": 0.4, "cpu": 3.0}   # seconds per megapixel-frame per step
#: What each rung keeps of (weights, activations) on the device, relative to the full fp32 run.
RUNG_MEMORY_FACTORS = {
    "full": (1.0, 1.0),
    "half_precision": (0.5, 0.5),
    "model_offload": (0.3, 0.5),           # only the largest component resident at a time
    "sequential_offload": (0.02, 0.5),     # one layer at a time
}


_weights_cache: "weakref.WeakKeyDictionary[Any, tuple[tuple, int]]" = weakref.WeakKeyDictionary()


def weights_bytes(pipe: Any) -> int:
    """Bytes of every torch module's parameters and buffers in the pipeline (cached per pipeline
    object and the dtypes of its components)."""
    comps = [c for c in getattr(pipe, "components", {}).values() if callable(getattr(c, "parameters", None))]
    key = tuple(str(getattr(c, "dtype", "")) for c in comps)
    try:
        hit = _weights_cache.get(pipe)
    except TypeError:
        hit = None
    if hit is not None and hit[0] == key:
        return hit[1]
    total = 0
    for comp in comps:
        try:
            total += sum(p.numel() * p.element_size() for p in comp.parameters())
            total += sum(b.numel() * b.element_size() for b in comp.buffers())
        except Exception:  # an exotic component: skip it rather than fail the pre-flight
            continue
    try:
        _weights_cache[pipe] = (key, total)
    except TypeError:
        pass
    return total


@dataclass
class Estimate:
    device: str
    weights_mb: float
    peak_mb: float              # at the full rung
    free_mb: float | None       # on the device (RAM for cpu); None when unknown
    seconds: float
    seconds_per_step: float
    start_rung: str             # "full", "half_precision", "model_offload", "sequential_offload"
    fits: bool
    calibrated: bool
    output_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Calibration:
    """Per card+device coefficients, updated from measured runs (thread-safe, atomic file)."""

    _lock = threading.Lock()

    def __init__(self, path: Path | None):
        self.path = path

    def _load(self) -> dict[str, Any]:
        if self.path is None or not self.path.is_file():
            return {}
        from ..safe_io import load_json
        try:
            data = load_json(self.path)
        except Exception as exc:  # a damaged calibration file only costs accuracy
            _log.warning("ignoring calibration file %s: %s", self.path, exc)
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> dict[str, float] | None:
        with self._lock:
            entry = self._load().get(key)
        return entry if isinstance(entry, dict) else None

    def update(self, key: str, *, bppf: float | None, spms: float | None) -> None:
        if self.path is None:
            return
        from ..safe_io import save_json
        with self._lock:
            data = self._load()
            old = data.get(key) if isinstance(data.get(key), dict) else {}
            new = dict(old)
            for name, value in (("bytes_per_pixel_frame", bppf), ("seconds_per_mpf_step", spms)):
                if value is None or value <= 0:
                    continue
                new[name] = value if name not in old else 0.5 * old[name] + 0.5 * value
            new["runs"] = int(old.get("runs", 0)) + 1
            data[key] = new
            try:
                save_json(self.path, data)
            except Exception as exc:
                _log.warning("could not save calibration: %s", exc)


def free_memory_mb(device: str, snap: dict[str, Any]) -> float | None:
    """Free memory where the run happens: the GPU's free memory, or available RAM for cpu."""
    if device.startswith("cuda"):
        try:
            import torch
            if torch.cuda.is_available():
                idx = torch.device(device).index or 0
                free, _ = torch.cuda.mem_get_info(idx)
                return free / 2**20
        except Exception:
            pass
        devs = (snap.get("gpu") or {}).get("devices") or []
        if devs:
            return devs[0]["total_mb"] - devs[0]["used_mb"]
        return None
    if device == "cpu":
        return (snap.get("ram") or {}).get("available_mb")
    return None


def estimate_run(plan: Plan, *, pipe: Any, card: Any, device: str, dtype_bytes: int,
                 snap: dict[str, Any], calibration: Calibration | None = None,
                 cfg: bool = True) -> Estimate:
    """Estimate peak memory and time of ``plan`` and pick the starting rung."""
    from .encode import estimate_output_bytes

    dev = device.split(":")[0]
    key = f"{getattr(card, 'name', None) or 'card'}@{dev}"
    calib = calibration.get(key) if calibration else None
    bppf = (calib or {}).get("bytes_per_pixel_frame") or _DEFAULT_BPPF.get(dev, 900.0)
    spms = (calib or {}).get("seconds_per_mpf_step") or _DEFAULT_SPMS.get(dev, 3.0)
    w_bytes = weights_bytes(pipe)
    pixel_frames = plan.width * plan.height * plan.frames_per_pass
    scale = dtype_bytes / 4.0   # coefficients are for fp32
    if calib is None and card is not None and getattr(card, "memory_for", None) is not None:
        entry = card.memory_for("full")
        if entry is not None and entry.vram_gb and dev != "cpu":
            # a published peak for the card's high preset: derive the activation coefficient
            try:
                from .request import preset_for
                hp = preset_for(card, "high")
                ref = hp["width"] * hp["height"] * hp["frames"]
                bppf = max(bppf, (entry.vram_gb * 2**30 - w_bytes) / max(ref, 1) / scale)
            except Exception:
                pass
    act = bppf * pixel_frames * scale
    peak = w_bytes + act
    steps_time = spms * pixel_frames / 1e6 * (2 if cfg else 1)
    seconds = steps_time * plan.steps * len(plan.segments) + 2.0 * steps_time * len(plan.segments)
    free = free_memory_mb(dev, snap)
    start = "full"
    fits = True
    if free is not None:
        fits = False
        half = 2.0 / dtype_bytes           # rungs from half precision on keep weights in 16 bits
        for rung, (wf, af) in RUNG_MEMORY_FACTORS.items():
            if dev == "cpu" and rung in ("model_offload", "sequential_offload"):
                continue
            if rung == "full":
                need = w_bytes + act
            else:
                need = w_bytes * half * (wf / 0.5) + act * half * (af / 0.5)
            if need / 2**20 <= free * 0.9:
                start, fits = rung, True
                break
    return Estimate(device=dev, weights_mb=w_bytes / 2**20, peak_mb=peak / 2**20, free_mb=free,
                    seconds=seconds, seconds_per_step=steps_time, start_rung=start, fits=fits,
                    calibrated=calib is not None,
                    output_bytes=estimate_output_bytes(plan.frames_total, plan.width, plan.height))
