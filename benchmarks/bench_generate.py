"""Generate benchmarks: our generate path and our encoder against what a user would write instead.

1. The app's ``generate`` (validate, plan, pre-flight snapshot and estimate, per-step callback with
   progress/ETA/cancel check, latents + our decode, encode + probe-verify, JSON sidecar) against a
   bare ``pipe(...)`` call returning frames plus the same encode (imageio-ffmpeg's ``write_frames``
   with the same codec, preset, CRF, pixel format and ``+faststart``), on the tiny random Wan
   pipeline with the same settings and seed (one pass, no segments). Goal: overhead <= 5 %.
2. Encoding the same raw frames: ``encode_mp4`` (stream to ffmpeg, then probe and verify) against
   the ffmpeg CLI reading the same frames from a raw file with the same settings. Goal <= 1.1x.

Both sides run in this one process, alternately, after a warm-up, and the medians are compared.

    .venv/bin/python benchmarks/bench_generate.py [--rounds 5] [--out benchmarks/RESULTS_generate.md]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402


def _median(xs: list[float]) -> float:
    return statistics.median(xs)


def _cpu() -> float:
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class _Clock:
    """Wall and CPU seconds (this process and its children, e.g. ffmpeg) of one round."""

    def __enter__(self):
        self.w, self.c = time.perf_counter(), _cpu()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.w, _cpu() - self.c


def _summary(ours: list, theirs: list) -> dict:
    ow, tw = [c.wall for c in ours], [c.wall for c in theirs]
    oc, tc = [c.cpu for c in ours], [c.cpu for c in theirs]
    return {"ours": ow, "theirs": tw, "ours_cpu": oc, "theirs_cpu": tc,
            "ratio": _median(ow) / _median(tw), "ratio_min": min(ow) / min(tw),
            "ratio_cpu": _median(oc) / _median(tc)}


def bench_generate(rounds: int, work: Path) -> dict:
    import torch
    import imageio_ffmpeg

    from opusclip_ui.generate import LocalPipelineSource, generate, validate_request
    from opusclip_ui.generate.encode import X264_CRF, X264_PRESET
    from opusclip_ui.models.cards import CARDS_DIR, load_card
    from opusclip_ui.models.tiny import ensure_tiny_t2v
    from opusclip_ui.settings import Settings

    card = load_card(CARDS_DIR / "tiny-random-t2v.yaml")
    path = ensure_tiny_t2v(work / "cache")
    pipe = LocalPipelineSource(path).load(dtype="fp32", device="cpu", offload=None)
    settings = Settings(data_dir=work / "data")
    preset = card.presets["high"].model_dump()          # 64x64, 17 frames/pass, 16 fps, 4 steps
    duration = 1.0                                      # 16 frames: one pass of 17, trimmed
    frames_wanted = int(duration * preset["fps"])

    def ours(seed: int) -> _Clock:
        with _Clock() as c:
            req = validate_request("a red kite over the sea", duration, "high", seed)
            # device given, as GenerateService does (the model manager knows where it loaded it)
            generate(req, pipe=pipe, card=card, settings=settings, session_id="bench", device="cpu")
        return c

    def bare(seed: int) -> _Clock:
        with _Clock() as c:
            _bare(seed)
        return c

    def _bare(seed: int) -> None:
        out = pipe("a red kite over the sea", height=preset["height"], width=preset["width"],
                   num_frames=17, num_inference_steps=preset["steps"],
                   guidance_scale=preset["guidance"],
                   generator=torch.Generator("cpu").manual_seed(seed), output_type="np").frames[0]
        frames = (np.clip(out[:frames_wanted], 0, 1) * 255 + 0.5).astype(np.uint8)
        writer = imageio_ffmpeg.write_frames(
            str(work / f"bare-{seed}.mp4"), (preset["width"], preset["height"]), fps=preset["fps"],
            codec="libx264", pix_fmt_out="yuv420p", quality=None, macro_block_size=1,
            output_params=["-preset", X264_PRESET, "-crf", str(X264_CRF), "-movflags", "+faststart"])
        writer.send(None)
        for f in frames:
            writer.send(np.ascontiguousarray(f))
        writer.close()

    ours(0), bare(0)  # warm-up: imports, allocator, first-call costs
    o, b = [], []
    for i in range(rounds):
        o.append(ours(i + 1))
        b.append(bare(i + 1))
    return {**_summary(o, b),
            "settings": f"{preset['width']}x{preset['height']}, {frames_wanted} frames (one pass of "
                        f"17), {preset['steps']} steps, guidance {preset['guidance']:g}, CPU fp32"}


def bench_encode(rounds: int, work: Path, n: int, width: int, height: int, fps: float) -> dict:
    from opusclip_ui.generate.encode import X264_CRF, X264_PRESET, encode_mp4, ffmpeg_exe

    # smooth moving gradients: compresses like real footage, unlike noise
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = np.stack([np.stack([(np.sin((xx + 4 * t) / 23.0) + 1) / 2,
                                 (np.cos((yy - 3 * t) / 17.0) + 1) / 2,
                                 ((xx + yy + 5 * t) % 64) / 64.0], axis=-1) for t in range(n)])
    u8 = (frames * 255 + 0.5).astype(np.uint8)
    raw = work / "frames.rgb"
    raw.write_bytes(u8.tobytes())
    exe = ffmpeg_exe()

    def ours(i: int) -> _Clock:
        with _Clock() as c:
            encode_mp4(u8, work / f"ours-{i}.mp4", fps)
        return c

    def cli(i: int) -> _Clock:
        with _Clock() as c:
            subprocess.run([exe, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo",
                        "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", f"{fps:g}", "-i",
                        str(raw), "-an", "-c:v", "libx264", "-preset", X264_PRESET, "-crf",
                        str(X264_CRF), "-pix_fmt", "yuv420p", "-movflags", "+faststart",
                        str(work / f"cli-{i}.mp4")], check=True)
        return c

    ours(-1), cli(-1)
    o, c = [], []
    for i in range(rounds):
        o.append(ours(i))
        c.append(cli(i))
    sizes = ((work / "ours-0.mp4").stat().st_size, (work / "cli-0.mp4").stat().st_size)
    return {**_summary(o, c), "sizes": sizes,
            "settings": f"{n} frames {width}x{height} at {fps:g} fps, libx264 {X264_PRESET} "
                        f"CRF {X264_CRF}, yuv420p, +faststart"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS_generate.md"))
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads for both sides (1 is steadiest on a shared machine)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-generate-") as tmp:
        work = Path(tmp)
        g = bench_generate(args.rounds, work)
        e = bench_encode(args.rounds, work, args.frames, 480, 272, 16)
    import diffusers

    fmt = lambda xs: ", ".join(f"{x:.3f}" for x in xs)  # noqa: E731

    def row(name: str, r: dict, goal: str) -> str:
        return (f"| {name} | {_median(r['ours']):.3f} | {_median(r['theirs']):.3f} | {r['ratio']:.3f} | "
                f"{r['ratio_min']:.3f} | {r['ratio_cpu']:.3f} | {goal} |")

    lines = [
        "# Generate benchmarks",
        "",
        f"One run of `benchmarks/bench_generate.py --rounds {args.rounds} --threads {args.threads}` on "
        f"{platform.platform()}, {os.cpu_count()} CPUs shared with other jobs (load average at start "
        f"{load[0]:.1f}), Python {platform.python_version()}, torch {torch.__version__}, diffusers "
        f"{diffusers.__version__}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Both sides "
        "alternate in one process after a warm-up. Ratios are ours / theirs: of the median wall "
        "times, of the fastest (least disturbed) rounds, and of the median CPU seconds (this "
        "process plus its children, such as ffmpeg), which other jobs on the machine disturb least.",
        "",
        "| Comparison | Ours (median s) | Theirs (median s) | Ratio (median) | Ratio (fastest) "
        "| Ratio (CPU s) | Goal |",
        "|---|---|---|---|---|---|---|",
        row(f"generate path vs bare `pipe()` + same encode ({g['settings']})", g, "<= 1.05"),
        row(f"`encode_mp4` vs ffmpeg CLI on the same raw frames ({e['settings']})", e, "<= 1.10"),
        "",
        "Raw wall times (s):",
        "",
        f"- generate, ours: {fmt(g['ours'])}",
        f"- generate, bare: {fmt(g['theirs'])}",
        f"- encode, ours: {fmt(e['ours'])}",
        f"- encode, ffmpeg CLI: {fmt(e['theirs'])}",
        f"- file sizes, ours vs CLI: {e['sizes'][0]:,} vs {e['sizes'][1]:,} bytes (identical settings)",
        f"- spread (max / min) of single rounds: generate ours {max(g['ours']) / min(g['ours']):.2f}, "
        f"bare {max(g['theirs']) / min(g['theirs']):.2f}; encode ours "
        f"{max(e['ours']) / min(e['ours']):.2f}, CLI {max(e['theirs']) / min(e['theirs']):.2f}.",
        "",
        "What ours does on top: the generate path validates the request, plans against the card, takes",
        "a resource snapshot and estimate, checks free disk, runs a callback per step (progress, ETA,",
        "cancel check, RSS sample), decodes the latents itself (so a decode OOM need not redo the",
        "denoising), probes the written MP4 (frame count, size, fps, duration) before renaming it into",
        "place, and writes and re-reads the JSON sidecar. `encode_mp4` also streams frames through a",
        "pipe instead of reading a file, and probes the result (a second, short ffmpeg process).",
    ]
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
