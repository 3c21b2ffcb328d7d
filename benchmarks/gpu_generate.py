"""GPU check for the Generate ladder (for the `device` tool; needs CUDA, not run on CPU machines).

1. Builds the full-size Wan 2.1 T2V 1.3B architecture (transformer 1.3B, the Wan VAE, a UMT5-XXL
   text encoder) with random weights on the GPU (no download), saves it once as bf16 safetensors,
   and loads it back with ``DiffusionPipeline.from_pretrained`` like the app does.
2. Measures time and peak VRAM of each configuration the ladder can end on, without a memory cap:
   full, full + VAE tiling, model offload, sequential offload (one short pass each).
3. Caps this process's GPU memory with ``torch.cuda.set_per_process_memory_fraction`` below the
   full configuration's measured peak, then shows that a plain ``pipe(...)`` call fails with OOM
   while ``opusclip_ui.generate.generate`` completes by stepping down, and records its rungs.

Writes ``$OUT/gpu_generate.json`` and ``$OUT/gpu_generate.md`` (or ./gpu-out without $OUT).

    python benchmarks/gpu_generate.py [--width 832 --height 480 --frames 33 --steps 4] [--cap 0.8]
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build_random_wan(folder: Path) -> Path:
    """Full-size Wan 2.1 1.3B architecture, random weights, saved as bf16 safetensors (once)."""
    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from opusclip_ui.models.tiny import _build_tokenizer

    if (folder / "model_index.json").is_file():
        return folder
    t = time.perf_counter()
    torch.manual_seed(0)
    with torch.device("cuda"):
        transformer = WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16,
            out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30,
            cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024
        ).to(torch.bfloat16)
        vae = AutoencoderKLWan(base_dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                               temperal_downsample=[False, True, True]).to(torch.float32)
        tok = _build_tokenizer()
        text_encoder = UMT5EncoderModel(UMT5Config(
            vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
            relative_attention_num_buckets=32, feed_forward_proj="gated-gelu", dropout_rate=0.0,
            pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)).to(torch.bfloat16)
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                        flow_shift=3.0)
    pipe = WanPipeline(tokenizer=tok, text_encoder=text_encoder, transformer=transformer, vae=vae,
                       scheduler=scheduler)
    tmp = folder.with_name(folder.name + ".tmp")
    pipe.save_pretrained(tmp, safe_serialization=True)
    os.replace(tmp, folder)
    del pipe, transformer, vae, text_encoder
    gc.collect()
    torch.cuda.empty_cache()
    print(f"built and saved in {time.perf_counter() - t:.1f} s", flush=True)
    return folder


def load(folder: Path, offload: str | None):
    import torch
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(folder, dtype=torch.bfloat16, use_safetensors=True,
                                             local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    if offload == "model":
        pipe.enable_model_cpu_offload(device="cuda")
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device="cuda")
    else:
        pipe.to("cuda")
    return pipe


def free(pipe) -> None:
    import torch

    if pipe is not None and hasattr(pipe, "remove_all_hooks"):
        pipe.remove_all_hooks()
    del pipe
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.ipc_collect()


def plain_call(pipe, a) -> dict:
    import torch

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    ok, err = True, None
    try:
        pipe("a red kite over a stormy sea", height=a.height, width=a.width, num_frames=a.frames,
             num_inference_steps=a.steps, guidance_scale=5.0, max_sequence_length=64,
             generator=torch.Generator("cpu").manual_seed(0), output_type="np")
    except torch.OutOfMemoryError as exc:
        ok, err = False, str(exc).splitlines()[0][:200]
    torch.cuda.synchronize()
    return {"ok": ok, "error": err, "seconds": round(time.perf_counter() - t, 2),
            "peak_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=832)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--frames", type=int, default=33)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--cap", type=float, default=0.8, help="cap = this x the full run's peak")
    ap.add_argument("--folder", default="/tmp/wan21-1.3b-random")
    ap.add_argument("--skip-configs", action="store_true", help="skip step 2")
    a = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: this script is for a GPU machine")
        return 0
    out = Path(os.environ.get("OUT") or "gpu-out")
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"device": torch.cuda.get_device_name(0),
                    "total_gb": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
                    "settings": vars(a), "configs": {}}
    folder = build_random_wan(Path(a.folder))

    def save() -> None:
        (out / "gpu_generate.json").write_text(json.dumps(report, indent=2))

    # 2. each configuration, uncapped
    configs = [("full", None, False), ("full+vae_tiling", None, True), ("model_offload", "model", False),
               ("sequential_offload", "sequential", False)]
    for name, offload, tiling in configs:
        if a.skip_configs and name != "full":
            continue
        pipe = load(folder, offload)
        if tiling:
            pipe.vae.enable_tiling()
        report["configs"][name] = plain_call(pipe, a)
        print(name, report["configs"][name], flush=True)
        free(pipe)
        pipe = None
        save()

    # 3. capped: plain call fails, our ladder completes
    full_peak = report["configs"]["full"]["peak_gb"]
    cap_gb = a.cap * full_peak
    fraction = cap_gb * 2**30 / torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(fraction, 0)
    report["cap"] = {"fraction": round(fraction, 4), "cap_gb": round(cap_gb, 2)}
    try:
        pipe = load(folder, None)
        report["capped_plain"] = plain_call(pipe, a)
    except torch.OutOfMemoryError as exc:  # the weights alone exceed the cap
        report["capped_plain"] = {"ok": False, "error": "loading: " + str(exc).splitlines()[0][:200],
                                  "seconds": None, "peak_gb": None}
        gc.collect()
        torch.cuda.empty_cache()
        pipe = load(folder, "model")
    print("capped plain call:", report["capped_plain"], flush=True)
    save()

    from opusclip_ui import notify
    from opusclip_ui.generate import LocalPipelineSource, generate, validate_request
    from opusclip_ui.settings import Settings

    card = {"name": "wan2.1-random", "model_path": str(folder), "native_fps": 16, "max_frames": 81,
            "presets": {q: dict(width=a.width, height=a.height, frames=a.frames, fps=16,
                                steps=a.steps, guidance=5.0) for q in ("medium", "high")}
            | {"low": dict(width=480, height=272, frames=a.frames, fps=16, steps=a.steps,
                           guidance=5.0)}}
    settings = Settings(data_dir=out / "data")
    duration = (a.frames - 1) / 16
    req = validate_request("a red kite over a stormy sea", max(1.0, duration), "high", 0)
    torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    try:
        with notify.collect_warnings() as warned:
            res = generate(req, pipe=pipe, card=card, settings=settings, session_id="gpu",
                           source=LocalPipelineSource(folder), device="cuda")
        report["ladder"] = {"ok": True, "seconds": round(time.perf_counter() - t, 2),
                            "rungs": [r.to_dict() for r in res.rungs], "warnings": warned,
                            "peak_memory": res.sidecar["peak_memory"],
                            "timings_s": res.sidecar["timings_s"], "used": res.sidecar["used"],
                            "output": res.sidecar["output"]}
    except Exception as exc:  # record it: the point of the script is to find out
        report["ladder"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                            "seconds": round(time.perf_counter() - t, 2)}
    print("ladder:", json.dumps(report["ladder"], indent=1)[:3000], flush=True)
    save()

    lines = [f"# Generate ladder on {report['device']} ({report['total_gb']} GB)", "",
             f"Wan 2.1 1.3B architecture, random weights, bf16 (VAE fp32); {a.width}x{a.height}, "
             f"{a.frames} frames, {a.steps} steps, CFG 5.", "",
             "| Configuration (uncapped) | OK | Seconds | Peak VRAM (GB) |", "|---|---|---|---|"]
    for name, r in report["configs"].items():
        lines.append(f"| {name} | {r['ok']} | {r['seconds']} | {r['peak_gb']} |")
    lines += ["", f"Capped at {report['cap']['cap_gb']} GB ({a.cap} x the full run's peak):", "",
              f"- plain `pipe()` call: ok={report['capped_plain']['ok']} "
              f"({report['capped_plain']['error'] or ''})",
              f"- `generate` with the ladder: ok={report['ladder']['ok']}, "
              f"{report['ladder'].get('seconds')} s, rungs: "
              + " -> ".join(r["rung"] for r in report["ladder"].get("rungs", []))]
    (out / "gpu_generate.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
