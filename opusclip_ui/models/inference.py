"""Trying a loaded model out: embeddings for text encoders, a component list for pipelines.

``embed`` is the design guide's ``safe_model_inference`` made real: inputs are checked first, texts
over the card's batch limit are dropped with a warning (never silently), truncation to ``max_length``
is reported per text, texts run through the model in batches, and an out-of-memory on the GPU moves
the model to the CPU and tries again (with a warning). The result carries the shape, latency, memory
delta and the cosine-similarity matrix of the inputs.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from .. import notify
from ..errors import InvalidRequestError, is_oom, map_exception
from ..guards import cleanup_memory
from ..log import setup_logging
from .loader import LoadedModel, _dtype_name, inject_oom

__all__ = ["EmbedResult", "embed", "describe_pipeline", "similarity_heatmap", "parse_texts",
           "MAX_TEXT_CHARS"]

_log = setup_logging("models.inference")

MAX_TEXT_CHARS = 20_000


@dataclass
class EmbedResult:
    shape: list[int]
    latency_ms: float
    memory_delta_mb: float
    similarity: list[list[float]]
    texts: list[str]
    truncated: list[int]            # indices of texts cut to max_length
    dropped: int                    # texts over the batch limit that were not embedded
    max_length: int
    device: str
    dtype: str
    batches: int

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["similarity"] = [[round(v, 4) for v in row] for row in self.similarity]
        d["latency_ms"] = round(self.latency_ms, 2)
        d["memory_delta_mb"] = round(self.memory_delta_mb, 2)
        return d


def parse_texts(text: str | list[str]) -> list[str]:
    """One text, or several (one per line). Blank lines are skipped.

    Raises:
        InvalidRequestError: no text at all, or a text longer than ``MAX_TEXT_CHARS``.
    """
    items = text.splitlines() if isinstance(text, str) else list(text)
    items = [t.strip() for t in items if isinstance(t, str) and t.strip()]
    if not items:
        raise InvalidRequestError("There is no text to embed (the input is empty or only spaces).",
                                  "Type one sentence, or several, one per line.")
    for i, t in enumerate(items):
        if len(t) > MAX_TEXT_CHARS:
            raise InvalidRequestError(f"Text {i + 1} is {len(t)} characters long; the limit is "
                                      f"{MAX_TEXT_CHARS}.", "Shorten it or split it into lines.")
    return items


def _rss_mb() -> float:
    import psutil
    return psutil.Process().memory_info().rss / 2**20


def _mem_mb(device: str) -> float:
    import torch
    if device == "cuda":
        return torch.cuda.memory_allocated() / 2**20
    return _rss_mb()


def embed(loaded: LoadedModel, texts: str | list[str], *, batch_size: int = 16,
          settings: Any = None) -> EmbedResult:
    """Embed ``texts`` with a loaded text encoder.

    Args:
        loaded: a model from the manager (``model_type: text-encoder``).
        texts: one string (split by lines) or a list of strings.
        batch_size: texts per forward pass.
        settings: app settings, for the test-only OOM injection (stage ``embed``).

    Raises:
        InvalidRequestError: not a text encoder, or bad input.
        OutOfMemoryError: out of memory on the CPU as well.
    """
    import torch

    if loaded.kind != "text-encoder" or loaded.model is None:
        raise InvalidRequestError(f"`{loaded.name}` is not a loaded text encoder.",
                                  "Load a text-encoder card (for example `minilm`) to embed text.")
    items = parse_texts(texts)
    card = loaded.card
    dropped = 0
    if len(items) > card.batch_limit:
        dropped = len(items) - card.batch_limit
        notify.warn(f"{len(items)} texts were given; only the first {card.batch_limit} are embedded "
                    f"(the batch limit of `{card.name}`); {dropped} were left out.")
        items = items[:card.batch_limit]
    tok = loaded.tokenizer
    limit = card.max_length or min(int(getattr(tok, "model_max_length", 512) or 512), 512)
    lengths = [len(ids) for ids in tok(items, add_special_tokens=True, truncation=False,
                                       verbose=False)["input_ids"]]
    truncated = [i for i, n in enumerate(lengths) if n > limit]
    if truncated:
        shown = ", ".join(f"text {i + 1} ({lengths[i]} tokens)" for i in truncated[:5])
        notify.warn(f"{len(truncated)} text(s) are longer than {limit} tokens and were cut to fit: "
                    f"{shown}{'...' if len(truncated) > 5 else ''}.")

    for attempt in range(2):
        device = loaded.device
        failed = None
        try:
            inject_oom(settings, "embed" if attempt == 0 else "embed.cpu")
            before = _mem_mb(device)
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            vectors, batches = _forward(loaded, items, limit, batch_size)
            latency = (time.perf_counter() - t0) * 1000
            after = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else _mem_mb(device)
            break
        except Exception as exc:  # noqa: BLE001 - only OOM falls back; the rest re-raise
            if not is_oom(exc) or device == "cpu" or attempt == 1:
                mapped = map_exception(exc)
                if mapped is exc:
                    raise
                raise mapped from exc
            failed = exc
        # Outside the except block, so the traceback does not pin the GPU tensors.
        _log.warning("embed on %s ran out of memory (%s); moving %s to the CPU", device, failed,
                     loaded.name)
        failed = None
        cleanup_memory()
        loaded.model.to("cpu", dtype=torch.float32)
        loaded.device, loaded.dtype, loaded.rung = "cpu", torch.float32, "cpu"
        notify.warn(f"`{loaded.name}` ran out of GPU memory while embedding; it now runs on the CPU.")
    sim = (vectors @ vectors.T).float().cpu()
    if not card.normalize:
        norms = vectors.float().norm(dim=1, keepdim=True).clamp_min(1e-12).cpu()
        sim = sim / (norms @ norms.T)
    return EmbedResult(shape=list(vectors.shape), latency_ms=latency,
                       memory_delta_mb=after - before, similarity=sim.tolist(), texts=items,
                       truncated=truncated, dropped=dropped, max_length=limit,
                       device=loaded.device, dtype=_dtype_name(loaded.dtype), batches=batches)


def _forward(loaded: LoadedModel, items: list[str], limit: int, batch_size: int):
    import torch

    model, tok, card = loaded.model, loaded.tokenizer, loaded.card
    out = []
    batches = 0
    with torch.inference_mode():
        for start in range(0, len(items), max(1, batch_size)):
            chunk = items[start:start + batch_size]
            enc = tok(chunk, padding=True, truncation=True, max_length=limit, return_tensors="pt")
            enc = {k: v.to(loaded.device) for k, v in enc.items()}
            hidden = model(**enc).last_hidden_state
            if card.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
            pooled = pooled.float()
            if card.normalize:
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
            out.append(pooled)
            batches += 1
    return torch.cat(out), batches


def describe_pipeline(loaded: LoadedModel) -> list[dict[str, Any]]:
    """Components of a loaded pipeline (or the one text encoder): class, parameters, dtype, device."""
    model = loaded.model
    if model is None:
        return []
    comps = dict(model.components) if hasattr(model, "components") else {"model": model}
    rows = []
    for name, comp in comps.items():
        if comp is None:
            continue
        row: dict[str, Any] = {"component": name, "class": type(comp).__name__,
                               "params": None, "dtype": None, "device": None}
        if hasattr(comp, "parameters"):
            params = list(comp.parameters())
            row["params"] = sum(p.numel() for p in params)
            if params:
                row["dtype"] = _dtype_name(params[0].dtype)
                row["device"] = str(params[0].device)
            hook = getattr(comp, "_hf_hook", None)
            if hook is not None:
                row["device"] = f"{row['device']} (offloaded, runs on {loaded.device})"
        rows.append(row)
    return rows


def similarity_heatmap(matrix: list[list[float]], labels: list[str] | None = None, cell: int = 48):
    """A PIL picture of a similarity matrix: blue (low) to red (high), the value in each cell."""
    from PIL import Image, ImageDraw, ImageFont

    n = len(matrix)
    labels = [str(i + 1) for i in range(n)] if labels is None else labels
    margin = 28
    size = margin + max(n, 1) * cell
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    for i in range(n):
        draw.text((margin + i * cell + cell // 2 - 4, 8), labels[i][:3], fill="black", font=font)
        draw.text((6, margin + i * cell + cell // 2 - 6), labels[i][:3], fill="black", font=font)
        for j in range(n):
            v = max(-1.0, min(1.0, float(matrix[i][j])))
            t = (v + 1) / 2
            color = (int(255 * t), int(80 + 60 * (1 - abs(2 * t - 1))), int(255 * (1 - t)))
            x0, y0 = margin + j * cell, margin + i * cell
            draw.rectangle([x0, y0, x0 + cell - 2, y0 + cell - 2], fill=color)
            draw.text((x0 + 8, y0 + cell // 2 - 6), f"{v:.2f}", fill="white", font=font)
    return img
