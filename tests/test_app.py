"""The app builds, launches, answers gradio_client, and the guard speaks for every handler."""
from __future__ import annotations

import gradio as gr
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from components.guard import GENERIC_MESSAGE, guarded
from components.layout import build_ui
from opusclip_ui import notify
from opusclip_ui.errors import InvalidVideoError


@pytest.fixture
def launched(services, free_port):
    apps = []

    def launch(demo):
        demo.queue().launch(server_name="127.0.0.1", server_port=free_port, prevent_thread_lock=True,
                            show_error=False, quiet=True)
        apps.append(demo)
        return Client(f"http://127.0.0.1:{free_port}/", verbose=False)
    yield launch
    for demo in apps:
        demo.close()


def test_app_builds_with_gauges_system_tab_and_diagnostics(services):
    demo = build_ui(services)
    config = demo.get_config_file()
    labels = {c.get("props", {}).get("label") for c in config["components"]}
    assert "Diagnostics" in labels
    api_names = {d.get("api_name") for d in config["dependencies"]}
    assert {"system_status", "error_report"} <= api_names
    html = [c for c in config["components"] if c.get("props", {}).get("elem_id") == "oc-gauges"]
    assert html and "RAM" in html[0]["props"]["value"]


def test_system_status_over_the_client(services, launched):
    services.run_selftest()
    client = launched(build_ui(services))
    markdown, versions, status = client.predict(api_name="/system_status")
    assert "Ready" in markdown and "| gradio | 6." in versions
    assert status["snapshot"]["ram"]["total_mb"] > 0
    assert status["selftest"]["ok"] is True
    report_md, report = client.predict(api_name="/error_report")
    assert report["total"] == 0 and "No failures" in report_md


def _guard_demo(services):
    @guarded(services, "test.typed")
    def typed(text):
        raise InvalidVideoError("This file is not a video: it looks like a text file.",
                                "Upload a video such as an MP4.")

    @guarded(services, "test.unknown")
    def unknown(text):
        raise KeyError("secret internal detail /etc/shadow")

    @guarded(services, "test.warns")
    def warns(text):
        notify.warn("Switched to low quality to fit in memory.")
        return text.upper()

    @guarded(services, "test.stream")
    def stream(text):
        yield "first"
        raise MemoryError()

    with gr.Blocks() as demo:
        box, out = gr.Textbox(), gr.Textbox()
        for fn in (typed, unknown, warns, stream):
            box.submit(fn, box, out, api_name=fn.__name__)
    return demo


def test_typed_error_reaches_client_with_our_message(services, launched):
    client = launched(_guard_demo(services))
    with pytest.raises(AppError) as info:
        client.predict("x", api_name="/typed")
    assert "not a video: it looks like a text file" in str(info.value)
    assert "Upload a video such as an MP4." in str(info.value)
    report = services.tracker.report()
    assert report["by_type"] == {"InvalidVideoError": 1} and report["by_context"] == {"test.typed": 1}


def test_unknown_error_is_generic_without_traceback(services, launched):
    client = launched(_guard_demo(services))
    with pytest.raises(AppError) as info:
        client.predict("x", api_name="/unknown")
    text = str(info.value)
    assert GENERIC_MESSAGE.split(".")[0] in text
    assert "secret internal detail" not in text and "Traceback" not in text
    recent = services.tracker.report(with_tracebacks=True)["recent"][-1]
    assert recent["type"] == "KeyError" and "Traceback" in recent["traceback"]


def test_generator_handler_errors_are_mapped(services, launched):
    client = launched(_guard_demo(services))
    with pytest.raises(AppError) as info:
        client.predict("x", api_name="/stream")
    assert "ran out of memory" in str(info.value)


def test_warning_does_not_stop_the_handler(services, launched):
    client = launched(_guard_demo(services))
    assert client.predict("ok", api_name="/warns") == "OK"


def test_debug_setting_reraises(settings):
    from opusclip_ui.services import build_services

    debug_services = build_services(settings.model_copy(update={"debug": True}))

    @guarded(debug_services, "test.debug")
    def boom():
        raise KeyError("raw")

    with pytest.raises(KeyError):
        boom()


def test_a_newly_opened_page_shows_current_state_not_build_time_state(services):
    class Loaded:  # another user loaded a model after the UI was built
        def loaded(self):
            return {"text-to-video": {"name": "tiny-random-t2v", "device": "cpu", "dtype": "fp32",
                                      "rung": "full", "seconds": 1.0}}

    demo = build_ui(services)
    fresh = next(f for f in demo.fns.values() if f.name == "fresh_page")
    services.tracker.record(ValueError("boom"), "inspect.inspect")
    real_models, services.models = services.models, Loaded()
    try:
        values = fresh.fn()
    finally:
        services.models = real_models
    text = "\n".join(v for v in values if isinstance(v, str))
    assert "1 failure(s)" in text and "`tiny-random-t2v` on **cpu**" in text
