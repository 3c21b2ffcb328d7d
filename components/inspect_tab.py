"""Inspect tab: drop a video (or paste a link) and see what it is, its thumbnails and scene cuts.

Uploads arrive through a ``gr.File`` (``gr.Video`` as an *input* would run ffprobe/ffmpeg on the
upload before our checks, with no timeout); the video is validated and probed first, and only then
shown in a ``gr.Video`` preview. All work goes through ``InspectService`` (``opusclip_ui.video``).
"""
from __future__ import annotations

import threading
from typing import Any

import gradio as gr

from opusclip_ui import notify
from opusclip_ui.errors import InvalidRequestError
from opusclip_ui.video.probe import VideoInfo
from opusclip_ui.video.scenes import DEFAULT_MIN_SCENE_LEN, DEFAULT_THRESHOLD
from opusclip_ui.video.service import DEFAULT_THUMBNAILS, InspectService

from .guard import guarded

__all__ = ["create_ui", "create_event_handlers", "properties_markdown", "inspect_service"]

SCENE_HEADERS = ["#", "start (s)", "end (s)", "length (s)", "start frame", "end frame"]


def inspect_service(services: Any) -> InspectService:
    """The app's ``InspectService``, built by ``build_services``."""
    return services.inspect


# --- formatting -------------------------------------------------------------------------------

def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    m, s = divmod(float(seconds), 60)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{s:06.3f}" if h else f"{m:02d}:{s:06.3f}"


def _size(n: int | None) -> str:
    if not n:
        return "unknown"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return str(n)


def _rate(bps: int | None) -> str:
    return f"{bps / 1000:,.0f} kb/s" if bps else "unknown"


