"""Loading through the real loader: minilm offline, the tiny pipeline from disk, and the fallback
ladder with out-of-memory injected at each rung."""
from __future__ import annotations

import pytest
import torch

from opusclip_ui import notify
from opusclip_ui.errors import DeviceUnavailableError, OutOfMemoryError
from opusclip_ui.models import loader as loader_mod
from opusclip_ui.models.cards import CARDS_DIR, load_card
from opusclip_ui.models.inference import describe_pipeline, embed
from opusclip_ui.models.loader import RUNGS, ModelLoader
from tests.models_fixtures import model_settings, shared_manager, tiny_cache  # noqa: F401

SIMILAR = ["A cat is sleeping on the sofa.", "A kitten naps on the couch."]
UNRELATED = "Quarterly interest rates were raised by the central bank."


def _card(name):
    return load_card(CARDS_DIR / f"{name}.yaml")


# --- real models, offline ----------------------------------------------------------------------

def test_minilm_loads_and_embeds_offline(shared_manager, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = shared_manager.load("minilm")
    assert loaded.rung == "full" and loaded.device == "cpu" and loaded.dtype == torch.float32
    res = embed(loaded, SIMILAR + [UNRELATED])
    assert res.shape == [3, 384]
    sim = res.similarity
    assert sim[0][0] == pytest.approx(1.0, abs=1e-4)
    assert sim[0][1] > sim[0][2] + 0.3 and sim[0][1] > sim[1][2] + 0.3
    assert res.truncated == [] and res.dropped == 0 and res.latency_ms > 0


def test_embed_reports_truncation_and_batch_limit(shared_manager):
    loaded = shared_manager.load("minilm")
    long_text = " ".join(["word"] * 400)
    with notify.collect_warnings() as warned:
        res = embed(loaded, [long_text, "short"], batch_size=1)
    assert res.truncated == [0] and res.batches == 2
    assert any("longer than 256 tokens" in w and "text 1" in w for w in warned)

    small = loaded.card.model_copy(update={"batch_limit": 2})
    original = loaded.card
    loaded.card = small
    try:
        with notify.collect_warnings() as warned:
            res = embed(loaded, "one\ntwo\nthree")
    finally:
        loaded.card = original
    assert res.shape[0] == 2 and res.dropped == 1
    assert any("only the first 2 are embedded" in w for w in warned)


def test_embed_oom_on_gpu_falls_back_to_cpu(shared_manager, monkeypatch):
    loaded = shared_manager.load("minilm")
    settings = shared_manager.settings.model_copy(update={"inject_oom": "embed"})
    monkeypatch.setattr(loaded, "device", "cuda")  # pretend; the injected OOM fires first
    with notify.collect_warnings() as warned:
        res = embed(loaded, SIMILAR, settings=settings)
    assert loaded.device == "cpu" and res.device == "cpu" and res.shape == [2, 384]
    assert any("now runs on the CPU" in w for w in warned)


def test_tiny_pipeline_saved_and_loaded_back(model_settings):
    from opusclip_ui.models.tiny import ensure_tiny_t2v

    folder = ensure_tiny_t2v(model_settings.cache)
    assert (folder / "model_index.json").is_file()
    assert list(folder.rglob("*.safetensors")) and not list(folder.rglob("*.bin"))
    loaded = ModelLoader(model_settings).load(_card("tiny-random-t2v"), folder)
    assert type(loaded.model).__name__ == "WanPipeline"
    assert loaded.rung == "full" and loaded.device == "cpu" and loaded.warnings == []
    rows = {r["component"]: r for r in describe_pipeline(loaded)}
    assert {"transformer", "vae", "text_encoder", "scheduler", "tokenizer"} <= set(rows)
    assert rows["transformer"]["params"] > 1000 and rows["transformer"]["dtype"] == "float32"
    assert rows["vae"]["device"] == "cpu"


def test_device_cuda_on_a_cpu_machine(monkeypatch, model_settings):
    monkeypatch.setattr(loader_mod, "cuda_available", lambda: False)
    card = _card("tiny-random-t2v").model_copy(update={"device": "cuda"})
    from opusclip_ui.models.tiny import ensure_tiny_t2v
    with pytest.raises(DeviceUnavailableError, match="no CUDA GPU"):
        ModelLoader(model_settings).load(card, ensure_tiny_t2v(model_settings.cache))


# --- the ladder ---------------------------------------------------------------------------------

class FakeGpu:
    """Stands in for a CUDA device: moving to it or offloading raises torch OOM ``fails`` times."""

    def __init__(self, monkeypatch, fails: int, *, accelerate: bool = True, free: int = 2**40):
        from diffusers import DiffusionPipeline

        self.fails = fails
        self.calls: list[str] = []
        real_to = DiffusionPipeline.to
        fake = self

        def to(pipe, *args, **kwargs):
            target = kwargs.get("device", args[0] if args and not isinstance(args[0], torch.dtype)
                                else None)
            if target is not None and str(target).startswith("cuda"):
                fake._maybe_fail("to(cuda)")
                return pipe  # pretend it moved
            return real_to(pipe, *args, **kwargs)

        def offload(kind):
            def method(pipe, *args, **kwargs):
                fake._maybe_fail(kind)
            return method

        monkeypatch.setattr(DiffusionPipeline, "to", to)
        for name in ("enable_model_cpu_offload", "enable_sequential_cpu_offload",
                     "enable_group_offload"):
            monkeypatch.setattr(DiffusionPipeline, name, offload(name))
        monkeypatch.setattr(DiffusionPipeline, "remove_all_hooks", lambda self: None)
        monkeypatch.setattr(loader_mod, "cuda_available", lambda: True)
        monkeypatch.setattr(loader_mod, "_bf16_ok", lambda device: True)
        monkeypatch.setattr(loader_mod, "_has_accelerate", lambda: accelerate)
        self.free = free

    def _maybe_fail(self, what):
        self.calls.append(what)
        if self.fails > 0:
            self.fails -= 1
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 2.00 GiB ({what})")


@pytest.mark.parametrize("fails", range(6))
def test_oom_at_each_rung_ends_on_the_next(monkeypatch, model_settings, fails):
    from opusclip_ui.models.tiny import ensure_tiny_t2v

    gpu = FakeGpu(monkeypatch, fails)
    loader = ModelLoader(model_settings, free_memory=lambda d: gpu.free,
                         ram_available=lambda: 2**40)
    card = _card("tiny-random-t2v").model_copy(update={"device": "cuda"})
    with notify.collect_warnings() as warned:
        loaded = loader.load(card, ensure_tiny_t2v(model_settings.cache))
    assert loaded.rung == RUNGS[fails]
    assert len(warned) == fails
    for rung, w in zip(RUNGS[1:], warned):
        assert "ran out of memory" in w and loader_mod._RUNG_TEXT[rung] in w
    assert loaded.warnings == warned
    if fails == 2:
        assert loaded.dtype == torch.bfloat16
    if fails == 3:
        assert gpu.calls[-1] == "enable_model_cpu_offload"
    if fails == 4:
        assert gpu.calls[-1] == "enable_sequential_cpu_offload"
    if fails == 5:
        assert loaded.device == "cpu" and loaded.dtype == torch.float32
    else:
        assert loaded.device == "cuda"


def test_group_offload_when_accelerate_is_missing(monkeypatch, model_settings):
    from opusclip_ui.models.tiny import ensure_tiny_t2v

    gpu = FakeGpu(monkeypatch, 3, accelerate=False)
    loader = ModelLoader(model_settings, free_memory=lambda d: gpu.free, ram_available=lambda: 2**40)
    card = _card("tiny-random-t2v").model_copy(update={"device": "cuda"})
    loaded = loader.load(card, ensure_tiny_t2v(model_settings.cache))
    assert loaded.rung == "model_offload" and gpu.calls[-1] == "enable_group_offload"


def test_every_rung_fails_gives_a_clear_error(monkeypatch, model_settings):
    from opusclip_ui.models.tiny import ensure_tiny_t2v

    gpu = FakeGpu(monkeypatch, 99)
    # Not enough RAM for the fp32 CPU rung: it is left out, and the error says so.
    loader = ModelLoader(model_settings, free_memory=lambda d: gpu.free, ram_available=lambda: 200_000)
    card = _card("tiny-random-t2v").model_copy(update={"device": "cuda"})
    with notify.collect_warnings() as warned, pytest.raises(OutOfMemoryError) as e:
        loader.load(card, ensure_tiny_t2v(model_settings.cache))
    assert "sequential_offload" in e.value.user_message
    assert "tiny-random-t2v" in e.value.hint and "CPU fallback was skipped" in e.value.hint
    assert e.value.device == "cuda" and len(warned) == 4


def test_starting_rung_comes_from_the_estimate(monkeypatch, model_settings):
    from opusclip_ui.models.tiny import ensure_tiny_t2v
    from opusclip_ui.models.weights import estimate_weights

    folder = ensure_tiny_t2v(model_settings.cache)
    est = estimate_weights(folder)
    FakeGpu(monkeypatch, 0)
    card = _card("tiny-random-t2v").model_copy(update={"device": "cuda"})
    # Room for half precision but not fp32: starts at `half`, loading in half directly.
    free = int(est.bytes_at(2) * 1.5)
    loader = ModelLoader(model_settings, free_memory=lambda d: free, ram_available=lambda: 2**40)
    with notify.collect_warnings() as warned:
        loaded = loader.load(card, folder)
    assert loaded.rung == "half" and loaded.dtype == torch.bfloat16
    assert len(warned) == 1 and "full precision does not fit" in warned[0]
    # Room for the largest component only: starts at model offload.
    free = int(est.largest_component_params * 2 * 1.25)
    loader = ModelLoader(model_settings, free_memory=lambda d: free, ram_available=lambda: 2**40)
    assert loader.load(card, folder).rung == "model_offload"


def test_ram_too_low_is_refused_before_loading(monkeypatch, model_settings):
    from opusclip_ui.models.tiny import ensure_tiny_t2v

    loader = ModelLoader(model_settings, ram_available=lambda: 1000)
    monkeypatch.setattr(ModelLoader, "_from_pretrained",
                        lambda *a, **k: pytest.fail("must not start loading"))
    with pytest.raises(OutOfMemoryError) as e:
        loader.load(_card("tiny-random-t2v").model_copy(update={"device": "cpu"}),
                    ensure_tiny_t2v(model_settings.cache))
    assert e.value.device == "cpu" and "nothing was loaded" in e.value.user_message


def test_injected_oom_setting_climbs_for_real(model_settings):
    """The test-only ``inject_oom`` switch: no monkeypatching, the real CPU path."""
    from opusclip_ui.models.tiny import ensure_tiny_t2v

    settings = model_settings.model_copy(update={"inject_oom": "load.full,load.retry"})
    card = _card("tiny-random-t2v").model_copy(update={"device": "cpu"})
    with notify.collect_warnings() as warned:
        loaded = ModelLoader(settings).load(card, ensure_tiny_t2v(settings.cache))
    assert loaded.rung == "half" and loaded.dtype == torch.bfloat16 and len(warned) == 2
    settings = model_settings.model_copy(update={"inject_oom": "load.*"})
    with pytest.raises(OutOfMemoryError):
        ModelLoader(settings).load(card, ensure_tiny_t2v(settings.cache))


def test_non_oom_errors_are_not_swallowed_by_the_ladder(monkeypatch, model_settings):
    from diffusers import DiffusionPipeline

    from opusclip_ui.models.tiny import ensure_tiny_t2v

    gpu = FakeGpu(monkeypatch, 0)

    def boom(self, *a, **k):
        raise ValueError("a real bug")

    monkeypatch.setattr(DiffusionPipeline, "to", boom)
    loader = ModelLoader(model_settings, free_memory=lambda d: gpu.free, ram_available=lambda: 2**40)
    card = _card("tiny-random-t2v").model_copy(update={"device": "cuda"})
    with notify.collect_warnings() as warned, pytest.raises(ValueError, match="a real bug"):
        loader.load(card, ensure_tiny_t2v(model_settings.cache))
    assert warned == []


def test_offload_hooks_are_really_removed(model_settings):
    """Group offload (diffusers hooks) and accelerate hooks, applied for real on the CPU."""
    from opusclip_ui.models.loader import remove_offload_hooks
    from opusclip_ui.models.tiny import ensure_tiny_t2v

    loaded = ModelLoader(model_settings).load(_card("tiny-random-t2v"),
                                              ensure_tiny_t2v(model_settings.cache))
    pipe = loaded.model
    pipe.enable_group_offload(onload_device=torch.device("cpu"), offload_type="block_level",
                              num_blocks_per_group=1)
    assert pipe.transformer._diffusers_hook.hooks
    remove_offload_hooks(pipe)
    for comp in (pipe.transformer, pipe.vae, pipe.text_encoder):
        assert not getattr(getattr(comp, "_diffusers_hook", None), "hooks", {})
    from accelerate import cpu_offload
    cpu_offload(pipe.text_encoder, execution_device=torch.device("cpu"))
    assert getattr(pipe.text_encoder, "_hf_hook", None) is not None
    remove_offload_hooks(pipe)
    assert getattr(pipe.text_encoder, "_hf_hook", None) is None
    # The weights came back from the offload map: the next rung can still use the model.
    assert all(p.device.type == "cpu" for p in pipe.text_encoder.parameters())
