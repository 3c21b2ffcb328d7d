"""The manager: switching is a transaction, unloading frees memory, jobs keep their model, loads are
serialised; weights status, offline errors and downloads that never leave a partial snapshot."""
from __future__ import annotations

import gc
import threading
import weakref

import pytest

from opusclip_ui import notify
from opusclip_ui.errors import (ModelLoadError, ModelNotFoundError, NetworkError,
                                WeightsUnavailableOfflineError)
from opusclip_ui.models.manager import ModelManager
from opusclip_ui.models.weights import WeightsStore
from tests.models_fixtures import (copy_cards, manager, model_settings, tiny_cache,  # noqa: F401
                                   write_card)


def _dead(ref: weakref.ref) -> bool:
    gc.collect()
    return ref() is None


def test_unload_really_frees_the_model(manager):
    loaded = manager.load("tiny-random-t2v")
    pipe_ref = weakref.ref(loaded.model)
    transformer_ref = weakref.ref(loaded.model.transformer)
    del loaded
    result = manager.unload("tiny-random-t2v")
    assert result == {"unloaded": "tiny-random-t2v", "deferred": False}
    assert manager.loaded() == {}
    assert _dead(pipe_ref) and _dead(transformer_ref)


def test_unload_of_something_not_loaded(manager):
    assert manager.unload("minilm")["unloaded"] is None


@pytest.mark.gpu
def test_unload_frees_gpu_memory(manager):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    before = torch.cuda.memory_allocated()
    manager.load("tiny-random-t2v", device="cuda")
    assert torch.cuda.memory_allocated() > before
    manager.unload("tiny-random-t2v")
    assert torch.cuda.memory_allocated() == before


def test_switch_replaces_the_model_of_the_same_kind(manager, tmp_path):
    tiny = manager.load("tiny-random-t2v")
    ref = weakref.ref(tiny.model)
    enc = manager.load("minilm")  # another kind: both stay
    assert set(manager.loaded()) == {"text-to-video", "text-encoder"}
    del tiny, enc
    # A second text-to-video card (same weights, another name) switches the first out.
    card = manager.card("tiny-random-t2v").model_copy(update={"name": "tiny-two"})
    manager.cards["tiny-two"] = card
    manager.load("tiny-two")
    assert manager.loaded()["text-to-video"]["name"] == "tiny-two"
    assert _dead(ref)


def test_failed_switch_rolls_back(manager, monkeypatch):
    manager.load("tiny-random-t2v")
    broken = manager.card("tiny-random-t2v").model_copy(update={"name": "broken"})
    manager.cards["broken"] = broken
    real_load = manager.loader.load
    calls = []

    def load(card, folder, **kw):
        calls.append(card.name)
        if card.name == "broken":
            raise ModelLoadError("broken weights")
        return real_load(card, folder, **kw)

    monkeypatch.setattr(manager.loader, "load", load)
    with notify.collect_warnings() as warned, pytest.raises(ModelLoadError, match="broken weights"):
        manager.load("broken")
    assert calls == ["broken", "tiny-random-t2v"]  # the old model was loaded again
    assert manager.loaded()["text-to-video"]["name"] == "tiny-random-t2v"
    assert manager.get("tiny-random-t2v").model is not None
    assert any("was loaded again" in w for w in warned)


def test_failed_switch_while_a_job_holds_the_old_model_keeps_it(manager, monkeypatch):
    manager.cards["broken"] = manager.card("tiny-random-t2v").model_copy(update={"name": "broken"})
    monkeypatch.setattr(manager.loader, "load", _fail_for("broken", manager.loader.load))
    with manager.use("tiny-random-t2v") as held:
        with pytest.raises(ModelLoadError):
            manager.load("broken")
        assert manager.get("tiny-random-t2v") is held and held.model is not None


def _fail_for(name, real):
    def load(card, folder, **kw):
        if card.name == name:
            raise ModelLoadError("broken weights")
        return real(card, folder, **kw)
    return load


def test_running_job_keeps_its_model_until_it_ends(manager):
    with manager.use("tiny-random-t2v") as loaded:
        ref = weakref.ref(loaded.model)
        with notify.collect_warnings() as warned:
            result = manager.unload("tiny-random-t2v")
        assert result["deferred"] is True and any("still used" in w for w in warned)
        assert manager.loaded() == {}
        assert loaded.model is not None and ref() is not None  # the job can still run
        del loaded
    assert _dead(ref)


def test_concurrent_loads_of_one_card_load_it_once(manager, monkeypatch):
    real_load = manager.loader.load
    calls = []

    def slow_load(card, folder, **kw):
        calls.append(card.name)
        return real_load(card, folder, **kw)

    monkeypatch.setattr(manager.loader, "load", slow_load)
    results, errors = [], []

    def worker():
        try:
            results.append(manager.load("tiny-random-t2v"))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(results) == 4
    assert calls == ["tiny-random-t2v"] and all(r is results[0] for r in results)


