"""Inspect benchmarks: our probe, thumbnails and scene cuts against the tools a user would pick.

Run:  .venv/bin/python benchmarks/bench_inspect.py [--quick] [--out benchmarks/RESULTS_inspect.md]

Side by side in one run, each as a ratio of medians (ours / theirs; below 1.0 means we are faster):

1. probe: ``load_video_file`` (sniff + child process + PyAV + first-frame decode) against
   ``ffprobe -show_format -show_streams -of json`` on the same file. Goal <= 1.0x.
   Constant in duration: the same content at 60 minutes against 1 minute. Goal <= 1.5x.
2. 12 thumbnails from a 10-minute 720p H.264 file: ``make_thumbnails`` against a loop of 12
   ``ffmpeg -ss T -i F -frames:v 1`` calls (same times, same 320-px JPEG output). Goal <= 1.0x.
3. scene cuts: ``detect_scenes`` against ``scenedetect -i F detect-content list-scenes`` with its
   defaults. Goal: the same cut list (+-1 frame) at >= 1.0x its throughput.

Debian's ``ffmpeg`` package (for ``ffprobe``) is installed here when missing (apt-get, as root); the app
itself never needs it. Media is generated with imageio-ffmpeg into a cache folder and reused.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CACHE = Path(os.environ.get("OPUSCLIP_BENCH_CACHE", Path(tempfile.gettempdir()) / "opusclip-bench"))


def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def ensure_debian_ffprobe() -> str:
    found = shutil.which("ffprobe")
    if found:
        return found
    print("installing Debian's ffmpeg package for ffprobe (benchmark only)...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "ffmpeg"],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    found = shutil.which("ffprobe")
    if not found:
        raise SystemExit("ffprobe still missing after apt-get install ffmpeg")
    return found


def run_ff(args: list[str]) -> None:
    subprocess.run([ffmpeg(), "-v", "error", "-y", *args], check=True, stdin=subprocess.DEVNULL)


def concat_copy(src: Path, times: int, out: Path) -> Path:
    if out.exists():
        return out
    lst = out.with_suffix(".txt")
    lst.write_text("".join(f"file '{src}'\n" for _ in range(times)))
    tmp = out.with_name(out.name + ".part.mp4")
    run_ff(["-f", "concat", "-safe", "0", "-i", str(lst), "-c", "copy", str(tmp)])
    tmp.replace(out)
    return out


def make_media(quick: bool) -> dict[str, Path]:
    CACHE.mkdir(parents=True, exist_ok=True)
    m: dict[str, Path] = {}
    # 720p H.264 + AAC, x264 defaults but ultrafast (keyframe interval 250 = 8.3 s)
    one = CACHE / "720p_1min.mp4"
    if not one.exists():
        run_ff(["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30", "-f", "lavfi", "-i",
                "sine=frequency=440:sample_rate=48000", "-t", "60", "-c:v", "libx264", "-preset",
                "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest",
                str(one.with_name("tmp_" + one.name))])
        one.with_name("tmp_" + one.name).replace(one)
    m["720p_1min"] = one
    m["720p_10min"] = concat_copy(one, 10, CACHE / "720p_10min.mp4")
    # duration scaling: small 360p content, 1 vs 60 minutes, same encoding
    small = CACHE / "360p_1min.mp4"
    if not small.exists():
        run_ff(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30", "-f", "lavfi", "-i",
                "sine=frequency=440:sample_rate=48000", "-t", "60", "-c:v", "libx264", "-preset",
                "ultrafast", "-crf", "35", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "32k",
                "-shortest", str(small.with_name("tmp_" + small.name))])
        small.with_name("tmp_" + small.name).replace(small)
    m["360p_1min"] = small
    m["360p_60min"] = concat_copy(small, 60 if not quick else 10, CACHE / (
        "360p_60min.mp4" if not quick else "360p_10min.mp4"))
    # the same streams in Matroska, whose header carries no per-sample index
    for key in ("360p_1min", "360p_60min"):
        mkv = m[key].with_suffix(".mkv")
        if not mkv.exists():
            run_ff(["-i", str(m[key]), "-c", "copy", str(mkv.with_name("tmp_" + mkv.name))])
            mkv.with_name("tmp_" + mkv.name).replace(mkv)
        m[key + "_mkv"] = mkv
    # scenes: 12 shots of 5 s at 720p from different lavfi sources
    sc = CACHE / "720p_scenes.mp4"
    if not sc.exists():
        sources = ["testsrc2", "smptebars", "rgbtestsrc", "mandelbrot", "testsrc", "smptehdbars",
                   "color=c=red", "cellauto", "color=c=blue", "yuvtestsrc", "life", "pal75bars"]
        args: list[str] = []
        for s in sources:
            sep = ":" if "=" in s else "="
            args += ["-f", "lavfi", "-t", "5", "-i", f"{s}{sep}size=1280x720:rate=30"]
        chain = "".join(f"[{i}:v]format=yuv420p,setsar=1[v{i}];" for i in range(len(sources)))
        chain += "".join(f"[v{i}]" for i in range(len(sources)))
        chain += f"concat=n={len(sources)}:v=1[out]"
        run_ff([*args, "-filter_complex", chain, "-map", "[out]", "-c:v", "libx264", "-preset",
                "ultrafast", "-pix_fmt", "yuv420p", str(sc.with_name("tmp_" + sc.name))])
        sc.with_name("tmp_" + sc.name).replace(sc)
    m["720p_scenes"] = sc
    return m


def timed(fn, repeat: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def bench_probe(m, settings, ffprobe, repeat):
    """Interleaved: each round times every file with both tools, so load drift on a shared
    machine hits all columns alike."""
    from opusclip_ui.video.probe import load_video_file

    keys = ["720p_1min", "720p_10min", "360p_1min", "360p_60min", "360p_1min_mkv",
            "360p_60min_mkv"]

    def ours(f):
        load_video_file(f, settings)

    def theirs(f):
        subprocess.run([ffprobe, "-v", "error", "-show_format", "-show_streams", "-of", "json",
                        str(f)], check=True, capture_output=True)

    times = {(k, who): [] for k in keys for who in ("ours", "ffprobe")}
    for k in keys:  # warm-up (page cache, forkserver)
        ours(m[k])
        theirs(m[k])
    for _ in range(repeat):
        for k in keys:
            for who, fn in (("ours", ours), ("ffprobe", theirs)):
                t = time.perf_counter()
                fn(m[k])
                times[(k, who)].append(time.perf_counter() - t)
    return [(k, m[k].stat().st_size, med(times[(k, "ours")]), med(times[(k, "ffprobe")]))
            for k in keys]


def bench_thumbnails(m, settings, repeat, exact=True):
    from opusclip_ui.video.probe import load_video_file
    from opusclip_ui.video.thumbs import make_thumbnails, thumbnail_times

    f = m["720p_10min"]
    info = load_video_file(f, settings)
    times = thumbnail_times(info.duration, 12)
    work = Path(tempfile.mkdtemp(prefix="thumbs_"))

    def ours():
        out = work / "ours"
        shutil.rmtree(out, ignore_errors=True)
        make_thumbnails(f, info, 12, out, settings, max_width=320, exact=exact)

    def theirs(binary):
        def run():
            out = work / "ff"
            out.mkdir(exist_ok=True)
            for i, t in enumerate(times):
                subprocess.run([binary, "-v", "error", "-y", "-ss", f"{t}", "-i", str(f),
                                "-frames:v", "1", "-vf", "scale=320:-2", "-q:v", "3",
                                str(out / f"{i:02d}.jpg")], check=True, capture_output=True)
        return run

    r = {"ours": med(timed(ours, repeat)),
         "ffmpeg (imageio-ffmpeg)": med(timed(theirs(ffmpeg()), repeat))}
    if shutil.which("ffmpeg"):
        r["ffmpeg (Debian)"] = med(timed(theirs(shutil.which("ffmpeg")), repeat))
    shutil.rmtree(work, ignore_errors=True)
    return r


def _cli_cuts(f: Path, out_dir: Path) -> tuple[list[float], float]:
    scenedetect = str(Path(sys.executable).with_name("scenedetect"))
    t = time.perf_counter()
    subprocess.run([scenedetect, "-q", "-i", str(f), "-o", str(out_dir), "detect-content",
                    "list-scenes", "-s", "-q", "-f", "cli.csv"], check=True, capture_output=True)
    elapsed = time.perf_counter() - t
    with open(out_dir / "cli.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [float(r["Start Time (seconds)"]) for r in rows], elapsed


def bench_scenes(m, settings, repeat):
    from opusclip_ui.video.probe import load_video_file
    from opusclip_ui.video.scenes import detect_scenes

    f = m["720p_scenes"]
    info = load_video_file(f, settings)
    work = Path(tempfile.mkdtemp(prefix="scenes_"))
    ours_t, theirs_t = [], []
    ours_cuts = cli_cuts = None
    for _ in range(repeat):
        t = time.perf_counter()
        res = detect_scenes(f, info, settings)
        ours_t.append(time.perf_counter() - t)
        ours_cuts = [s.start for s in res.scenes]
        cli_cuts, el = _cli_cuts(f, work)
        theirs_t.append(el)
    shutil.rmtree(work, ignore_errors=True)
    frame = 1 / info.fps
    same = len(ours_cuts) == len(cli_cuts) and all(
        abs(a - b) <= frame + 1e-6 for a, b in zip(ours_cuts, cli_cuts))
    return {"frames": info.frame_count, "ours_s": med(ours_t), "cli_s": med(theirs_t),
            "ours_cuts": ours_cuts, "cli_cuts": cli_cuts, "same": same}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repeats, 10-min long file")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS_inspect.md"))
    ap.add_argument("--only", choices=["probe", "thumbnails", "scenes"],
                    help="run one part (prints it, writes no results file)")
    ap.add_argument("--no-preload", action="store_true",
                    help="start the forkserver without PyAV preloaded (to see what it saves)")
    args = ap.parse_args()

    from opusclip_ui.settings import Settings

    ffprobe = ensure_debian_ffprobe()
    from opusclip_ui.video import worker

    worker.prepare()
    if args.no_preload:
        worker._context().set_forkserver_preload(["opusclip_ui.guards"])
    worker.warm_up()  # as app start-up would: the first fork server start is not a probe
    print("making media (cached in", CACHE, ")...", flush=True)
    m = make_media(args.quick)
    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="bench_data_")))
    rep = 5 if args.quick else 21
    if args.only:
        part = {"probe": lambda: bench_probe(m, settings, ffprobe, rep),
                "thumbnails": lambda: bench_thumbnails(m, settings, 3),
                "scenes": lambda: bench_scenes(m, settings, 1)}[args.only]()
        print(json.dumps(part, indent=1, default=str))
        return 0
    print("probe...", flush=True)
    probe = bench_probe(m, settings, ffprobe, rep)
    print("thumbnails...", flush=True)
    thumbs = bench_thumbnails(m, settings, 3 if args.quick else 5)
    thumbs_key = bench_thumbnails(m, settings, 3 if args.quick else 5, exact=False)["ours"]
    print("scenes...", flush=True)
    scenes = bench_scenes(m, settings, 1 if args.quick else 3)

    lines = [f"# Inspect benchmarks\n",
             f"Run: `{' '.join(['benchmarks/bench_inspect.py', *sys.argv[1:]])}` on "
             f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Medians; ratio = ours / theirs.\n",
             "## 1. Probe vs `ffprobe -show_format -show_streams -of json` (goal <= 1.0x)\n",
             "| file | size | ours (ms) | ffprobe (ms) | ratio |", "|---|---|---|---|---|"]
    for key, size, o, t in probe:
        lines.append(f"| {key} | {size / 2**20:,.1f} MB | {o * 1000:.1f} | {t * 1000:.1f} | "
                     f"{o / t:.2f}x |")
    by = {k: o for k, _, o, _ in probe}
    ff = {k: t for k, _, _, t in probe}
    long_key = "60 min" if not args.quick else "10 min (quick run)"
    lines += ["", f"Constant in duration (goal <= 1.5x), {long_key} / 1 min of the same 360p "
              "content:", "",
              "| container | ours | ffprobe |", "|---|---|---|",
              f"| MP4 | **{by['360p_60min'] / by['360p_1min']:.2f}x** | "
              f"{ff['360p_60min'] / ff['360p_1min']:.2f}x |",
              f"| MKV | **{by['360p_60min_mkv'] / by['360p_1min_mkv']:.2f}x** | "
              f"{ff['360p_60min_mkv'] / ff['360p_1min_mkv']:.2f}x |",
              f"| MP4 720p, 10 min / 1 min | {by['720p_10min'] / by['720p_1min']:.2f}x | "
              f"{ff['720p_10min'] / ff['720p_1min']:.2f}x |", "",
              "## 2. 12 thumbnails, 10-minute 720p H.264 (goal <= 1.0x)\n",
              "| method | seconds | ratio (ours / this) |", "|---|---|---|",
              f"| ours, exact (decode from keyframe to T) | {thumbs['ours']:.2f} | - |",
              f"| ours, keyframe only | {thumbs_key:.2f} | - |"]
    for k, v in thumbs.items():
        if k != "ours":
            lines.append(f"| 12x `{k} -ss T -i F -frames:v 1` | {v:.2f} | "
                         f"{thumbs['ours'] / v:.2f}x |")
    fr = scenes["frames"]
    lines += ["", "## 3. Scene cuts vs `scenedetect detect-content` defaults "
              "(goal: same cuts +-1 frame, >= 1.0x throughput)\n",
              "| tool | seconds | frames/s |", "|---|---|---|",
              f"| ours (detect_scenes) | {scenes['ours_s']:.2f} | {fr / scenes['ours_s']:.0f} |",
              f"| scenedetect CLI | {scenes['cli_s']:.2f} | {fr / scenes['cli_s']:.0f} |", "",
              f"Throughput ratio (ours / CLI): **{scenes['cli_s'] / scenes['ours_s']:.2f}x**. "
              f"Same cut list (+-1 frame): **{scenes['same']}** "
              f"({len(scenes['ours_cuts'])} scenes; ours {scenes['ours_cuts']}; "
              f"CLI {scenes['cli_cuts']}).\n"]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
