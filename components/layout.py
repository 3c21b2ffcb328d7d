"""Compose the app: header, live gauges, the tabs, and the Diagnostics panel. Nothing else."""
from __future__ import annotations

import importlib
from typing import Any

import gradio as gr

from . import diagnostics, system_tab
from .gauges import create_gauges, render_gauges

__all__ = ["build_ui", "TABS"]

#: (label, module) of each tab; a module that is not there yet is simply not shown.
TABS = (
    ("Inspect", "components.inspect_tab"),
    ("Models", "components.models_tab"),
    ("Generate", "components.generate_tab"),
)


def _tab_modules() -> list[tuple[str, Any]]:
    found = []
    for label, name in TABS:
        try:
            found.append((label, importlib.import_module(name)))
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    return found


def build_ui(services: Any) -> gr.Blocks:
    """Build the whole Blocks app for these services (no module-level state)."""
    age = int(services.settings.outputs_max_age_hours * 3600)
    # uploads and other temp files age out like outputs do
    with gr.Blocks(title="Video-OpusClip", analytics_enabled=False,
                   delete_cache=(min(age, 3600), age)) as demo:
        gr.Markdown("## 🎬 Video-OpusClip\nInspect videos, load video models, generate clips.")
        gauges, _ = create_gauges(services)
        wired: list[tuple[Any, dict]] = []
        with gr.Tabs():
            for label, module in _tab_modules():
                with gr.Tab(label, id=label.lower()):
                    wired.append((module, module.create_ui(services)))
            with gr.Tab("System", id="system"):
                wired.append((system_tab, system_tab.create_ui(services)))
        diag = diagnostics.create_ui(services)
        wired.append((diagnostics, diag))
        for module, handles in wired:
            module.create_event_handlers(services, handles)
        system = next(h for m, h in wired if m is system_tab)

        # What a newly opened page shows: values fixed at build time would be stale. A tab can
        # add its own with ``page_load(services, handles) -> [(component, fn), ...]``.
        fresh = [(gauges, lambda: render_gauges(services.snapshot())),
                 (system["report"], lambda: system_tab.selftest_markdown(services.selftest)),
                 (system["versions"], lambda: system_tab.versions_markdown(services.selftest)),
                 (diag["summary"], lambda: diagnostics.report_markdown(services.tracker.report()))]
        for module, handles in wired:
            if hasattr(module, "page_load"):
                fresh += module.page_load(services, handles)

        def fresh_page() -> list[Any]:
            return [fn() for _, fn in fresh]

        demo.load(fresh_page, outputs=[c for c, _ in fresh], queue=False, show_progress="hidden",
                  api_visibility="private")
    return demo
