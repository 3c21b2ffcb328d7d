"""System tab: the start-up self-test, versions, settings, and the machine snapshot."""
from __future__ import annotations

from typing import Any

import gradio as gr

from .guard import guarded

__all__ = ["create_ui", "create_event_handlers", "selftest_markdown", "versions_markdown"]


def selftest_markdown(result: dict[str, Any] | None) -> str:
    if result is None:
        return "_The self-test is still running..._"
    head = ("**Ready.** Every required check passed." if result["ok"]
            else "**Not ready.** Fix the failed checks below.")
    rows = ["| | Check | Result |", "|---|---|---|"]
    for c in result["checks"]:
        mark = "✅" if c["ok"] else ("❌" if c["required"] else "⚠️")
        rows.append(f"| {mark} | {c['name']} | {c['detail'].replace('|', '/')} |")
    return "\n".join([head, "", *rows])


def versions_markdown(result: dict[str, Any] | None) -> str:
    if result is None:
        return ""
    vers = ["| Package | Version |", "|---|---|"]
    vers += [f"| {k} | {v} |" for k, v in result["versions"].items()]
    return "\n".join(vers)


def create_ui(services: Any) -> dict[str, Any]:
    with gr.Row():
        refresh = gr.Button("Refresh", size="sm")
        deep = gr.Button("Deep check (imports torch, lists devices)", size="sm")
    report = gr.Markdown(selftest_markdown(services.selftest))
    with gr.Accordion("Versions", open=False):
        versions = gr.Markdown(versions_markdown(services.selftest))
    with gr.Accordion("Raw status (JSON)", open=False):
        status = gr.JSON(label="system status")
    return {"refresh": refresh, "deep": deep, "report": report, "versions": versions,
            "status": status}


def create_event_handlers(services: Any, h: dict[str, Any]) -> None:
    @guarded(services, "system.status")
    def system_status() -> tuple[str, str, dict]:
        return (selftest_markdown(services.selftest), versions_markdown(services.selftest),
                services.system_status())

    @guarded(services, "system.deep_check")
    def deep_check() -> tuple[str, str, dict]:
        services.run_selftest(deep=True)
        return system_status()

    h["refresh"].click(system_status, outputs=[h["report"], h["versions"], h["status"]],
                        api_name="system_status")
    h["deep"].click(deep_check, outputs=[h["report"], h["versions"], h["status"]],
                     api_name="deep_check")
