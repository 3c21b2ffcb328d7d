"""Load benchmark: many real ``gradio_client`` sessions at once against ``python app.py``.

Runs the same mix as ``tests/test_load.py`` (16 sessions in threads, each with its own ``Client``:
good and bad inspections of tiny clips, 1 s low-quality generations with ``tiny-random-t2v``, model
listings), after a short warm-up, and reports throughput (jobs per minute of wall time) and
p50/p95 latency per job type, the failures by type, and the server's RSS before and after.

    .venv/bin/python benchmarks/bench_load.py [--sessions 16] [--rounds 1] \
        [--out benchmarks/RESULTS_load.md]

Nothing is downloaded: the clips are made with imageio-ffmpeg's ffmpeg, the model is built locally.
"""
from __future__ import annotations

import argparse
import collections
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from tests.browser_support import AppServer  # noqa: E402
from tests.test_load import (BAD_MESSAGES, SCHEDULE, SESSIONS, Job, run_mix,  # noqa: E402
                             settled_rss_mb)
from tests.video_fixtures import MediaFactory  # noqa: E402


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    if len(xs) == 1:
        return xs[0]
    return statistics.quantiles(xs, n=100, method="inclusive")[int(q) - 1]


def _outcome(job: Job) -> str:
    if job.error is None:
        return "ok" if job.kind not in BAD_MESSAGES else "UNEXPECTED SUCCESS"
    text = str(job.error)
    if job.kind in BAD_MESSAGES and BAD_MESSAGES[job.kind] in text:
        return "refused (our message)"
    return f"{type(job.error).__name__}: {text[:90]}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sessions", type=int, default=SESSIONS)
    p.add_argument("--rounds", type=int, default=1, help="times each session runs its schedule")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS_load.md")
    args = p.parse_args(argv)

    import gradio
    import gradio_client
    import psutil

    from opusclip_ui.models.tiny import ensure_tiny_t2v

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        cache = tmp / "cache"
        ensure_tiny_t2v(cache)
        media = MediaFactory(tmp / "media")
        (tmp / "server").mkdir()
        with AppServer(tmp / "server", cache_dir=cache) as srv:
            pid = srv.proc.pid
            run_mix(srv.url, media, tmp / "warm", sessions=2)  # warm-up: model load, forkserver
            baseline = settled_rss_mb(pid)
            t0 = time.perf_counter()
            jobs = run_mix(srv.url, media, tmp / "dl", sessions=args.sessions,
                           rounds=args.rounds)
            wall = time.perf_counter() - t0
            peak_children = len(psutil.Process(pid).children(recursive=True))
            after = settled_rss_mb(pid)
            settings_text = srv.config.read_text()

    by_kind: dict[str, list[Job]] = collections.defaultdict(list)
    for j in jobs:
        by_kind[j.kind].append(j)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    settings_line = ", ".join(
        line.strip() for line in settings_text.splitlines()
        if not line.startswith(("data_dir", "cache_dir")))
    lines = [
        "# Load benchmark",
        "",
        f"One run of `benchmarks/bench_load.py --sessions {args.sessions} --rounds {args.rounds}` "
        f"on {platform.platform()}, {os.cpu_count()} CPUs (shared with other jobs), Python "
        f"{platform.python_version()}, gradio {gradio.__version__}, gradio_client "
        f"{gradio_client.__version__}, {now}.",
        "",
        f"Server: `python app.py` with its defaults (queue_max_size 32, default_concurrency 4, "
        f"gpu_concurrency 1) plus `{settings_line}`. Clients: {args.sessions} `gradio_client."
        f"Client` objects in threads, each running its schedule {args.rounds}x, rotated so kinds "
        f"overlap: {', '.join(SCHEDULE)}. Jobs: inspect = 160x120 1 s H.264+AAC MP4, 4 "
        "thumbnails; inspect_text / inspect_empty = a text file and a zero-byte file named .mp4 "
        "(must be refused); generate = tiny-random-t2v, 1 s, low (32x32, 8 frames, 2 steps); "
        "list_models = /list_models. After a warm-up of 2 sessions.",
        "",
        f"**{len(jobs)} jobs in {wall:.1f} s: {60 * len(jobs) / wall:.0f} jobs per minute.** "
        f"Server RSS {baseline:.0f} MB warm -> {after:.0f} MB after (settled); "
        f"{peak_children} child processes right after the run.",
        "",
        "| Job type | Jobs | p50 (s) | p95 (s) | max (s) | Outcomes |",
        "|---|---|---|---|---|---|",
    ]
    for kind in sorted(by_kind):
        ks = by_kind[kind]
        secs = [j.seconds for j in ks]
        outcomes = collections.Counter(_outcome(j) for j in ks)
        text = "; ".join(f"{n}x {o}" for o, n in outcomes.most_common())
        lines.append(f"| {kind} | {len(ks)} | {_pct(secs, 50):.2f} | {_pct(secs, 95):.2f} | "
                     f"{max(secs):.2f} | {text.replace('|', '/')} |")
    lines += [
        "",
        "Latency is per job as its client sees it (upload, queue wait, run, download). Generations "
        "share one `gpu` slot (gpu_concurrency 1), so they queue behind each other; inspections "
        "and listings run four at a time. On a shared 2-CPU machine these numbers move by tens of "
        "percent between runs; read them as orders of magnitude.",
        "",
    ]
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    bad = [j for j in jobs if _outcome(j) not in ("ok", "refused (our message)")]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
