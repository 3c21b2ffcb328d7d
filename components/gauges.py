"""Live gauges on every page: RAM, this process, GPU (or "CPU only") and disk, as coloured bars."""
from __future__ import annotations

import html
import time
from typing import Any

import gradio as gr

__all__ = ["render_gauges", "create_gauges", "level"]

_COLOURS = {"ok": "#22c55e", "warn": "#f59e0b", "bad": "#ef4444", "off": "#9ca3af"}


def level(percent: float | None) -> str:
    """Colour band for a usage percentage: ok below 75 %, warn below 90 %, bad above."""
    if percent is None:
        return "off"
    return "ok" if percent < 75 else "warn" if percent < 90 else "bad"


def _bar(label: str, percent: float | None, text: str, title: str = "") -> str:
    band = level(percent)
    width = 0 if percent is None else max(0.0, min(100.0, percent))
    return (
        f'<div class="oc-gauge" data-gauge="{html.escape(label)}" data-level="{band}" '
        f'title="{html.escape(title or text)}" style="flex:1;min-width:150px;padding:6px 10px;'
        f'border:1px solid #e5e7eb;border-radius:8px;font-size:13px">'
        f'<div style="display:flex;justify-content:space-between;gap:8px">'
        f'<b>{html.escape(label)}</b><span class="oc-gauge-value">{html.escape(text)}</span></div>'
        f'<div style="height:8px;background:#f3f4f6;border-radius:4px;margin-top:4px;overflow:hidden">'
        f'<div style="height:100%;width:{width:.1f}%;background:{_COLOURS[band]}"></div></div></div>'
    )


def _gb(mb: float) -> str:
    return f"{mb / 1024:.1f} GB"


def render_gauges(snap: dict[str, Any]) -> str:
    """HTML for one snapshot from ``opusclip_ui.resources.snapshot``."""
    ram, proc, disk, gpu = snap["ram"], snap["process"], snap["disk"], snap["gpu"]
    bars = [
        _bar("RAM", ram["percent"], f"{_gb(ram['used_mb'])} / {_gb(ram['total_mb'])}",
             f"{ram['source']} limit; {_gb(ram['available_mb'])} available"),
        _bar("App", 100 * proc["rss_mb"] / ram["total_mb"] if ram["total_mb"] else None,
             f"{proc['rss_mb']:.0f} MB, CPU {proc['cpu_percent']:.0f}%",
             "memory and CPU of this server process"),
    ]
    if gpu["devices"]:
        for d in gpu["devices"]:
            pct = 100 * d["used_mb"] / d["total_mb"] if d["total_mb"] else None
            util = "" if d.get("util_percent") is None else f", util {d['util_percent']:.0f}%"
            bars.append(_bar(f"GPU {d['index']}", pct,
                             f"{_gb(d['used_mb'])} / {_gb(d['total_mb'])}{util}", d["name"]))
    else:
        bars.append(_bar("GPU", None, gpu["label"]))
    bars.append(_bar("Disk", disk["percent"], f"{_gb(disk['free_mb'])} free",
                     f"free space where outputs are written ({disk['folder']})"))
    stamp = time.strftime("%H:%M:%S", time.localtime(snap["time"]))
    return (f'<div class="oc-gauges" style="display:flex;gap:8px;flex-wrap:wrap;align-items:center">'
            f'{"".join(bars)}<span class="oc-gauge-time" style="font-size:11px;color:#6b7280">'
            f'updated {stamp}</span></div>')


def create_gauges(services: Any) -> tuple[gr.HTML, gr.Timer]:
    """The gauge row and the timer that refreshes it (no queue, no progress spinner)."""
    panel = gr.HTML(render_gauges(services.snapshot()), elem_id="oc-gauges")
    timer = gr.Timer(services.settings.gauge_interval_s)
    timer.tick(lambda: render_gauges(services.snapshot()), outputs=panel, queue=False,
               show_progress="hidden", api_visibility="private")
    return panel, timer
