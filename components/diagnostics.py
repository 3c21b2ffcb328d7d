"""Diagnostics panel: the error report (counts by type and place, recent failures) and a download."""
from __future__ import annotations

import time
from typing import Any

import gradio as gr

from opusclip_ui.safe_io import save_json

from .guard import guarded

__all__ = ["create_ui", "create_event_handlers", "report_markdown"]


def report_markdown(report: dict[str, Any]) -> str:
    if not report["total"]:
        return "No failures recorded since start-up."
    lines = [f"**{report['total']} failure(s)** since start-up.", "",
             "| By type | Count |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report["by_type"].items()]
    lines += ["", "| By place | Count |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report["by_context"].items()]
    lines += ["", "| Time (UTC) | Place | Type | Message |", "|---|---|---|---|"]
    for r in reversed(report["recent"]):
        msg = r["message"].replace("|", "/").replace("\n", " ")[:160]
        lines.append(f"| {r['time']} | {r['context']} | {r['type']} | {msg} |")
    return "\n".join(lines)


def create_ui(services: Any) -> dict[str, Any]:
    with gr.Accordion("Diagnostics", open=False, elem_id="oc-diagnostics"):
        summary = gr.Markdown(report_markdown(services.tracker.report()), elem_id="oc-diag-report")
        with gr.Row():
            refresh = gr.Button("Refresh", size="sm", elem_id="oc-diag-refresh")
            export = gr.Button("Export JSON", size="sm")
        download = gr.File(label="Error report", visible=False, interactive=False)
        raw = gr.JSON(visible=False)
    return {"summary": summary, "refresh": refresh, "export": export, "download": download,
            "raw": raw}


def create_event_handlers(services: Any, h: dict[str, Any]) -> None:
    @guarded(services, "diagnostics.report")
    def error_report() -> tuple[str, dict]:
        report = services.tracker.report()
        return report_markdown(report), report

    @guarded(services, "diagnostics.export")
    def export() -> dict:
        path = services.settings.outputs / "diagnostics" / f"error-report-{int(time.time())}.json"
        save_json(path, services.tracker.report(recent=200, with_tracebacks=True))
        return gr.update(value=str(path), visible=True)

    h["refresh"].click(error_report, outputs=[h["summary"], h["raw"]], api_name="error_report")
    h["export"].click(export, outputs=h["download"], api_name=False)
