"""Our model loader and embed against the bare transformers code a user would write, on minilm.

Baseline ("bare"): ``AutoTokenizer.from_pretrained`` + ``AutoModel.from_pretrained`` (safetensors,
fp32, CPU) + ``eval()``; inference is tokenize + forward + mean pooling + L2 normalise, the same
maths ``embed`` does. Ours: ``ModelLoader.load`` (estimate, plan, ladder, safetensors check) and
``inference.embed`` (adds the truncation count, the batch limit check and the similarity matrix).

Both run in this one process, alternately, after a warm-up that imports everything, so import time
is not counted. Load is measured ``--loads`` times each, inference ``--rounds`` times each on the
same ``--texts`` sentences. Writes benchmarks/RESULTS_models.md.

    .venv/bin/python benchmarks/bench_models.py [--loads 15] [--rounds 30] [--texts 16]
"""
from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SENTENCES = [
    "A cat is sleeping on a sunny windowsill.",
    "The kitten naps in the warm light by the window.",
    "Stock markets fell sharply after the interest rate decision.",
    "A chef slices vegetables quickly in a busy kitchen.",
    "Waves crash against the rocks during a storm at night.",
    "The team celebrated their victory in the final minute.",
    "A small drone flies over a field of sunflowers.",
    "Children build a sandcastle on the beach at sunset.",
]


def bare_load(folder: Path):
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModel.from_pretrained(str(folder), dtype=torch.float32, use_safetensors=True,
                                      local_files_only=True)
    model.eval()
    return model, tok


def bare_embed(model, tok, texts):
    import torch

    with torch.inference_mode():
        enc = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--loads", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--texts", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS_models.md"))
    args = ap.parse_args()

    import torch

    from opusclip_ui.models.cards import CARDS_DIR, load_card, resolve_package_path
    from opusclip_ui.models.inference import embed
    from opusclip_ui.models.loader import ModelLoader
    from opusclip_ui.settings import Settings

    # One thread: the 2 cores are shared with other jobs, and more threads only add noise.
    torch.set_num_threads(args.threads)
    card = load_card(CARDS_DIR / "minilm.yaml").model_copy(update={"device": "cpu"})
    folder = resolve_package_path(card.model_path)
    loader = ModelLoader(Settings(data_dir=Path("/tmp/bench-models")))
    texts = (SENTENCES * (args.texts // len(SENTENCES) + 1))[: args.texts]

    # warm-up: imports, file cache
    m, t = bare_load(folder)
    bare_embed(m, t, texts)
    warm = loader.load(card, folder)
    embed(warm, texts, batch_size=len(texts))
    del m, t, warm
    gc.collect()

    load_bare, load_ours = [], []
    for i in range(args.loads):
        order = ("bare", "ours") if i % 2 == 0 else ("ours", "bare")
        for who in order:
            gc.collect()
            t0 = time.perf_counter()
            if who == "bare":
                obj = bare_load(folder)
                load_bare.append(time.perf_counter() - t0)
            else:
                obj = loader.load(card, folder)
                load_ours.append(time.perf_counter() - t0)
            del obj

    model, tok = bare_load(folder)
    loaded = loader.load(card, folder)
    inf_bare, inf_ours = [], []
    for i in range(args.rounds):
        order = ("bare", "ours") if i % 2 == 0 else ("ours", "bare")
        for who in order:
            t0 = time.perf_counter()
            if who == "bare":
                ref = bare_embed(model, tok, texts)
                inf_bare.append(time.perf_counter() - t0)
            else:
                res = embed(loaded, texts, batch_size=len(texts))
                inf_ours.append(time.perf_counter() - t0)
    # Same numbers out of both paths.
    ours_sim = torch.tensor(res.similarity)
    diff = (ours_sim - (ref @ ref.T)).abs().max().item()

    mb, mo = statistics.median(load_bare), statistics.median(load_ours)
    ib, io = statistics.median(inf_bare), statistics.median(inf_ours)
    lb, lo = min(load_bare), min(load_ours)
    jb, jo = min(inf_bare), min(inf_ours)
    rows = [
        ("load (s, median)", mb, mo, mo / mb, "≤ 1.1×"),
        ("load (s, best)", lb, lo, lo / lb, "≤ 1.1×"),
        (f"embed {len(texts)} texts (ms, median)", ib * 1000, io * 1000, io / ib, "≤ 1.05×"),
        (f"embed {len(texts)} texts (ms, best)", jb * 1000, jo * 1000, jo / jb, "≤ 1.05×"),
    ]
    lines = [
        "# Model loading and test inference (minilm)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} CPU cores "
        f"({platform.processor() or platform.machine()}), torch {torch.__version__}, one process, "
        f"{args.threads} torch thread(s), alternating order; {args.loads} loads and {args.rounds} inference rounds each. "
        "Script: `benchmarks/bench_models.py`.",
        "",
        "Baseline: `AutoTokenizer` + `AutoModel.from_pretrained` (safetensors, fp32, CPU) and the "
        "same tokenize + forward + mean-pool + normalise. Ours: `ModelLoader.load` (estimate, plan, "
        "ladder) and `inference.embed` (adds truncation count, batch-limit check, similarity "
        "matrix).",
        "",
        "| measure | bare transformers | Video-OpusClip | ratio | goal |",
        "|---|---|---|---|---|",
    ]
    for name, b, o, r, goal in rows:
        lines.append(f"| {name} | {b:.3f} | {o:.3f} | {r:.2f}× | {goal} |")
    lines += ["", f"Largest difference between the two similarity matrices: {diff:.2e}.",
              f"Spread: load bare {min(load_bare):.3f}–{max(load_bare):.3f} s, ours "
              f"{min(load_ours):.3f}–{max(load_ours):.3f} s; embed bare "
              f"{min(inf_bare) * 1000:.1f}–{max(inf_bare) * 1000:.1f} ms, ours "
              f"{min(inf_ours) * 1000:.1f}–{max(inf_ours) * 1000:.1f} ms.",
              "The machine is shared with other engineers' jobs, so medians wobble; the best-of rows "
              "show the cost of the code itself."]
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
