"""Generate tab: a prompt, a duration and a quality become a video that plays in the browser.

Progress per denoising step with an ETA, a Cancel button that stops at the next step (nothing is
saved), a warning toast for every memory-saving step the run had to take, and this session's
history: each video with its settings, a download, and "Reuse these settings".

API: ``/generate`` (model, prompt, duration, quality, seed, negative prompt, steps, guidance,
long mode) -> (video, summary, sidecar, download, history). GPU work shares the ``gpu``
concurrency id with the Models tab's loads.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import gradio as gr

from opusclip_ui import notify
from opusclip_ui.errors import InvalidRequestError
from opusclip_ui.generate.request import MAX_DURATION_S, MIN_DURATION_S, QUALITIES
from opusclip_ui.log import setup_logging

from .guard import guarded

__all__ = ["create_ui", "create_event_handlers", "get_service", "summary_markdown", "history_items",
           "reuse_values"]

_log = setup_logging("ui.generate")


def get_service(services: Any):
    """The app's ``GenerateService``, built once by ``build_services`` (shares the model manager)."""
    return services.generate


class _Cancels:
    """The cancel tokens of each session's running generations (one session may run several)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, set[notify.CancelToken]] = {}

    def start(self, key: str) -> notify.CancelToken:
        token = notify.CancelToken()
        with self._lock:
            self._tokens.setdefault(key, set()).add(token)
        return token

    def cancel(self, key: str) -> bool:
        """Cancel every running job of this session; False when it has none."""
        with self._lock:
            tokens = list(self._tokens.get(key, ()))
        for token in tokens:
            token.cancel()
        return bool(tokens)

    def done(self, key: str, token: notify.CancelToken) -> None:
        with self._lock:
            tokens = self._tokens.get(key)
            if tokens is not None:
                tokens.discard(token)
                if not tokens:
                    del self._tokens[key]


def _session(request: gr.Request | None) -> str:
    return (getattr(request, "session_hash", None) or "anonymous") if request is not None else "anonymous"


def summary_markdown(sidecar: dict[str, Any]) -> str:
    used, asked = sidecar["used"]["plan"], sidecar["asked"]
    out = sidecar["output"]
    lines = [f"**Seed {sidecar['seed']}**" + (" (random)" if sidecar.get("seed_was_random") else "")
             + f" · {sidecar['model']['name']} · {used['quality']} · {out['width']}x{out['height']} · "
             f"{out['frames']} frames at {out['fps']:g} fps ({out['duration_s']:.2f} s) · "
             f"{sidecar['timings_s']['total']:.1f} s"]
    if used["quality"] != asked["quality"]:
        lines.append(f"Asked for **{asked['quality']}**, made at **{used['quality']}** to fit in memory.")
    if sidecar["segments"]["count"] > 1:
        lines.append(f"Made as {sidecar['segments']['count']} segments joined with hard cuts.")
    if sidecar["rungs"]:
        lines.append("Memory-saving steps taken: " + " → ".join(r["rung"] for r in sidecar["rungs"]))
    if sidecar["model"].get("random_weights"):
        lines.append("⚠️ _random weights - output is noise; for trying the pipeline_")
    return "\n\n".join(lines)


def history_items(history: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Gallery tiles: each video's poster picture (the video itself if it has none)."""
    items = []
    for h in history:
        poster = Path(h["video_path"]).with_suffix(".jpg")
        items.append((str(poster) if poster.exists() else h["video_path"],
                      f"{h['seed']} · {h['used']['plan']['quality']} · "
                      f"{h['output']['duration_s']:.1f}s · {h['prompt'][:40]}"))
    return items


def reuse_values(item: dict[str, Any] | None) -> tuple:
    """The form values that remake a history entry: what was asked for, with the seed it used."""
    if not item:
        raise InvalidRequestError("No video is selected.", "Click a video in the history first.")
    asked = item["asked"]
    return (item["model"]["name"], item["prompt"], asked["duration_s"], asked["quality"],
            item["seed"], item.get("negative_prompt") or "", asked.get("steps"),
            asked.get("guidance"), asked.get("long_mode") or "segments")


