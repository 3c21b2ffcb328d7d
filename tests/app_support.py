"""Launch one tab module in its own Blocks on 127.0.0.1, as the app would wire it."""
from __future__ import annotations

from typing import Any


def launch_tab(services: Any, module: Any, port: int, **launch_kw: Any) -> tuple[Any, dict]:
    """Build ``module``'s tab for ``services`` and serve it; returns ``(demo, handles)``.

    The caller closes ``demo``. Files under the output folder are served, as in the app.
    """
    import gradio as gr

    with gr.Blocks() as demo:
        handles = module.create_ui(services)
        module.create_event_handlers(services, handles)
    kw = {"show_error": False, "quiet": True,
          "allowed_paths": [str(services.settings.outputs.resolve())], **launch_kw}
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, **kw)
    return demo, handles
