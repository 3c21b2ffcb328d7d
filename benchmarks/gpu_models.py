"""Peak VRAM and seconds per ladder rung for the full-size Wan 2.1 T2V 1.3B, on a CUDA machine.

Random weights in the real architecture use the same memory and time as the real weights, and need
no download: this script builds the full-size pipeline from its published configuration
(WanTransformer3DModel 1.3B: 30 layers, dim 1536, 12 heads, ffn 8960; UMT5-XXL encoder: 24 layers,
d_model 4096, vocab 256384; AutoencoderKLWan at its defaults), fills it with random bf16 weights,
saves it once with safetensors, and then, for each rung, in a fresh child process:

1. loads it through ``ModelLoader`` (``from_pretrained`` + the rung's placement) and times it;
2. runs one short generation (default 480x272, 33 frames, 4 steps) and times it;
3. records ``torch.cuda.max_memory_allocated`` / ``max_memory_reserved`` and the process's RSS.

It writes ``benchmarks/RESULTS_gpu_models.md`` and ``benchmarks/gpu_models.json``, and prints the
``memory:`` block to paste into ``configs/models/wan2.1-t2v-1.3b.yaml`` (``--update-card`` writes it
there; the card's comments are kept, only the memory block is replaced).

    .venv/bin/python benchmarks/gpu_models.py [--rungs full,model_offload,sequential_offload,half]
        [--work /tmp/wan13b-random] [--frames 33 --height 272 --width 480 --steps 4] [--update-card]

Needs a CUDA GPU (about 20 GB for the ``full`` rung at the defaults), about 40 GB of RAM and 15 GB
of disk. The first run spends a minute or two building and saving the random pipeline.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CARD = ROOT / "configs" / "models" / "wan2.1-t2v-1.3b.yaml"

TRANSFORMER = dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128,
                   in_channels=16, out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960,
                   num_layers=30, cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6,
                   rope_max_seq_len=1024)
UMT5_XXL = dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                relative_attention_num_buckets=32, relative_attention_max_distance=128,
                feed_forward_proj="gated-gelu", dense_act_fn="gelu_new", is_gated_act=True,
                layer_norm_epsilon=1e-6, tie_word_embeddings=False, dropout_rate=0.0)


def build(folder: Path) -> None:
    """Build the full-size random pipeline and save it (safetensors, bf16) into ``folder``."""
    import torch
    from diffusers import (AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline,
                           WanTransformer3DModel)
    from transformers import UMT5Config, UMT5EncoderModel

    from opusclip_ui.models.tiny import _build_tokenizer

    if (folder / "model_index.json").is_file():
        print(f"reusing {folder}")
        return
    t0 = time.perf_counter()
    torch.manual_seed(0)
    tokenizer = _build_tokenizer()
    # The 5.7B-parameter encoder is created without initialising (meta), then filled in bf16:
    # initialising it in fp32 on the CPU would take minutes and 23 GB.
    cfg = UMT5Config(**UMT5_XXL, pad_token_id=tokenizer.pad_token_id,
                     eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # so to_empty allocates 11 GB, not 23 GB
    try:
        with torch.device("meta"):
            text_encoder = UMT5EncoderModel(cfg)
        text_encoder = text_encoder.to_empty(device="cpu")
    finally:
        torch.set_default_dtype(default)
    # to_empty gives each module its own tensor: tie the token embedding again, as in the real model
    text_encoder.encoder.embed_tokens.weight = text_encoder.shared.weight
    with torch.no_grad():
        for name, p in text_encoder.named_parameters():
            if "layer_norm" in name:
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02)
    transformer = WanTransformer3DModel(**TRANSFORMER).to(torch.bfloat16)
    vae = AutoencoderKLWan().to(torch.float32)
    pipe = WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, transformer=transformer,
                       vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0))
    n = {k: sum(p.numel() for p in m.parameters()) for k, m in
         (("transformer", transformer), ("text_encoder", text_encoder), ("vae", vae))}
    print(f"built in {time.perf_counter() - t0:.0f}s: {n}")
    tmp = folder.with_name(folder.name + ".tmp")
    pipe.save_pretrained(tmp, safe_serialization=True)
    os.replace(tmp, folder)
    print(f"saved to {folder} in {time.perf_counter() - t0:.0f}s")


def measure(folder: Path, rung: str, frames: int, height: int, width: int, steps: int) -> dict:
    """One rung, in this (fresh) process: load + one generation, peak memory and seconds."""
    import psutil
    import torch

    from opusclip_ui.models.cards import parse_card
    from opusclip_ui.models.loader import ModelLoader
    from opusclip_ui.settings import Settings

    # The card's precision is bf16, so the loader's own `half` rung is skipped for it; here `half`
    # means loading in fp16 instead, for comparison.
    dtype = torch.float16 if rung == "half" else torch.bfloat16
    card = parse_card({"model_type": "text-to-video", "model_path": str(folder), "device": "cuda",
                       "precision": "fp16" if rung == "half" else "bf16", "name": "wan-random"},
                      roots=[folder.parent])
    loader = ModelLoader(Settings(data_dir=Path("/tmp/gpu-models-data")))
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    pipe, _ = loader._from_pretrained(card, folder, dtype)
    device = loader._place(pipe, "full" if rung == "half" else rung, "cuda")
    torch.cuda.synchronize()
    load_s = time.perf_counter() - t0
    load_peak = torch.cuda.max_memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    generator = torch.Generator("cpu").manual_seed(0)
    out = pipe(prompt="a red car driving in the city at night", negative_prompt="blurry",
               num_frames=frames, height=height, width=width, num_inference_steps=steps,
               guidance_scale=5.0, generator=generator, output_type="np")
    torch.cuda.synchronize()
    gen_s = time.perf_counter() - t0
    return {"rung": rung, "device": device, "load_s": round(load_s, 2),
            "generate_s": round(gen_s, 2), "s_per_step": round(gen_s / steps, 2),
            "load_peak_gb": round(load_peak / 2**30, 2),
            "generate_peak_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "reserved_peak_gb": round(torch.cuda.max_memory_reserved() / 2**30, 2),
            "rss_gb": round(psutil.Process().memory_info().rss / 2**30, 2),
            "frames_shape": list(out.frames.shape), "gpu": torch.cuda.get_device_name(0),
            "frames": frames, "height": height, "width": width, "steps": steps}


def memory_block(results: list[dict], args) -> str:
    lines = ["memory:",
             f'  source: "benchmarks/gpu_models.py on {results[0]["gpu"]}, full-size architecture '
             f'with random weights, {args.width}x{args.height}, {args.frames} frames, '
             f'{args.steps} steps ({time.strftime("%Y-%m-%d")})"',
             "  measured: true", "  entries:"]
    for r in results:
        if "error" in r:
            continue
        prec = "fp16" if r["rung"] == "half" else "bf16"
        lines.append(f'    - {{rung: {r["rung"]}, precision: {prec}, vram_gb: '
                     f'{max(r["load_peak_gb"], r["generate_peak_gb"])}, ram_gb: {r["rss_gb"]}, '
                     f'seconds: {r["generate_s"]}, note: "load {r["load_s"]} s, '
                     f'{r["s_per_step"]} s/step"}}')
    return "\n".join(lines)


def update_card(block: str) -> None:
    """Replace the card's ``memory:`` block (to the next top-level key), keeping everything else."""
    text = CARD.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(text) if line.startswith("memory:"))
    end = next((i for i in range(start + 1, len(text))
                if text[i] and not text[i].startswith((" ", "#"))), len(text))
    new = text[:start] + block.splitlines() + text[end:]
    from opusclip_ui.models.cards import parse_card
    import yaml
    parse_card(yaml.safe_load("\n".join(new)), origin=CARD.name)  # still a valid card
    from opusclip_ui.safe_io import atomic_write_bytes
    atomic_write_bytes(CARD, ("\n".join(new) + "\n").encode("utf-8"), backup=True)
    print(f"updated {CARD}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/wan13b-random")
    ap.add_argument("--rungs", default="full,model_offload,sequential_offload")
    ap.add_argument("--frames", type=int, default=33)
    ap.add_argument("--height", type=int, default=272)
    ap.add_argument("--width", type=int, default=480)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=900, help="seconds per rung")
    ap.add_argument("--update-card", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    folder = Path(args.work) / "wan2.1-t2v-1.3b-random"

    if args.child:
        print("RESULT " + json.dumps(measure(folder, args.child, args.frames, args.height,
                                             args.width, args.steps)), flush=True)
        return

    import torch
    if not torch.cuda.is_available():
        sys.exit("This script needs a CUDA GPU.")
    folder.parent.mkdir(parents=True, exist_ok=True)
    build(folder)
    results = []
    for rung in args.rungs.split(","):
        cmd = [sys.executable, __file__, "--work", args.work, "--child", rung,
               "--frames", str(args.frames), "--height", str(args.height),
               "--width", str(args.width), "--steps", str(args.steps)]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
            line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
            res = json.loads(line[7:]) if line else {"rung": rung,
                                                     "error": out.stderr.strip()[-600:]}
        except subprocess.TimeoutExpired:
            res = {"rung": rung, "error": f"timed out after {args.timeout:g} s"}
        print(json.dumps(res), flush=True)
        results.append(res)
    ok = [r for r in results if "error" not in r]
    (ROOT / "benchmarks" / "gpu_models.json").write_text(json.dumps(results, indent=2))
    md = ["# Wan 2.1 T2V 1.3B, full-size architecture with random weights, per ladder rung", "",
          f"{ok[0]['gpu'] if ok else '?'}; {args.width}x{args.height}, {args.frames} frames, "
          f"{args.steps} steps. Script: `benchmarks/gpu_models.py`.", "",
          "| rung | load s | generate s | s/step | peak GB (load) | peak GB (generate) | "
          "reserved GB | RSS GB |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            md.append(f"| {r['rung']} | failed: {r['error'][:80]} |||||||")
        else:
            md.append(f"| {r['rung']} | {r['load_s']} | {r['generate_s']} | {r['s_per_step']} | "
                      f"{r['load_peak_gb']} | {r['generate_peak_gb']} | {r['reserved_peak_gb']} | "
                      f"{r['rss_gb']} |")
    (ROOT / "benchmarks" / "RESULTS_gpu_models.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    if ok:
        block = memory_block(ok, args)
        print("\n" + block)
        if args.update_card:
            update_card(block)


if __name__ == "__main__":
    main()