def test_unknown_card(manager):
    with pytest.raises(ModelNotFoundError, match="no model card named `nope`"):
        manager.load("nope")


# --- weights: offline, downloads ---------------------------------------------------------------

def test_offline_with_no_cache_gives_the_offline_error(manager, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    assert manager.store.status(manager.card("wan2.1-t2v-1.3b")).status == "unavailable-offline"
    with pytest.raises(WeightsUnavailableOfflineError) as e:
        manager.load("wan2.1-t2v-1.3b")
    assert "offline" in e.value.user_message
    assert "python -m opusclip_ui models pull wan2.1-t2v-1.3b" in e.value.hint
    assert manager.loaded() == {}


def test_offline_failure_does_not_unload_the_current_model(manager, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    manager.load("tiny-random-t2v")
    with pytest.raises(WeightsUnavailableOfflineError):
        manager.load("cogvideox-2b")
    assert manager.loaded()["text-to-video"]["name"] == "tiny-random-t2v"


def _fake_hub(tmp_path, *, fail_times=0, error=None, partial=False):
    """A stand-in for snapshot_download that writes a small snapshot (or fails)."""
    calls = []
    from safetensors.torch import save_file
    import torch

    def download(repo_id, **kw):
        calls.append(kw)
        snap = tmp_path / "snap" / repo_id.replace("/", "--")
        snap.mkdir(parents=True, exist_ok=True)
        (snap / "config.json").write_text("{}")
        if len(calls) <= fail_times or partial:
            raise error or NetworkError("connection reset")
        save_file({"w": torch.zeros(4)}, str(snap / "model.safetensors"))
        return str(snap)

    return download, calls


def test_pull_retries_transient_failures_then_records_completion(model_settings, tmp_path,
                                                                  monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    download, calls = _fake_hub(tmp_path, fail_times=2)
    store = WeightsStore(model_settings.cache, reachable=lambda: True, snapshot_download=download,
                         sleep=lambda s: None)
    m = ModelManager(model_settings, store=store)
    card = m.card("minilm").model_copy(update={"name": "hubenc", "model_path": "org/enc",
                                               "revision": "abc123"})
    assert store.status(card).status == "downloadable"
    folder = store.pull(card)
    assert len(calls) == 3 and calls[0]["revision"] == "abc123"
    assert "*.bin" in calls[0]["ignore_patterns"]
    assert store.status(card).status == "cached" and store.resolve(card) == folder


def test_partial_download_is_never_loaded(model_settings, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    download, calls = _fake_hub(tmp_path, partial=True)
    store = WeightsStore(model_settings.cache, reachable=lambda: True, snapshot_download=download,
                         sleep=lambda s: None)
    card = ModelManager(model_settings, store=store).card("minilm").model_copy(
        update={"name": "hubenc", "model_path": "org/enc"})
    with pytest.raises(NetworkError):
        store.pull(card)
    assert len(calls) == 5  # one try and four retries
    assert store.status(card).status == "downloadable"
    with pytest.raises(WeightsUnavailableOfflineError, match="not downloaded yet"):
        store.resolve(card)


def test_snapshot_that_lost_a_file_is_not_cached(model_settings, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    download, _ = _fake_hub(tmp_path)
    store = WeightsStore(model_settings.cache, reachable=lambda: False, snapshot_download=download,
                         sleep=lambda s: None)
    card = ModelManager(model_settings, store=store).card("minilm").model_copy(
        update={"name": "hubenc", "model_path": "org/enc"})
    with pytest.raises(WeightsUnavailableOfflineError):
        store.pull(card)  # offline: refuses before trying
    store._reachable_override = lambda: True
    folder = store.pull(card)
    (folder / "model.safetensors").unlink()
    store._reachable_override = lambda: False
    assert store.status(card).status == "unavailable-offline"


def test_list_models_shows_status_fit_and_recommendation(manager, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snap = {"ram": {"available_mb": 8000}, "gpu": {"mode": "cpu", "label": "CPU only",
                                                   "devices": []}}
    listing = manager.list_models(snap)
    rows = {r["name"]: r for r in listing["models"]}
    assert rows["minilm"]["status"] == "cached" and rows["minilm"]["fit"] == "fits"
    assert rows["tiny-random-t2v"]["status"] == "cached"
    assert rows["wan2.1-t2v-1.3b"]["status"] == "unavailable-offline"
    assert rows["wan2.1-t2v-1.3b"]["fit"] == "does not fit"
    assert listing["recommended"]["text-to-video"] == "tiny-random-t2v"
    assert listing["recommended"]["text-encoder"] == "minilm"
    # A 24 GB GPU with 20 GB free: Wan fits whole, CogVideoX (19 GB) too; the heavier is preferred.
    gpu = {"mode": "nvml", "label": "RTX", "devices": [{"total_mb": 24576, "used_mb": 4096}]}
    listing = manager.list_models({"ram": {"available_mb": 32000}, "gpu": gpu})
    rows = {r["name"]: r for r in listing["models"]}
    assert rows["wan2.1-t2v-1.3b"]["fit"] == "fits"
    assert rows["cogvideox-2b"]["fit"] == "fits"
    assert listing["recommended"]["text-to-video"] == "wan2.1-t2v-1.3b"
    # An 8 GB card: Wan only with offload (8.19 GB does not fit either: 5 GB sequential does).
    gpu = {"mode": "nvml", "label": "small", "devices": [{"total_mb": 8192, "used_mb": 0}]}
    rows = {r["name"]: r for r in manager.list_models({"ram": {"available_mb": 32000},
                                                      "gpu": gpu})["models"]}
    assert rows["wan2.1-t2v-1.3b"]["fit"] == "fits with offload"
    # A loaded model fits by definition, even when its own memory makes the machine look full.
    manager.load("tiny-random-t2v")
    rows = {r["name"]: r for r in manager.list_models({"ram": {"available_mb": 1},
                                                      "gpu": {"devices": []}})["models"]}
    assert rows["tiny-random-t2v"]["fit"] == "fits" and rows["tiny-random-t2v"]["loaded"]
    assert "loaded now on cpu (rung full)" in rows["tiny-random-t2v"]["fit_detail"]
    assert rows["minilm"]["fit"] == "does not fit"


def test_bad_card_in_the_folder_is_listed_not_fatal(model_settings, tmp_path):
    cards = copy_cards(tmp_path / "cards", ["minilm"])
    write_card(cards, "evil.yaml", "model_type: text-encoder\nmodel_path: org/m\ndevice: cpu\n"
                                   "trust_remote_code: true\n")
    m = ModelManager(model_settings, cards_dir=cards)
    listing = m.list_models({"ram": {"available_mb": 8000}, "gpu": {"devices": []}})
    assert [r["name"] for r in listing["models"]] == ["minilm"]
    assert "trust_remote_code" in listing["invalid_cards"]["evil.yaml"]
    with pytest.raises(Exception, match="trust_remote_code"):
        m.load("evil")


def test_local_folder_with_only_pickle_weights_is_refused(model_settings, tmp_path):
    root = model_settings.model_roots[0]
    folder = root / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert"}')
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04 never unpickled")
    cards = write_card(tmp_path / "cards", "pickled.yaml",
                       "model_type: text-encoder\nmodel_path: pickled\ndevice: cpu\n").parent
    m = ModelManager(model_settings, cards_dir=cards)
    with pytest.raises(ModelLoadError, match="only pickle checkpoints"):
        m.load("pickled")
    assert m.loaded() == {}


def test_disk_full_while_recording_a_pull_leaves_it_uncached(model_settings, tmp_path,
                                                            monkeypatch):
    from opusclip_ui import safe_io
    from opusclip_ui.errors import DiskFullError

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    download, _ = _fake_hub(tmp_path)
    store = WeightsStore(model_settings.cache, reachable=lambda: True, snapshot_download=download,
                         sleep=lambda s: None)
    card = ModelManager(model_settings, store=store).card("minilm").model_copy(
        update={"name": "hubenc", "model_path": "org/enc"})

    def full(*a, **k):
        raise DiskFullError("The disk is full.")

    monkeypatch.setattr(safe_io, "save_json", full)
    with pytest.raises(DiskFullError):
        store.pull(card)
    assert store.status(card).status == "downloadable"


def test_download_progress_reaches_the_ui(monkeypatch):
    from opusclip_ui.models.weights import _progress_tqdm

    seen = []
    with notify.sink(on_progress=lambda f, d: seen.append((round(f, 2), d))):
        bar = _progress_tqdm()(total=4, disable=True)
        for _ in range(4):
            bar.update(1)
        bar.close()
    assert [f for f, _ in seen] == [0.25, 0.5, 0.75, 1.0]
    assert seen[-1][1] == "downloading (4/4)"


def test_fit_without_table_or_weights_is_unknown():
    from opusclip_ui.models.cards import parse_card
    from opusclip_ui.models.fit import hardware_fit

    card = parse_card({"model_type": "text-encoder", "model_path": "org/m", "device": "auto"})
    snap = {"ram": {"available_mb": 4096}, "gpu": {"devices": []}}
    assert hardware_fit(card, snap)["verdict"] == "unknown"
    assert hardware_fit(card, snap, weights_gb=1.0)["verdict"] == "fits"
    assert hardware_fit(card, snap, weights_gb=10.0)["verdict"] == "does not fit"
