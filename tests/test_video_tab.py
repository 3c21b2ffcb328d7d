"""The Inspect tab: built from its module, driven through gradio_client like a user's browser."""
from __future__ import annotations

import gradio as gr
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from components import inspect_tab
from opusclip_ui.settings import Settings
from opusclip_ui.video.probe import load_video_file

from .video_fixtures import media  # noqa: F401


@pytest.fixture
def tab(services, free_port):
    from tests.app_support import launch_tab

    demo, handles = launch_tab(services, inspect_tab, free_port)
    yield Client(f"http://127.0.0.1:{free_port}/", verbose=False), demo, handles
    demo.close()


def test_tab_returns_its_handles_and_uses_a_file_input(services):
    with gr.Blocks():
        h = inspect_tab.create_ui(services)
    assert isinstance(h["upload"], gr.File)  # never gr.Video as an input
    assert isinstance(h["preview"], gr.Video) and not h["preview"].interactive
    assert isinstance(h["gallery"], gr.Gallery)
    assert {"scenes_table", "cancel_scenes", "props_json", "props_yaml", "scenes_csv"} <= set(h)


def test_inspect_over_the_api(tab, media):
    client, _, _ = tab
    preview, props, gallery, raw, *_ = client.predict(
        handle_file(str(media.get("mp4_h264_aac.mp4"))), "", 4, api_name="/inspect")
    assert raw["width"] == 160 and raw["audio"]["codec"] == "aac"
    assert raw["file_path"] == "mp4_h264_aac.mp4"  # no server paths in what the browser gets
    assert "| Audio | aac, 1 ch, 48,000 Hz" in props
    assert len(gallery) == 4 and all(item["image"].endswith(".jpg") for item in gallery)
    # each thumbnail comes from its own quarter of the 1-second clip
    times = [float(item["caption"].split(":")[1]) for item in gallery]
    assert all(i * 0.25 <= t < (i + 1) * 0.25 for i, t in enumerate(times)), times
    assert preview.endswith(".mp4")


def test_hostile_upload_gets_our_message(tab, media):
    client, _, _ = tab
    with pytest.raises(AppError, match="it looks like a text file"):
        client.predict(handle_file(str(media.get("text.mp4"))), "", 4, api_name="/inspect")


def test_nothing_to_inspect_and_private_links(tab, media):
    client, _, _ = tab
    with pytest.raises(AppError, match="nothing to inspect"):
        client.predict(None, "", 4, api_name="/inspect")
    with pytest.raises(AppError, match="private or local network address"):
        client.predict(None, "http://127.0.0.1:9/a.mp4", 4, api_name="/inspect")


def test_scenes_need_an_inspected_video(tab):
    client, _, _ = tab
    with pytest.raises(AppError, match="no inspected video"):
        client.predict(27, 0, 15, api_name="/scenes")  # state is not an API input


def test_properties_table_flags_estimates_rotation_and_vfr(media, tmp_path):
    s = Settings(data_dir=tmp_path)
    md = inspect_tab.properties_markdown(load_video_file(media.get("rotated.mp4"), s))
    assert "| Rotation | 90° |" in md and "(shown as 120×160)" in md and "| Audio | no audio |" in md
    md = inspect_tab.properties_markdown(load_video_file(media.get("vfr.mp4"), s))
    assert "variable frame rate" in md
    md = inspect_tab.properties_markdown(load_video_file(media.get("webm_vp9_opus.webm"), s))
    assert "(estimated)" in md and "| Video codec | vp9 |" in md