def properties_markdown(info: VideoInfo) -> str:
    """The properties table the user sees."""
    fps = f"{info.fps:g}" + (" (variable frame rate: average)" if info.vfr else "")
    frames = f"{info.frame_count:,}" + (" (exact)" if info.frame_count_exact else " (estimated)")
    dw, dh = info.display_size
    size = f"{info.width}×{info.height}" + (f" (shown as {dw}×{dh})" if info.rotation else "")
    if info.audio:
        a = info.audio
        audio = f"{a['codec']}, {a['channels']} ch, {a['sample_rate']:,} Hz, {_rate(a['bit_rate'])}"
    else:
        audio = "no audio"
    rows = [
        ("File", info.file_name.replace("|", "\\|")), ("Size", _size(info.file_size)),
        ("Container", f"{info.format} ({info.format_long})"), ("Duration", _clock(info.duration)),
        ("Frame rate", fps), ("Frames", frames), ("Resolution", size),
        ("Display aspect", info.display_aspect), ("Rotation", f"{info.rotation}°"),
        ("Video codec", info.video_codec), ("Pixel format", info.pix_fmt or "unknown"),
        ("Bitrate", _rate(info.bit_rate)), ("Audio", audio),
    ]
    lines = ["| Property | Value |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows]]
    if info.warnings:
        lines += ["", *[f"⚠️ {w}" for w in info.warnings]]
    return "\n".join(lines)


def _public(info: VideoInfo) -> dict[str, Any]:
    """Properties for the browser: the file's name, never a path on the server."""
    d = info.to_dict()
    d["file_path"] = info.file_name
    return d


def _scene_rows(result) -> list[list[Any]]:
    return [[s.index, s.start, s.end, s.length, s.start_frame, s.end_frame] for s in result.scenes]


# --- layout -----------------------------------------------------------------------------------

def create_ui(services: Any) -> dict[str, Any]:
    inspect_service(services)
    h: dict[str, Any] = {}
    h["state"] = gr.State(None)  # per session: job id, source path, info, thumbnail times
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            h["upload"] = gr.File(label="Video file (any container: the content decides)",
                                  file_count="single", type="filepath")
            h["url"] = gr.Textbox(label="…or an http(s) link to a video file",
                                  placeholder="https://example.com/clip.mp4", max_lines=1)
            h["n_thumbs"] = gr.Slider(1, 48, value=DEFAULT_THUMBNAILS, step=1, label="Thumbnails")
            h["inspect"] = gr.Button("Inspect", variant="primary")
        with gr.Column(scale=2):
            h["preview"] = gr.Video(label="Preview", interactive=False, height=360)
            h["properties"] = gr.Markdown("_Drop a video or paste a link to see its properties._")
    h["gallery"] = gr.Gallery(label="Thumbnails (click one for its time)", columns=6,
                              height="auto", allow_preview=False, interactive=False,
                              fit_columns=False)
    h["thumb_time"] = gr.Markdown()
    with gr.Accordion("Scene cuts", open=False):
        with gr.Row():
            h["threshold"] = gr.Slider(1, 100, value=DEFAULT_THRESHOLD, step=0.5,
                                       label="Threshold (lower finds more cuts)")
            h["downscale"] = gr.Slider(0, 8, value=0, step=1,
                                       label="Downscale factor (0 = automatic)")
            h["min_len"] = gr.Slider(1, 120, value=DEFAULT_MIN_SCENE_LEN, step=1,
                                     label="Minimum scene length (frames)")
        with gr.Row():
            h["find_scenes"] = gr.Button("Find scene cuts", variant="primary")
            h["cancel_scenes"] = gr.Button("Cancel", variant="stop")
        h["scenes_table"] = gr.Dataframe(headers=SCENE_HEADERS, interactive=False,
                                         label="Scenes")
        h["scenes_gallery"] = gr.Gallery(label="One frame per scene", columns=8, height="auto",
                                         allow_preview=False, interactive=False,
                                         fit_columns=False)
        h["scenes_state"] = gr.State(None)
        with gr.Row():
            h["scenes_csv"] = gr.Button("Export scenes as CSV")
            h["scenes_json"] = gr.Button("Export scenes as JSON")
        h["scenes_file"] = gr.File(label="Scene list", interactive=False)
    with gr.Accordion("Export properties", open=False):
        with gr.Row():
            h["props_json"] = gr.Button("Export as JSON")
            h["props_yaml"] = gr.Button("Export as YAML")
        h["props_file"] = gr.File(label="Properties file", interactive=False)
        h["raw"] = gr.JSON(label="Properties (JSON)")
    return h


# --- handlers ---------------------------------------------------------------------------------

class _Cancels:
    """Cancel tokens of running scene jobs, by job id (a token per session's current job)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, notify.CancelToken] = {}

    def start(self, job: str) -> notify.CancelToken:
        with self._lock:
            self._tokens[job] = token = notify.CancelToken()
            return token

    def cancel(self, job: str) -> bool:
        with self._lock:
            token = self._tokens.get(job)
        if token is None:
            return False
        token.cancel()
        return True

    def done(self, job: str) -> None:
        with self._lock:
            self._tokens.pop(job, None)


def _need(state: dict | None) -> dict:
    if not state:
        raise InvalidRequestError("There is no inspected video yet.",
                                  "Upload a video or paste a link, then press Inspect.")
    return state


def create_event_handlers(services: Any, h: dict[str, Any]) -> None:
    svc = inspect_service(services)
    cancels = _Cancels()

    @guarded(services, "inspect.inspect")
    def run_inspect(file_path: str | None, url: str | None, n_thumbs: float,
                    progress=gr.Progress()):
        # A generator: the properties show as soon as the probe is done (about 0.1 s), then the
        # thumbnail strip, then the preview. API callers get the final, complete tuple.
        source = file_path or (url or "").strip()
        if not source:
            raise InvalidRequestError("There is nothing to inspect yet.",
                                      "Upload a video file or paste an http(s) link.")
        for result in svc.inspect_steps(source, thumbnails=int(n_thumbs)):
            info = result.info
            state = {"job": result.job_id, "source": str(result.source), "info": info,
                     "times": [t.time for t in result.thumbnails]}
            gallery = [(t.path, _clock(t.time)) for t in result.thumbnails]
            yield (str(result.preview) if result.preview else None, properties_markdown(info),
                   gallery, _public(info), state, "", None, None, None)

    outputs = [h["preview"], h["properties"], h["gallery"], h["raw"], h["state"],
               h["thumb_time"], h["scenes_table"], h["scenes_gallery"], h["scenes_state"]]
    inputs = [h["upload"], h["url"], h["n_thumbs"]]
    # progress shows on the strip only, so the properties stay readable while thumbnails load
    busy = {"show_progress_on": [h["gallery"]]}
    h["inspect"].click(run_inspect, inputs=inputs, outputs=outputs, api_name="inspect", **busy)
    h["upload"].upload(run_inspect, inputs=inputs, outputs=outputs, api_visibility="private",
                       **busy)
    h["url"].submit(run_inspect, inputs=inputs, outputs=outputs, api_visibility="private", **busy)

    def show_time(state: dict | None, evt: gr.SelectData) -> str:
        if not state or evt.index is None or evt.index >= len(state["times"]):
            return ""
        t = state["times"][evt.index]
        info: VideoInfo = state["info"]
        return (f"Thumbnail {evt.index + 1} of {len(state['times'])}: **{_clock(t)}** "
                f"({t:.3f} s, about frame {int(round(t * info.fps)):,})")

    h["gallery"].select(show_time, inputs=[h["state"]], outputs=[h["thumb_time"]],
                        api_visibility="private")

    @guarded(services, "inspect.scenes")
    def run_scenes(state: dict | None, threshold: float, downscale: float, min_len: float,
                   progress=gr.Progress()):
        state = _need(state)
        token = cancels.start(state["job"])

        def on_progress(fraction: float, desc: str) -> None:
            progress(fraction, desc=desc or None)

        try:
            # our own sink, so the job's cancel token reaches the worker
            with notify.sink(on_warn=lambda m: gr.Warning(m, duration=15),
                             on_progress=on_progress, cancel=token):
                result = svc.scenes(state["source"], state["info"], threshold=float(threshold),
                                    downscale=int(downscale), min_scene_len=int(min_len),
                                    job_id=state["job"])
        finally:
            cancels.done(state["job"])
        gallery = [(s.thumbnail, f"#{s.index} {_clock(s.start)}") for s in result.scenes
                   if s.thumbnail]
        return _scene_rows(result), gallery, result

    h["find_scenes"].click(run_scenes,
                           inputs=[h["state"], h["threshold"], h["downscale"], h["min_len"]],
                           outputs=[h["scenes_table"], h["scenes_gallery"], h["scenes_state"]],
                           api_name="scenes")

    @guarded(services, "inspect.cancel")
    def cancel_scenes(state: dict | None) -> None:
        if state and cancels.cancel(state["job"]):
            gr.Info("Stopping the scene search…")

    h["cancel_scenes"].click(cancel_scenes, inputs=[h["state"]], outputs=None, queue=False,
                             api_visibility="private")

    def _export_scenes(fmt: str):
        @guarded(services, f"inspect.export_scenes_{fmt}")
        def export(state: dict | None, result) -> str:
            state = _need(state)
            if result is None:
                raise InvalidRequestError("There are no scene cuts to export yet.",
                                          "Press “Find scene cuts” first.")
            return str(svc.export_scenes(result, state["info"], fmt, state["job"]))
        return export

    for fmt in ("csv", "json"):
        h[f"scenes_{fmt}"].click(_export_scenes(fmt), inputs=[h["state"], h["scenes_state"]],
                                 outputs=[h["scenes_file"]], api_visibility="private")

    def _export_props(fmt: str):
        @guarded(services, f"inspect.export_properties_{fmt}")
        def export(state: dict | None) -> str:
            state = _need(state)
            return str(svc.export_properties(state["info"], fmt, state["job"]))
        return export

    for fmt in ("json", "yaml"):
        h[f"props_{fmt}"].click(_export_props(fmt), inputs=[h["state"]],
                                outputs=[h["props_file"]], api_visibility="private")
