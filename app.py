"""Video-OpusClip web app: parse flags -> load settings -> build services -> build_ui -> queue -> launch.

``demo`` is built at module level, as Hugging Face Spaces expects; ``python app.py --help`` lists the
flags. Flags are only read when this file is run as a program.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Sequence

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phoning home from an offline box

from opusclip_ui.errors import OpusClipError  # noqa: E402
from opusclip_ui.log import setup_logging  # noqa: E402
from opusclip_ui.services import Services, build_services  # noqa: E402
from opusclip_ui.settings import Settings, load_settings  # noqa: E402

_log = setup_logging("app")
AUTH_ENV = "OPUSCLIP_AUTH"
CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python app.py", description="Run the Video-OpusClip web app.")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, help="port (default 7860; 0 picks a free one)")
    p.add_argument("--share", action="store_true", default=None, help="make a public share link")
    p.add_argument("--auth", help=f"user:pass to require a login (or set {AUTH_ENV})")
    p.add_argument("--mcp", action="store_true", default=None,
                   help="also serve inspect/generate/... as MCP tools at /gradio_api/mcp/")
    p.add_argument("--config", help="settings file (default configs/app.yaml)")
    p.add_argument("--debug", action="store_true", default=None,
                   help="re-raise errors with tracebacks (never on a public server)")
    return p.parse_args(list(argv))


def load(argv: Sequence[str] = ()) -> Settings:
    args = parse_args(argv)
    overrides = {"host": args.host, "port": args.port, "share": args.share, "auth": args.auth,
                 "debug": args.debug, "mcp": args.mcp}
    return load_settings(args.config, overrides=overrides)


def create_app(settings: Settings) -> tuple[Any, Services]:
    """Build services and the UI for ``settings``; returns ``(demo, services)``."""
    tmp = settings.data_dir / "gradio-tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("GRADIO_TEMP_DIR", str(tmp.resolve()))
    from components.layout import build_ui  # gradio is imported here, after the env is set

    services = build_services(settings)
    services.start_selftest()
    demo = build_ui(services)
    demo.queue(max_size=settings.queue_max_size,
               default_concurrency_limit=settings.default_concurrency)
    return demo, services


def launch_kwargs(settings: Settings) -> dict[str, Any]:
    auth = None
    if settings.auth:
        user, password = settings.auth.split(":", 1)
        auth = (user, password)
    return {
        "server_name": settings.host,
        "server_port": settings.port or None,
        "share": settings.share,
        "auth": auth,
        "show_error": False,  # our guard speaks; tracebacks stay in the log
        "max_file_size": settings.upload_max_bytes,
        "allowed_paths": [str(settings.outputs.resolve())],
        # configs, logs and the model cache are never served, even if a path points there
        "blocked_paths": [str(settings.logs.resolve()), str(settings.cache.resolve()),
                          str(CONFIG_DIR)],
        "strict_cors": True,
        "mcp_server": settings.mcp,
    }


def _settings_or_exit(argv: Sequence[str]) -> Settings:
    try:
        return load(argv)
    except OpusClipError as exc:
        print(f"error: {exc.friendly()}", file=sys.stderr)
        raise SystemExit(2) from None


# Worker processes (probes, thumbnails) re-import this file as __mp_main__: never build the app there.
if __name__ != "__mp_main__":
    settings = _settings_or_exit(sys.argv[1:] if __name__ == "__main__" else ())
    demo, services = create_app(settings)

def serve(demo: Any, settings: Settings, **extra: Any) -> Any:
    """Launch; warn once about an open share link, and once more if the tunnel could not be made."""
    if settings.share and not settings.auth:
        _log.warning("Sharing without --auth: anyone with the link can use this machine and its GPU. "
                     "Add --auth user:pass to require a login.")
    result = demo.launch(**{**launch_kwargs(settings), **extra})
    if settings.share and not getattr(demo, "share_url", None):
        _log.warning("Could not create a public share link (offline or blocked). "
                     "The app keeps serving locally at %s", demo.local_url)
    return result


if __name__ == "__main__":
    serve(demo, settings)
