"""Models tab: pick a card, see if it is ready and fits, load/switch/unload it, try it out.

Handlers (all behind the guard, so every fallback rung is a ``gr.Warning``) and their API names:
``/list_models``, ``/model_details``, ``/load_model``, ``/unload_model``, ``/pull_model``, ``/embed``,
``/model_components``.
"""
from __future__ import annotations

from typing import Any

import gradio as gr

from opusclip_ui import notify

from .guard import guarded

__all__ = ["create_ui", "create_event_handlers", "get_manager", "card_markdown", "listing_markdown"]

_STATUS = {"cached": "✅ cached", "downloadable": "⬇️ downloadable",
           "unavailable-offline": "⛔ unavailable offline"}
_FIT = {"fits": "🟢 fits", "fits with offload": "🟡 fits with offload", "does not fit": "🔴 does not fit",
        "unknown": "⚪ unknown"}


def get_manager(services: Any):
    """The app's one ``ModelManager``, built by ``build_services``."""
    return services.models


def _choices(listing: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for r in listing["models"]:
        label = f"{r['name']} · {r['model_type']} · {_STATUS.get(r['status'], r['status'])} · " \
                f"{_FIT.get(r['fit'], r['fit'])}"
        if r["loaded"]:
            label += " · loaded"
        out.append((label, r["name"]))
    return out


def listing_markdown(listing: dict[str, Any]) -> str:
    rows = ["| Model | Type | Weights | Fit on this machine | Loaded |", "|---|---|---|---|---|"]
    for r in listing["models"]:
        name = f"**{r['name']}**" + (f"<br>⚠️ _{r['warning']}_" if r.get("warning") else "")
        loaded = f"yes ({r['rung']})" if r["loaded"] else ""
        rows.append(f"| {name} | {r['model_type']} | {_STATUS.get(r['status'], r['status'])} | "
                    f"{_FIT.get(r['fit'], r['fit'])}: {r['fit_detail']} | {loaded} |")
    rec = listing["recommended"]
    lines = ["\n".join(rows), ""]
    if rec.get("text-to-video"):
        lines.append(f"**Recommended for this machine:** `{rec['text-to-video']}` "
                     "(the best text-to-video card that fits now)")
    for f, msg in listing.get("invalid_cards", {}).items():
        lines.append(f"\n❌ card `{f}` was refused: {msg}")
    return "\n".join(lines)


def card_markdown(row: dict[str, Any] | None) -> str:
    if row is None:
        return "_Pick a model card._"
    parts = [f"### {row['name']}"]
    if row.get("warning"):
        parts.append(f"> ⚠️ **{row['warning']}**")
    if row.get("description"):
        parts.append(row["description"])
    parts.append(f"- **Weights:** {_STATUS.get(row['status'], row['status'])} ({row['status_detail']})"
                 f"\n- **Fit:** {_FIT.get(row['fit'], row['fit'])}: {row['fit_detail']}"
                 f"\n- **Source:** `{row['model_path']}`"
                 + (f" @ `{row['revision']}`" if row.get("revision") else "")
                 + (f"\n- **License:** {row['license']}" if row.get("license") else "")
                 + (f"\n- **Native fps:** {row['native_fps']:g}, up to {row['max_frames']} frames "
                    "per pass" if row.get("native_fps") and row.get("max_frames") else ""))
    if row.get("presets"):
        t = ["| Preset | Size | Frames | fps | Steps | Guidance |", "|---|---|---|---|---|---|"]
        for level, p in row["presets"].items():
            t.append(f"| {level} | {p['width']}×{p['height']} | {p['frames']} | {p['fps']:g} | "
                     f"{p['steps']} | {p['guidance']:g} |")
        parts.append("\n".join(t))
    mem = row.get("memory")
    if mem:
        t = ["| Rung | Precision | GPU GB | RAM GB | Note |", "|---|---|---|---|---|"]
        for e in mem["entries"]:
            t.append(f"| {e['rung']} | {e.get('precision') or ''} | {_num(e.get('vram_gb'))} | "
                     f"{_num(e.get('ram_gb'))} | {e.get('note') or ''} |")
        kind = "measured" if mem.get("measured") else "published/estimated"
        parts.append("**Memory (" + kind + ")**\n\n" + "\n".join(t) + f"\n\n_Source: {mem['source']}_")
    return "\n\n".join(parts)


def _num(v) -> str:
    return "" if v is None else f"{v:g}"


def loaded_markdown(manager) -> str:
    loaded = manager.loaded()
    if not loaded:
        return "_No model is loaded._"
    lines = []
    for kind, info in loaded.items():
        line = (f"- **{kind}:** `{info['name']}` on **{info['device']}** ({info['dtype']}), rung "
                f"**{info['rung']}**, loaded in {info['seconds']:.2f} s")
        if info.get("in_use"):
            line += f", used by {info['in_use']} job(s)"
        if info.get("random_weights"):
            line += " — ⚠️ random weights"
        lines.append(line)
    return "\n".join(lines)


def create_ui(services: Any) -> dict[str, Any]:
    manager = get_manager(services)
    listing = manager.list_models()
    first = listing["recommended"].get("text-encoder") or (
        listing["models"][0]["name"] if listing["models"] else None)
    with gr.Row():
        card = gr.Dropdown(choices=_choices(listing), value=first, label="Model card", scale=4)
        refresh = gr.Button("Refresh", size="sm", scale=1)
    overview = gr.Markdown(listing_markdown(listing))
    with gr.Row():
        with gr.Column(scale=3):
            details = gr.Markdown(card_markdown(next((r for r in listing["models"]
                                                      if r["name"] == first), None)))
        with gr.Column(scale=2):
            with gr.Row():
                load = gr.Button("Load / switch", variant="primary")
                unload = gr.Button("Unload")
                pull = gr.Button("Download")
            state = gr.Markdown(loaded_markdown(manager))
            load_info = gr.JSON(label="Last load", visible=True)
    with gr.Accordion("Try it out", open=True):
        gr.Markdown("Text encoders: one text per line; you get the embedding shape, latency, "
                    "memory change and a cosine-similarity heatmap. Text-to-video models: the "
                    "pipeline's components.")
        texts = gr.Textbox(lines=4, label="Texts (one per line)",
                           value="A cat sleeps on the sofa.\nA kitten naps on the couch.\n"
                                 "Interest rates went up again.")
        with gr.Row():
            embed = gr.Button("Embed")
            components = gr.Button("Show components")
        summary = gr.Markdown()
        with gr.Row():
            heatmap = gr.Image(label="Cosine similarity", type="pil", interactive=False)
            table = gr.Dataframe(label="Components", interactive=False, wrap=True)
        result = gr.JSON(label="Result")
    return {"card": card, "refresh": refresh, "overview": overview, "details": details,
            "load": load, "unload": unload, "pull": pull, "state": state, "load_info": load_info,
            "texts": texts, "embed": embed, "components": components, "summary": summary,
            "heatmap": heatmap, "table": table, "result": result}


def page_load(services: Any, h: dict[str, Any]) -> list[tuple[Any, Any]]:
    """Fresh on each page load: which model is loaded (another user may have loaded one)."""
    return [(h["state"], lambda: loaded_markdown(get_manager(services)))]


def create_event_handlers(services: Any, h: dict[str, Any]) -> None:
    from opusclip_ui.models.inference import describe_pipeline, embed, similarity_heatmap

    def _listing():
        manager = get_manager(services)
        return manager, manager.list_models()

    @guarded(services, "models.list")
    def list_models(name: str | None):
        manager, listing = _listing()
        names = [r["name"] for r in listing["models"]]
        value = name if name in names else (names[0] if names else None)
        row = next((r for r in listing["models"] if r["name"] == value), None)
        return (gr.Dropdown(choices=_choices(listing), value=value), listing_markdown(listing),
                card_markdown(row), loaded_markdown(manager))

    @guarded(services, "models.details")
    def model_details(name: str | None):
        _, listing = _listing()
        return card_markdown(next((r for r in listing["models"] if r["name"] == name), None))

    def _need(name: str | None) -> str:
        if not name:
            from opusclip_ui.errors import InvalidRequestError
            raise InvalidRequestError("No model card is selected.", "Pick one in the list first.")
        return name

    @guarded(services, "models.load")
    def load_model(name: str | None, progress=gr.Progress()):
        manager = get_manager(services)
        notify.progress(0.05, f"loading {name}")
        loaded = manager.load(_need(name))
        notify.progress(1.0, "loaded")
        info = loaded.info()
        gr.Info(f"{info['name']} loaded on {info['device']} ({info['dtype']}), rung {info['rung']}, "
                f"{info['seconds']:.1f} s")
        return loaded_markdown(manager), info

    @guarded(services, "models.unload")
    def unload_model(name: str | None):
        manager = get_manager(services)
        result = manager.unload(_need(name))
        return loaded_markdown(manager), result

    @guarded(services, "models.pull")
    def pull_model(name: str | None, progress=gr.Progress()):
        manager = get_manager(services)
        folder = manager.store.pull(manager.card(_need(name)))
        _, listing = _listing()
        row = next((r for r in listing["models"] if r["name"] == name), None)
        return card_markdown(row), {"name": name, "path": str(folder)}

    @guarded(services, "models.embed")
    def embed_texts(name: str | None, text: str):
        manager = get_manager(services)
        with manager.use(_need(name)) as loaded:
            res = embed(loaded, text or "", settings=services.settings)
        data = res.to_dict()
        md = (f"**Shape** {data['shape']} · **latency** {data['latency_ms']:.1f} ms · **memory "
              f"change** {data['memory_delta_mb']:+.1f} MB · on {data['device']} ({data['dtype']}), "
              f"{data['batches']} batch(es)")
        if data["truncated"]:
            md += f"\n\n⚠️ cut to {data['max_length']} tokens: " + ", ".join(
                f"text {i + 1}" for i in data["truncated"])
        if data["dropped"]:
            md += f"\n\n⚠️ {data['dropped']} text(s) over the batch limit were not embedded"
        return md, similarity_heatmap(res.similarity), data

    @guarded(services, "models.components")
    def model_components(name: str | None):
        manager = get_manager(services)
        with manager.use(_need(name)) as loaded:
            rows = describe_pipeline(loaded)
        table = [[r["component"], r["class"], "" if r["params"] is None else f"{r['params']:,}",
                  r["dtype"] or "", r["device"] or ""] for r in rows]
        import pandas as pd  # gradio depends on pandas
        df = pd.DataFrame(table, columns=["component", "class", "parameters", "dtype", "device"])
        return df, {"name": name, "components": rows}

    h["refresh"].click(list_models, inputs=[h["card"]],
                       outputs=[h["card"], h["overview"], h["details"], h["state"]],
                       api_name="list_models")
    h["card"].change(model_details, inputs=[h["card"]], outputs=[h["details"]],
                     api_name="model_details")
    h["load"].click(load_model, inputs=[h["card"]], outputs=[h["state"], h["load_info"]],
                    api_name="load_model", concurrency_id="gpu",
                    concurrency_limit=services.settings.gpu_concurrency).then(
        list_models, inputs=[h["card"]], outputs=[h["card"], h["overview"], h["details"],
                                                  h["state"]], api_visibility="private")
    h["unload"].click(unload_model, inputs=[h["card"]], outputs=[h["state"], h["load_info"]],
                      api_name="unload_model").then(
        list_models, inputs=[h["card"]], outputs=[h["card"], h["overview"], h["details"],
                                                  h["state"]], api_visibility="private")
    h["pull"].click(pull_model, inputs=[h["card"]], outputs=[h["details"], h["load_info"]],
                    api_name="pull_model")
    h["embed"].click(embed_texts, inputs=[h["card"], h["texts"]],
                     outputs=[h["summary"], h["heatmap"], h["result"]], api_name="embed")
    h["components"].click(model_components, inputs=[h["card"]], outputs=[h["table"], h["result"]],
                          api_name="model_components")
