"""Generation end to end on the tiny random Wan pipeline: a real MP4, the sidecar, cancel, the OOM
ladder rung by rung (injected with ``Settings.inject_oom``), pre-flight refusals, concurrency."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from opusclip_ui import notify
from opusclip_ui.errors import Cancelled, DiskFullError, OutOfMemoryError
from opusclip_ui.generate import LocalPipelineSource, generate, validate_request
from opusclip_ui.generate.outputs import GENERATED_DIR

pytest_plugins = ["tests.models_fixtures"]


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    from opusclip_ui.models.tiny import ensure_tiny_t2v

    return ensure_tiny_t2v(tmp_path_factory.mktemp("gen-cache"))


@pytest.fixture(scope="module")
def card():
    from opusclip_ui.models.cards import CARDS_DIR, load_card

    return load_card(CARDS_DIR / "tiny-random-t2v.yaml")


class CountingSource(LocalPipelineSource):
    """A real reload source that counts transformer and VAE-decode calls on every pipeline it makes."""

    def __init__(self, path):
        super().__init__(path)
        self.calls = {"transformer": 0, "decode": 0, "text_encoder": 0, "loads": []}

    def wrap(self, pipe):
        tf, vae = pipe.transformer, pipe.vae
        orig_fwd, orig_decode = tf.forward, vae.decode

        def forward(*a, **k):
            self.calls["transformer"] += 1
            return orig_fwd(*a, **k)

        def decode(*a, **k):
            self.calls["decode"] += 1
            return orig_decode(*a, **k)

        te = pipe.text_encoder
        orig_te = te.forward

        def te_forward(*a, **k):
            self.calls["text_encoder"] += 1
            return orig_te(*a, **k)

        tf.forward = forward
        vae.decode = decode
        te.forward = te_forward
        return pipe

    def load(self, *, dtype, device, offload):
        self.calls["loads"].append((dtype, device, offload))
        return self.wrap(super().load(dtype=dtype, device=device, offload=offload))


@pytest.fixture
def source(tiny_path):
    return CountingSource(tiny_path)


@pytest.fixture
def pipe(source):
    return source.wrap(LocalPipelineSource(source.path).load(dtype="fp32", device="cpu", offload=None))


def _settings(tmp_path, inject=None):
    from opusclip_ui.settings import Settings

    return Settings(data_dir=tmp_path / "data", inject_oom=inject)


def _run(tmp_path, pipe, card, source=None, inject=None, duration=1, quality="low", seed=5, **kw):
    req = validate_request("a red kite over the sea", duration, quality, seed, **kw)
    return generate(req, pipe=pipe, card=card, settings=_settings(tmp_path, inject),
                    session_id="s1", source=source)


def _decode(path: Path):
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path))
    meta = next(gen)
    return meta, [np.frombuffer(f, np.uint8) for f in gen]


def _files(tmp_path) -> list[Path]:
    root = tmp_path / "data" / "outputs" / GENERATED_DIR
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_end_to_end_mp4_and_sidecar(tmp_path, pipe, card, source):
    steps_seen = []
    with notify.sink(on_progress=lambda f, d: steps_seen.append((f, d))):
        res = _run(tmp_path, pipe, card, source, duration=1, quality="low", seed=5,
                   negative_prompt="blurry")
    # low: 32x32 at 8 fps, 5 frames per pass -> 8 frames as segments of 5 + 3
    meta, frames = _decode(res.video_path)
    assert len(frames) == 8 and tuple(meta["size"]) == (32, 32) and meta["fps"] == 8
    assert frames[0].size == 32 * 32 * 3 and len({f.tobytes() for f in frames}) > 1  # real, varying
    side = json.loads(res.sidecar_path.read_text())
    assert side == res.sidecar
    assert side["prompt"] == "a red kite over the sea" and side["negative_prompt"] == "blurry"
    assert side["seed"] == 5 and side["seed_was_random"] is False
    assert side["model"]["name"] == "tiny-random-t2v" and side["model"]["random_weights"] is True
    assert side["asked"]["quality"] == "low" and side["used"]["plan"]["quality"] == "low"
    assert side["segments"]["frames"] == [5, 3] and side["segments"]["seeds"] == [5, 6]
    assert side["output"]["frames"] == 8 and side["output"]["duration_s"] == pytest.approx(1.0, abs=0.07)
    assert side["rungs"] == [] and side["final_rung"] == "full"
    assert set(side["timings_s"]) >= {"denoise", "decode", "encode", "total"}
    assert side["peak_memory"]["peak_mb"] > 0
    assert {"torch", "diffusers", "ffmpeg"} <= set(side["versions"])
    assert res.video_path.name.endswith(".mp4") and res.sidecar_path.suffix == ".json"
    # progress per step with an ETA, ending at 1.0
    assert any("step 1/2" in d for _, d in steps_seen) and any("ETA" in d for _, d in steps_seen)
    assert steps_seen[-1][0] == 1.0
    assert source.calls["transformer"] == 2 * 2  # 2 segments x 2 steps, guidance 1 -> no CFG pass
    assert source.calls["text_encoder"] == 1     # the prompt is encoded once, not per segment


def test_same_seed_reproduces_the_video(tmp_path, pipe, card):
    a = _run(tmp_path / "a", pipe, card, seed=11)
    b = _run(tmp_path / "b", pipe, card, seed=11)
    c = _run(tmp_path / "c", pipe, card, seed=12)
    fa, fb, fc = (_decode(r.video_path)[1] for r in (a, b, c))
    assert [f.tobytes() for f in fa] == [f.tobytes() for f in fb]
    assert [f.tobytes() for f in fa] != [f.tobytes() for f in fc]


def test_random_seed_is_reported(tmp_path, pipe, card):
    res = _run(tmp_path, pipe, card, seed=None)
    assert res.sidecar["seed_was_random"] is True and res.sidecar["seed"] == res.seed


def test_cancel_stops_at_the_next_step_and_leaves_nothing(tmp_path, pipe, card, source):
    token = notify.CancelToken()

    def on_progress(fraction, desc):
        if "step 1/" in desc:
            token.cancel()

    with notify.sink(on_progress=on_progress, cancel=token):
        with pytest.raises(Cancelled):
            _run(tmp_path, pipe, card, source, duration=2, quality="medium")
    assert source.calls["transformer"] == 1  # stopped right after the first step
    assert source.calls["decode"] == 0
    assert [p for p in _files(tmp_path) if p.suffix in (".mp4", ".json") or p.name.startswith(".")] == []


def test_oom_in_denoise_cleans_up_and_retries_once(tmp_path, pipe, card, source):
    with notify.collect_warnings() as warned:
        res = _run(tmp_path, pipe, card, source, inject="generate.denoise:1")
    assert [r.rung for r in res.rungs] == ["retry"]
    assert any("retried once" in w for w in warned)
    assert res.sidecar["final_rung"] == "retry" and len(_decode(res.video_path)[1]) == 8


def test_oom_in_decode_keeps_the_latents_and_tiles(tmp_path, pipe, card, source):
    with notify.collect_warnings() as warned:
        res = _run(tmp_path, pipe, card, source, inject="generate.decode:1", duration=0.5 * 2)
    assert [(r.rung, r.stage) for r in res.rungs] == [("vae_tiling", "decode")]
    assert any("tiling" in w for w in warned)
    # 2 segments x 2 steps: the denoising ran exactly once per segment, nothing was redone
    assert source.calls["transformer"] == 4
    assert source.calls["decode"] == 2
    assert res.sidecar["used"]["vae_tiling"] is True
    assert pipe.vae.use_tiling is False  # the caller's pipeline is left as it was


def test_second_decode_oom_goes_half_precision_without_denoising_again(tmp_path, pipe, card, source):
    res = _run(tmp_path, pipe, card, source, inject="generate.decode:2")
    assert [r.rung for r in res.rungs] == ["vae_tiling", "half_precision"]
    assert source.calls["loads"] == [("bf16", "cpu", None)]
    assert source.calls["transformer"] == 4
    assert res.sidecar["used"]["dtype"] == "bf16"
    assert len(_decode(res.video_path)[1]) == 8


def test_second_denoise_oom_goes_half_precision(tmp_path, pipe, card, source):
    with notify.collect_warnings() as warned:
        res = _run(tmp_path, pipe, card, source, inject="generate.denoise:2")
    assert [r.rung for r in res.rungs] == ["retry", "half_precision"]
    assert any("half precision" in w for w in warned)
    assert res.sidecar["used"]["dtype"] == "bf16"


def test_half_precision_black_frames_are_decoded_again_in_fp32(tmp_path, pipe, card, source, monkeypatch):
    """A half-precision VAE that returns NaN (as fp16 VAEs do): decoded again with an fp32 VAE."""
    import torch

    real_load = source.load

    def load_with_nan_vae(**kw):
        p = real_load(**kw)
        real_decode = p.vae.decode

        def decode(z, *a, **k):
            out = real_decode(z, *a, **k)
            if p.vae.dtype != torch.float32:
                return (torch.full_like(out[0], float("nan")),)
            return out

        p.vae.decode = decode
        return p

    monkeypatch.setattr(source, "load", load_with_nan_vae)
    with notify.collect_warnings() as warned:
        res = _run(tmp_path, pipe, card, source, inject="generate.denoise:2", duration=1)
    assert [r.rung for r in res.rungs] == ["retry", "half_precision", "fp32_vae"]
    assert any("NaN" in w for w in warned)
    assert res.sidecar["used"]["vae_fp32"] is True
    _, frames = _decode(res.video_path)
    assert len(frames) == 8 and max(f.mean() for f in frames) > 5  # not black


def test_offload_rungs_are_skipped_on_cpu_and_quality_drops(tmp_path, pipe, card, source):
    with notify.collect_warnings() as warned:
        res = _run(tmp_path, pipe, card, source, inject="generate.denoise:3", quality="high", duration=1)
    assert [r.rung for r in res.rungs] == ["retry", "half_precision", "lower_quality"]
    assert res.sidecar["used"]["plan"]["quality"] == "medium"
    assert res.sidecar["asked"]["quality"] == "high"
    assert any("lowered the quality to medium" in w for w in warned)
    assert ("bf16", "cpu", "model") not in source.calls["loads"]
    meta, frames = _decode(res.video_path)
    assert tuple(meta["size"]) == (48, 48) and len(frames) == 16  # still 1 s at 16 fps


def test_every_rung_failing_names_the_smallest_setting(tmp_path, pipe, card, source):
    with pytest.raises(OutOfMemoryError) as ei:
        _run(tmp_path, pipe, card, source, inject="generate.denoise:99", quality="medium")
    text = ei.value.friendly()
    assert "quality low and duration 1 s (32x32)" in text
    assert [p for p in _files(tmp_path) if p.suffix == ".mp4"] == []


def test_in_place_half_precision_without_a_source(tmp_path, card, tiny_path):
    pipe = LocalPipelineSource(tiny_path).load(dtype="fp32", device="cpu", offload=None)
    res = _run(tmp_path, pipe, card, None, inject="generate.denoise:2")
    assert [r.rung for r in res.rungs] == ["retry", "half_precision"]
    assert "converted in place" in res.rungs[-1].detail


def test_disk_full_in_preflight_refuses_before_denoising(tmp_path, pipe, card, source, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 4096, 4096))
    with pytest.raises(DiskFullError):
        _run(tmp_path, pipe, card, source)
    assert source.calls["transformer"] == 0


def test_too_little_ram_for_a_cpu_run_is_refused_before_starting(tmp_path, pipe, card, source, monkeypatch):
    from opusclip_ui.generate import estimate

    monkeypatch.setattr(estimate, "free_memory_mb", lambda device, snap: 1.0)
    with pytest.raises(OutOfMemoryError) as ei:
        _run(tmp_path, pipe, card, source)
    assert "was not started" in ei.value.user_message and "quality low" in ei.value.friendly()
    assert source.calls["transformer"] == 0


def test_preflight_offers_the_lower_preset_that_fits(tmp_path, pipe, card, source, monkeypatch):
    from opusclip_ui.generate import estimate

    # at 900 B per fp32 pixel-frame: high (64x64x17) and medium (48x48x9) do not fit in 8 MB even
    # at half precision, low (32x32x5) does
    monkeypatch.setattr(estimate, "free_memory_mb", lambda device, snap: 8.0)
    with pytest.raises(OutOfMemoryError) as ei:
        _run(tmp_path, pipe, card, source, quality="high")
    assert "quality low is estimated to fit" in ei.value.friendly()
    assert source.calls["transformer"] == 0


def test_two_concurrent_sessions_get_separate_outputs(tmp_path, pipe, card):
    from opusclip_ui.settings import Settings

    settings = Settings(data_dir=tmp_path / "data")
    results, errors = {}, []

    def job(session, seed):
        try:
            req = validate_request(f"prompt for {session}", 1, "low", seed)
            results[session] = generate(req, pipe=pipe, card=card, settings=settings, session_id=session)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=job, args=(s, i)) for i, s in enumerate(("alice", "bob"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    a, b = results["alice"].video_path, results["bob"].video_path
    assert a.parent != b.parent and a.is_file() and b.is_file()
    assert results["alice"].sidecar["prompt"] == "prompt for alice"
    assert results["bob"].sidecar["prompt"] == "prompt for bob"
    assert len(_decode(a)[1]) == len(_decode(b)[1]) == 8


def test_running_out_of_memory_while_reloading_moves_on_and_ends_clearly(tmp_path, pipe, card, source,
                                                                        monkeypatch):
    import torch

    def load_oom(**kw):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")

    monkeypatch.setattr(source, "load", load_oom)
    with notify.collect_warnings() as warned:
        with pytest.raises(OutOfMemoryError) as ei:
            _run(tmp_path, pipe, card, source, inject="generate.denoise:2")
    assert any("even to load the model for the `half_precision` step" in w for w in warned)
    assert "smallest setting" in ei.value.friendly()


def test_service_holds_the_model_and_leaves_the_managers_copy_alone(manager, model_settings):
    from opusclip_ui.generate.service import GenerateService

    settings = model_settings.model_copy(update={"inject_oom": "generate.denoise:2"})
    svc = GenerateService(settings, models=manager)
    res = svc.run("tiny-random-t2v", "a cat", 1, "low", 3, session_id="sess")
    assert [r.rung for r in res.rungs] == ["retry", "half_precision"]
    loaded = manager.get("tiny-random-t2v")
    assert loaded is not None and str(loaded.model.transformer.dtype) == "torch.float32"
    assert manager.loaded()["text-to-video"]["in_use"] == 0
    hist = svc.history("sess")
    assert len(hist) == 1 and hist[0]["seed"] == 3 and Path(hist[0]["video_path"]).is_file()
    assert svc.history("another-session") == []


def test_preflight_starts_at_half_precision_when_only_that_fits(tmp_path, pipe, card, source, monkeypatch):
    from opusclip_ui.generate import estimate

    # the tiny run needs a few MB at fp32 (weights + 900 B per pixel-frame); say only 3 MB are free
    monkeypatch.setattr(estimate, "free_memory_mb", lambda device, snap: 3.0)
    with notify.collect_warnings() as warned:
        res = _run(tmp_path, pipe, card, source)
    assert [(r.rung, r.stage) for r in res.rungs] == [("half_precision", "preflight")]
    assert res.sidecar["estimate"]["start_rung"] == "half_precision"
    assert any("half precision" in w for w in warned)
    assert source.calls["loads"] == [("bf16", "cpu", None)]


def test_measured_runs_calibrate_the_estimate(tmp_path, pipe, card):
    res = _run(tmp_path, pipe, card)
    assert res.sidecar["estimate"]["calibrated"] is False
    calib = json.loads((tmp_path / "data" / "cache" / "generate_calibration.json").read_text())
    entry = calib["tiny-random-t2v@cpu"]
    assert entry["runs"] == 1 and entry["seconds_per_mpf_step"] > 0
    res2 = _run(tmp_path, pipe, card)
    assert res2.sidecar["estimate"]["calibrated"] is True


def test_frames_match_a_bare_pipeline_call(tmp_path, pipe, card):
    """Our own decode (and the cached prompt encoding) give the frames diffusers' own call gives."""
    import torch

    from opusclip_ui.generate.encode import encode_mp4

    res = _run(tmp_path, pipe, card, duration=1, quality="low", seed=21, long_mode="clamp")
    assert res.sidecar["output"]["frames"] == 5
    bare = pipe("a red kite over the sea", height=32, width=32, num_frames=5, num_inference_steps=2,
                guidance_scale=1.0, generator=torch.Generator("cpu").manual_seed(21),
                output_type="np").frames[0]
    encode_mp4(bare, tmp_path / "bare.mp4", 8)
    ours = np.stack(_decode(res.video_path)[1]).astype(int)
    theirs = np.stack(_decode(tmp_path / "bare.mp4")[1]).astype(int)
    assert ours.shape == theirs.shape and np.abs(ours - theirs).max() <= 1


