"""The Generate tab over the real client: /generate makes a playable video with its sidecar and
history; a bad request fails alone with a message that names the value."""
from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

pytest_plugins = ["tests.models_fixtures"]


@pytest.fixture
def gen_services(model_settings):
    from opusclip_ui.services import build_services

    return build_services(model_settings)


@pytest.fixture
def client(gen_services, free_port):
    from components import generate_tab

    from tests.app_support import launch_tab

    demo, _ = launch_tab(gen_services, generate_tab, free_port, show_error=True)
    yield Client(f"http://127.0.0.1:{free_port}/", verbose=False)
    demo.close()
    if getattr(gen_services, "models", None) is not None:
        gen_services.models.unload_all()


def test_tab_lists_the_offline_model_first(gen_services):
    from components.generate_tab import get_service

    names = get_service(gen_services).model_names()
    assert names[0] == "tiny-random-t2v" and "wan2.1-t2v-1.3b" in names
    assert "minilm" not in names  # a text encoder is not offered here


def test_generate_over_the_client(client):
    video, summary, sidecar, download, history = client.predict(
        "tiny-random-t2v", "a red kite over the sea", 1, "low", 9, "", None, None, "segments",
        api_name="/generate")
    path = Path(video["video"] if isinstance(video, dict) else video)
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path))
    meta = next(gen)
    frames = [np.frombuffer(f, np.uint8) for f in gen]
    assert len(frames) == 8 and tuple(meta["size"]) == (32, 32)
    assert "Seed 9" in summary and "random weights" in summary
    assert sidecar["seed"] == 9 and sidecar["model"]["name"] == "tiny-random-t2v"
    assert Path(download).read_bytes() == path.read_bytes()
    assert len(history) == 1 and history[0]["caption"].startswith("9 · low")


def test_seed_box_default_means_random_and_is_reported(client):
    seeds = []
    for _ in range(2):
        _, summary, sidecar, _, _ = client.predict(
            "tiny-random-t2v", "a red kite over the sea", 1, "low", -1, "", None, None,
            "segments", api_name="/generate")
        assert sidecar["seed_was_random"] is True and "(random)" in summary
        seeds.append(sidecar["seed"])
    assert seeds[0] != seeds[1]


def test_bad_request_names_the_value_and_the_app_keeps_serving(client):
    with pytest.raises(AppError) as ei:
        client.predict("tiny-random-t2v", "   ", 1, "low", None, "", None, None, "segments",
                       api_name="/generate")
    assert "prompt is empty" in str(ei.value)
    with pytest.raises(AppError) as ei:
        client.predict("tiny-random-t2v", "a cat", 61, "low", None, "", None, None, "segments",
                       api_name="/generate")
    # the slider refuses it before our handler runs; either message names the value and the limit
    assert "61" in str(ei.value) and "60" in str(ei.value)
    out = client.predict("tiny-random-t2v", "a cat", 1, "low", 1, "", None, None, "segments",
                         api_name="/generate")
    assert out[2]["seed"] == 1


def test_history_entry_reuse_remakes_the_same_video(gen_services):
    from components.generate_tab import get_service, history_items, reuse_values
    from opusclip_ui.errors import InvalidRequestError

    svc = get_service(gen_services)
    first = svc.run("tiny-random-t2v", "a kite", 1, "low", None, "blurry", 2, None, "segments",
                    session_id="me")
    history = svc.history("me")
    assert history_items(history)[0][0] == str(first.video_path.with_suffix(".jpg"))  # poster
    values = reuse_values(history[0])
    assert values[0] == "tiny-random-t2v" and values[4] == first.seed and values[5] == "blurry"
    again = svc.run(*values, session_id="me")
    assert again.video_path != first.video_path
    assert again.video_path.read_bytes() == first.video_path.read_bytes()
    assert len(svc.history("me")) == 2
    with pytest.raises(InvalidRequestError):
        reuse_values(None)


def test_cancel_button_stops_the_run_and_saves_nothing(client, gen_services):
    import time

    job = client.submit("tiny-random-t2v", "a very long kite", 60, "high", 1, "", None, None,
                        "segments", api_name="/generate")
    deadline = time.monotonic() + 120
    while not job.done() and time.monotonic() < deadline:
        client.predict(api_name="/cancel_generate")  # same client, same session
        time.sleep(0.5)
    assert job.done()
    with pytest.raises(AppError) as ei:
        job.result()
    assert "cancelled" in str(ei.value).lower()
    outputs = gen_services.settings.outputs
    assert not [p for p in outputs.rglob("*") if p.suffix in (".mp4", ".json") or p.name.startswith(".")]