def _settings_markdown(item: dict[str, Any]) -> str:
    asked = item["asked"]
    return (f"**Prompt:** {item['prompt']}\n\n"
            + (f"**Negative:** {item['negative_prompt']}\n\n" if item.get("negative_prompt") else "")
            + f"**Model:** {item['model']['name']} · **seed** {item['seed']} · **quality** "
            f"{asked['quality']} (used {item['used']['plan']['quality']}) · **duration** "
            f"{asked['duration_s']:g} s · **steps** {item['used']['plan']['steps']} · **guidance** "
            f"{item['used']['plan']['guidance']:g} · created {item['created_utc']}")


def _preset_text(svc: Any, model: str | None, quality: str | None) -> str:
    if not model or quality not in QUALITIES:
        return ""
    card = svc.card(model)
    p = svc.presets(model)[quality]
    text = (f"{quality}: {p['width']}x{p['height']}, up to {p['frames']} frames per pass at "
            f"{p['fps']:g} fps, {p['steps']} steps, guidance {p['guidance']:g}")
    if card.warning:
        text += f"  \n⚠️ _{card.warning}_"
    return text


def create_ui(services: Any) -> dict[str, Any]:
    svc = get_service(services)
    names = svc.model_names()
    h: dict[str, Any] = {}
    gr.Markdown("Type a prompt, pick a duration and a quality, and generate. If memory runs out the "
                "run steps down (and says so) instead of failing.")
    with gr.Row():
        with gr.Column(scale=3):
            h["prompt"] = gr.Textbox(label="Prompt", lines=3, max_lines=8,
                                     placeholder="a red kite over a stormy sea, cinematic")
            with gr.Row():
                h["model"] = gr.Dropdown(choices=names, value=names[0] if names else None,
                                         label="Model", allow_custom_value=False)
                h["quality"] = gr.Radio(choices=list(QUALITIES), value="low", label="Quality")
            with gr.Row():
                h["duration"] = gr.Slider(MIN_DURATION_S, MAX_DURATION_S, value=2, step=0.5,
                                          label="Duration (seconds)")
                # Gradio's Number sends 0 for an empty box, so "random" needs its own value
                h["seed"] = gr.Number(value=-1, precision=0, minimum=-1, label="Seed (-1 = random)")
            with gr.Accordion("Advanced", open=False):
                h["negative"] = gr.Textbox(label="Negative prompt", lines=2)
                with gr.Row():
                    h["steps"] = gr.Number(value=None, precision=0, minimum=1, maximum=200,
                                           label="Steps (empty = preset)")
                    h["guidance"] = gr.Number(value=None, minimum=0, maximum=30,
                                              label="Guidance (empty = preset)")
                h["long_mode"] = gr.Radio(choices=[("consecutive segments", "segments"),
                                                   ("clamp to one pass", "clamp")],
                                          value="segments", label="Longer than one pass")
            h["preset_info"] = gr.Markdown(_preset_text(svc, names[0] if names else None, "low"))
            with gr.Row():
                h["run"] = gr.Button("Generate", variant="primary")
                h["cancel"] = gr.Button("Cancel", variant="stop")
        with gr.Column(scale=3):
            h["video"] = gr.Video(label="Result", autoplay=True, interactive=False)
            h["summary"] = gr.Markdown()
            h["download"] = gr.File(label="Download", interactive=False)
            with gr.Accordion("Sidecar (everything needed to reproduce it)", open=False):
                h["sidecar"] = gr.JSON()
    gr.Markdown("### This session's videos")
    h["history"] = gr.Gallery(label="History", columns=6, height=240, allow_preview=True,
                              preview=False, object_fit="contain")
    with gr.Row():
        h["picked_info"] = gr.Markdown()
    with gr.Row():
        h["reuse"] = gr.Button("Reuse these settings")
        h["picked_file"] = gr.File(label="Download this one", interactive=False)
    h["history_state"] = gr.State([])
    h["picked"] = gr.State(None)
    return h