class RecordingAcceleratorSource(CountingSource):
    """For the ladder's decisions on an accelerator, on a machine without one: records what each rung
    asks the model manager for, and hands back a real pipeline on the CPU so the run still makes real
    frames. (The GPU itself is exercised by benchmarks/gpu_generate.py.)"""

    def load(self, *, dtype, device, offload):
        self.calls["loads"].append((dtype, device, offload))
        return self.wrap(LocalPipelineSource.load(self, dtype=dtype, device="cpu", offload=None))


@pytest.mark.parametrize("failures,expected", [
    (3, ["retry", "half_precision", "model_offload"]),
    (4, ["retry", "half_precision", "model_offload", "sequential_offload"]),
    (5, ["retry", "half_precision", "model_offload", "sequential_offload", "lower_quality"]),
    (6, ["retry", "half_precision", "model_offload", "sequential_offload", "lower_quality", "cpu"]),
])
def test_accelerator_ladder_order(tmp_path, card, tiny_path, failures, expected):
    src = RecordingAcceleratorSource(tiny_path)
    pipe = src.wrap(LocalPipelineSource(tiny_path).load(dtype="fp32", device="cpu", offload=None))
    req = validate_request("a red kite", 1, "low", 4)
    with notify.collect_warnings() as warned:
        res = generate(req, pipe=pipe, card=card, settings=_settings(tmp_path, f"generate.denoise:{failures}"),
                       session_id="s", source=src, device="cuda")
    assert [r.rung for r in res.rungs] == expected
    asked = src.calls["loads"]
    half = asked[0][0]
    assert half in ("bf16", "fp16") and asked[0] == (half, "cuda", None)
    if failures >= 3:
        assert asked[1] == (half, "cuda", "model")   # offload keeps half precision, fresh pipeline
    if failures >= 4:
        assert asked[2] == (half, "cuda", "sequential")
    if failures >= 6:
        assert asked[-1] == ("fp32", "cpu", None)
        assert any("running on the CPU instead" in w and "about" in w for w in warned)
        assert res.sidecar["used"]["device"] == "cpu"
    assert len(warned) >= len(expected) and res.sidecar["output"]["frames"] == 8


def test_ffmpeg_missing_after_denoising_is_clear_and_leaves_nothing(tmp_path, pipe, card, monkeypatch):
    from opusclip_ui.errors import ToolMissingError

    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "gone" / "ffmpeg"))
    with pytest.raises(ToolMissingError) as ei:
        _run(tmp_path, pipe, card)
    assert "ffmpeg" in ei.value.friendly()
    assert [p for p in _files(tmp_path) if p.suffix in (".mp4", ".json") or p.name.startswith(".")] == []


def test_disk_full_while_writing_the_sidecar_removes_the_video(tmp_path, pipe, card, monkeypatch):
    from opusclip_ui import safe_io

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safe_io, "save_json", full)
    with pytest.raises(DiskFullError):
        _run(tmp_path, pipe, card)
    assert [p for p in _files(tmp_path) if p.suffix in (".mp4", ".json")] == []


def test_sidecar_names_no_server_paths(tmp_path, pipe, card, source):
    """The sidecar is served to browsers next to the video: no absolute server paths in it."""
    import json

    result = _run(tmp_path, pipe, card, source)
    text = json.dumps(result.sidecar)
    assert str(tmp_path) not in text and "/cache/" not in text
