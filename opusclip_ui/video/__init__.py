"""Video intake for the Inspect tab: validate, probe, thumbnails, scene cuts, URL ingest, export.

Nothing here imports gradio. Every function that opens a user's file does so in a killable child
process (``worker.run_child`` / ``guards.run_in_child``): a hostile file can hang or crash only that
child. Entry points:

- ``load_video_file(path, settings) -> VideoInfo``          probe.py
- ``make_thumbnails(path, info, n, out_dir, settings)``     thumbs.py
- ``detect_scenes(path, settings, threshold=..., ...)``     scenes.py
- ``download(url, dest_dir, settings)``                     fetch.py
- ``browser_playable(info)`` / ``make_preview(...)``         preview.py
- ``export_properties`` / ``export_scenes``                  export.py
"""
from __future__ import annotations

from typing import Any

__all__ = ["VideoInfo", "load_video_file"]


def __getattr__(name: str) -> Any:
    # Lazy on purpose: worker children import ``opusclip_ui.video._media`` through this package,
    # and must not pay for pydantic/settings imports they never use (~1 s on a busy machine).
    if name in __all__:
        from . import probe

        return getattr(probe, name)
    raise AttributeError(name)
