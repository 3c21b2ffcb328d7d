"""Does a card fit this machine as it is now? From the card's memory table and a live snapshot.

Verdicts, best first: ``fits`` (loads whole on the GPU, or on the CPU for a CPU-sized model),
``fits with offload`` (needs model or sequential CPU offload), ``does not fit``, and ``unknown`` (no
memory table and no local weights to measure). ``recommend`` picks the best real (not random) card
that fits.
"""
from __future__ import annotations

from typing import Any

from .cards import ModelCard

__all__ = ["hardware_fit", "recommend", "machine_memory", "VERDICTS"]

VERDICTS = ("fits", "fits with offload", "does not fit", "unknown")
_OFFLOAD_RUNGS = ("model_offload", "sequential_offload")


def machine_memory(snap: dict[str, Any]) -> dict[str, float | None]:
    """Free GPU memory (largest device) and available RAM, in GB, from ``resources.snapshot()``."""
    ram = snap.get("ram", {}) or {}
    ram_gb = float(ram.get("available_mb", 0)) / 1024
    gpu = snap.get("gpu", {}) or {}
    best = None
    for d in gpu.get("devices", []) or []:
        total = d.get("total_mb")
        used = d.get("used_mb", 0) or 0
        if total:
            free = (total - used) / 1024
            best = free if best is None else max(best, free)
    return {"gpu_free_gb": best, "ram_available_gb": ram_gb,
            "gpu_label": gpu.get("label", "CPU only")}


def hardware_fit(card: ModelCard, snap: dict[str, Any], *, weights_gb: float | None = None
                 ) -> dict[str, Any]:
    """The verdict for ``card`` on this machine.

    Args:
        card: the model card.
        snap: ``resources.snapshot()``.
        weights_gb: the weights' size at the card's precision when they are on disk (used when the
            card has no memory table).
    """
    mem = machine_memory(snap)
    gpu, ram = mem["gpu_free_gb"], mem["ram_available_gb"] or 0.0
    wants_gpu = card.device in ("auto", "cuda", "mps")
    table = card.memory.entries if card.memory else []

    def vram(rung):
        e = card.memory_for(rung)
        return e.vram_gb if e and e.vram_gb is not None else None

    if gpu is not None and wants_gpu and table:
        for rung in ("full", "half"):
            need = vram(rung)
            if need is not None and need <= gpu:
                return _v("fits", rung, f"needs {need:g} GB of GPU memory ({rung}); "
                          f"{gpu:.1f} GB free on {mem['gpu_label']}")
        for rung in _OFFLOAD_RUNGS:
            need = vram(rung)
            if need is not None and need <= gpu:
                return _v("fits with offload", rung, f"needs {need:g} GB of GPU memory with "
                          f"{rung.replace('_', ' ')}; {gpu:.1f} GB free")
        smallest = min((e.vram_gb for e in table if e.vram_gb is not None), default=None)
        if smallest is not None:
            return _v("does not fit", None, f"needs at least {smallest:g} GB of GPU memory; "
                      f"{gpu:.1f} GB free on {mem['gpu_label']}")
    # No GPU (or no GPU figures): the CPU rung decides.
    cpu = card.memory_for("cpu")
    need_ram = cpu.ram_gb if cpu and cpu.ram_gb is not None else None
    if need_ram is None and weights_gb is not None:
        need_ram = weights_gb * 1.2
    if need_ram is not None:
        if need_ram <= ram:
            where = "on the CPU" if gpu is None or not wants_gpu else "on the CPU (no GPU figure)"
            return _v("fits", "cpu", f"needs about {need_ram:.2g} GB of RAM {where}; "
                      f"{ram:.1f} GB available")
        return _v("does not fit", None, f"needs about {need_ram:.2g} GB of RAM; {ram:.1f} GB "
                  "available")
    if gpu is None and table:
        return _v("does not fit", None, "needs a GPU (its memory table has no CPU figure); this "
                  "machine is CPU only")
    return _v("unknown", None, "no memory table and the weights are not on disk to measure")


def _v(verdict: str, rung: str | None, detail: str) -> dict[str, Any]:
    return {"verdict": verdict, "rung": rung, "detail": detail}


def recommend(cards: dict[str, ModelCard], fits: dict[str, dict[str, Any]],
              model_type: str = "text-to-video") -> str | None:
    """The best card of ``model_type`` that fits: real weights first, whole before offloaded,
    then the heaviest (a proxy for quality). Falls back to a random-weights card."""
    ranked = []
    for name, card in cards.items():
        if card.model_type != model_type:
            continue
        verdict = fits.get(name, {}).get("verdict")
        if verdict not in ("fits", "fits with offload"):
            continue
        heaviest = max((e.vram_gb or e.ram_gb or 0 for e in (card.memory.entries
                                                               if card.memory else [])), default=0)
        ranked.append((not card.random_weights, verdict == "fits", heaviest, name))
    if not ranked:
        return None
    return max(ranked)[3]
