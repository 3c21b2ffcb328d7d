"""The Models tab: its API names, and the handlers through the real guard (warnings per rung become
gr.Warning, bad input becomes one friendly gr.Error)."""
from __future__ import annotations

import os
import warnings

import gradio as gr
import pytest

from tests.models_fixtures import tiny_cache  # noqa: F401


@pytest.fixture(scope="module")
def tab(tmp_path_factory, tiny_cache):
    """One app per module (building it and loading minilm is the slow part)."""
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # set by conftest: nothing is downloaded
    tmp_path = tmp_path_factory.mktemp("tab")
    from components import models_tab
    from opusclip_ui.services import build_services
    from opusclip_ui.settings import Settings

    settings = Settings(data_dir=tmp_path / "data", cache_dir=tiny_cache, inject_oom="load.full")
    services = build_services(settings)
    with gr.Blocks() as demo:
        handles = models_tab.create_ui(services)
        models_tab.create_event_handlers(services, handles)
    fns = {f.api_name: f.fn for f in demo.fns.values() if f.api_name}
    yield services, handles, fns
    services.models.unload_all()


def test_api_names(tab):
    _, handles, fns = tab
    assert {"list_models", "load_model", "unload_model", "embed"} <= set(fns)
    labels = [c[0] for c in handles["card"].choices]
    assert any(label.startswith("minilm") and "cached" in label for label in labels)


def test_load_warns_per_rung_and_records_it(tab):
    services, _, fns = tab
    fns["unload_model"]("tiny-random-t2v")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        state, info = fns["load_model"]("tiny-random-t2v")
    rung_warnings = [str(w.message) for w in caught if "ran out of memory" in str(w.message)]
    assert len(rung_warnings) == 1 and "retrying after freeing memory" in rung_warnings[0]
    assert info["rung"] == "retry" and "rung **retry**" in state
    state, result = fns["unload_model"]("tiny-random-t2v")
    assert result["unloaded"] == "tiny-random-t2v" and "No model is loaded" in state


def test_embed_gives_heatmap_and_numbers(tab):
    _, _, fns = tab
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        md, image, data = fns["embed"]("minilm", "A dog runs.\nA puppy is running.\nTaxes rose.")
    assert data["shape"] == [3, 384] and "latency" in md
    assert image.size[0] > 100 and image.size == (image.size[0], image.size[0])
    assert data["similarity"][0][1] > data["similarity"][0][2]


def test_components_of_a_pipeline(tab):
    _, _, fns = tab
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df, data = fns["model_components"]("tiny-random-t2v")
    assert {"transformer", "vae", "text_encoder", "scheduler"} <= set(df["component"])


@pytest.mark.parametrize("name,text,match", [
    ("minilm", "   \n ", "no text to embed"),
    ("tiny-random-t2v", "hello", "not a loaded text encoder"),
    (None, "hello", "No model card is selected"),
    ("nope", "hello", "no model card named"),
])
def test_bad_requests_are_friendly_errors(tab, name, text, match):
    _, _, fns = tab
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(gr.Error, match=match):
            fns["embed"](name, text)


def test_offline_load_error_names_the_command(tab):
    _, _, fns = tab
    with pytest.raises(gr.Error, match="models pull ltx-video"):
        fns["load_model"]("ltx-video")


def test_card_details_show_memory_table_and_label(tab):
    from components.models_tab import card_markdown

    services, _, fns = tab
    md = fns["model_details"]("tiny-random-t2v")
    assert "random weights - output is noise; for trying the pipeline" in md
    md = fns["model_details"]("wan2.1-t2v-1.3b")
    assert "8.19" in md and "Source:" in md and "832×480" in md
    assert card_markdown(None).startswith("_Pick")