def create_event_handlers(services: Any, h: dict[str, Any]) -> None:
    svc = get_service(services)
    cancels = _Cancels()

    @guarded(services, "generate.preset")
    def preset_info(model: str | None, quality: str | None) -> str:
        return _preset_text(svc, model, quality)

    @guarded(services, "generate.run")
    def generate(model: str | None, prompt: str, duration: float, quality: str, seed: float | None,
            negative: str | None, steps: float | None, guidance: float | None, long_mode: str,
            request: gr.Request, progress=gr.Progress()):
        """Generate a video (MP4) from a text prompt with a text-to-video model card.

        Args:
            model: model card name, e.g. "tiny-random-t2v" (works offline, random weights).
            prompt: what the video shows.
            duration: seconds, 1 to 60.
            quality: "low", "medium" or "high".
            seed: an integer, or -1 for a random seed (always reported).
            negative: what to avoid (optional).
            steps: denoising steps (optional; the preset's otherwise).
            guidance: guidance scale (optional; the preset's otherwise).
            long_mode: "segments" (join passes) or "clamp" (one pass) for long durations.
        """
        if not model:
            raise InvalidRequestError("No model is chosen.", "Pick a text-to-video model.")
        key = _session(request)
        token = cancels.start(key)

        def on_progress(fraction: float, desc: str) -> None:
            progress(fraction, desc=desc or None)

        try:
            # our own sink, so the cancel token reaches the run (warnings still become toasts)
            if seed is not None and seed == -1:
                seed = None  # random, and reported
            with notify.sink(on_progress=on_progress, cancel=token):
                result = svc.run(model, prompt, duration, quality, seed, negative, steps, guidance,
                                 long_mode, session_id=key)
        finally:
            cancels.done(key, token)
        history = svc.history(key)
        path = str(result.video_path)
        return (path, summary_markdown(result.sidecar), result.sidecar, path,
                history_items(history), history)

    @guarded(services, "generate.cancel")
    def cancel(request: gr.Request) -> None:
        if cancels.cancel(_session(request)):
            gr.Info("Stopping at the next step…")
        else:
            gr.Info("Nothing is running.")

    def on_page_closed(request: gr.Request) -> None:
        # the user closed the tab: stop that session's run at its next step (nothing is saved)
        if cancels.cancel(_session(request)):
            _log.info("a session closed its page mid-run; the run was cancelled")

    from gradio.context import Context
    root = Context.root_block
    if root is not None:
        root.unload(on_page_closed)

    def pick(history: list[dict[str, Any]], evt: gr.SelectData):
        if not history or evt.index is None or evt.index >= len(history):
            return None, "", None
        item = history[evt.index]
        return item, _settings_markdown(item), item["video_path"]

    @guarded(services, "generate.reuse")
    def reuse(item: dict[str, Any] | None):
        return reuse_values(item)

    for trigger in (h["model"].change, h["quality"].change):
        trigger(preset_info, inputs=[h["model"], h["quality"]], outputs=[h["preset_info"]],
                api_visibility="private")
    h["run"].click(generate, inputs=[h["model"], h["prompt"], h["duration"], h["quality"], h["seed"],
                                h["negative"], h["steps"], h["guidance"], h["long_mode"]],
                   outputs=[h["video"], h["summary"], h["sidecar"], h["download"], h["history"],
                            h["history_state"]],
                   api_name="generate", concurrency_id="gpu",
                   concurrency_limit=services.settings.gpu_concurrency)
    h["cancel"].click(cancel, inputs=None, outputs=None, queue=False, api_name="cancel_generate")
    h["history"].select(pick, inputs=[h["history_state"]],
                        outputs=[h["picked"], h["picked_info"], h["picked_file"]],
                        api_visibility="private")
    h["reuse"].click(reuse, inputs=[h["picked"]],
                     outputs=[h["model"], h["prompt"], h["duration"], h["quality"], h["seed"],
                              h["negative"], h["steps"], h["guidance"], h["long_mode"]],
                     api_visibility="private")
