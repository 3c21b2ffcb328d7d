"""Cold start, idle memory and gauge cost, side by side with a hello-world Gradio app.

Both apps are started the same way (a fresh `python FILE`), alternately, N times each; cold start is
the time until the server answers HTTP 200 on `/`, idle RSS is the server process's RSS (children
included) 3 s after that. The hello-world app is a gr.Blocks with the same number of tabs as ours.
Writes benchmarks/RESULTS_startup.md.

    .venv/bin/python benchmarks/bench_startup.py [--runs 3]
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HELLO = textwrap.dedent("""
    import sys
    import gradio as gr
    with gr.Blocks() as demo:
        gr.Markdown("hello")
        with gr.Tabs():
            for i in range({tabs}):
                with gr.Tab(f"Tab {{i}}"):
                    gr.Markdown(f"tab {{i}}")
    demo.queue().launch(server_name="127.0.0.1", server_port=int(sys.argv[1]))
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_and_measure(cmd: list[str], port: int, env: dict[str, str]) -> tuple[float, float]:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd} exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.05)
        cold = time.perf_counter() - start
        time.sleep(3)
        p = psutil.Process(proc.pid)
        rss = p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))
        return cold, rss / 2**20
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def gauge_tick_ms(samples: int = 300) -> tuple[float, float]:
    from components.gauges import render_gauges
    from opusclip_ui.resources import snapshot

    snapshot(".")
    times = []
    for _ in range(samples):
        t = time.perf_counter()
        render_gauges(snapshot("."))
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[int(0.95 * len(times))]


def count_tabs() -> int:
    from components.layout import _tab_modules

    return len(_tab_modules()) + 1  # + System


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    tabs = count_tabs()
    with tempfile.TemporaryDirectory() as tmp:
        hello = Path(tmp) / "hello.py"
        hello.write_text(HELLO.format(tabs=tabs))
        cfg = Path(tmp) / "app.yaml"
        cfg.write_text(f"data_dir: {Path(tmp) / 'data'}\nlog_level: WARNING\n")
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
        ours, base = [], []
        for _ in range(args.runs):  # alternate, so drift hits both alike
            port = free_port()
            base.append(start_and_measure([sys.executable, str(hello), str(port)], port, env))
            port = free_port()
            ours.append(start_and_measure([sys.executable, "app.py", "--config", str(cfg),
                                           "--port", str(port)], port, env))
    cold_o, cold_b = statistics.median(c for c, _ in ours), statistics.median(c for c, _ in base)
    rss_o, rss_b = statistics.median(r for _, r in ours), statistics.median(r for _, r in base)
    tick_med, tick_p95 = gauge_tick_ms()
    rows = [
        ("cold start (s, median)", f"{cold_o:.2f}", f"{cold_b:.2f}", cold_o / cold_b, "≤ 1.3×"),
        ("idle RSS (MB, median)", f"{rss_o:.0f}", f"{rss_b:.0f}", rss_o / rss_b, "≤ 1.3×"),
    ]
    lines = [
        "# Start-up and gauges",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} CPU cores, {args.runs} alternating "
        f"runs each; baseline: a hello-world `gr.Blocks` with the same {tabs} tabs, started the same "
        "way. Script: `benchmarks/bench_startup.py`.",
        "",
        "| measure | Video-OpusClip | hello-world Gradio | ratio | goal |",
        "|---|---|---|---|---|",
        *[f"| {n} | {o} | {b} | {r:.2f}× | {g} |" for n, o, b, r, g in rows],
        f"| gauge tick: snapshot + render (ms) | {tick_med:.2f} (p95 {tick_p95:.2f}) | – | – | < 5 ms |",
        "",
    ]
    out = Path(__file__).with_name("RESULTS_startup.md")
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
