"""Export properties (JSON/YAML) and scene lists (CSV/JSON) through the atomic safe-save."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..errors import InvalidRequestError
from ..safe_io import atomic_write_bytes, save_json, save_yaml
from .probe import VideoInfo
from .scenes import SceneResult

__all__ = ["export_properties", "export_scenes", "scenes_csv"]

SCENE_COLUMNS = ("index", "start", "end", "length", "start_frame", "end_frame")


def export_properties(info: VideoInfo, path: str | Path, fmt: str = "json") -> Path:
    """Save the properties as ``json`` or ``yaml`` atomically (verified after writing)."""
    data = info.to_dict()
    if fmt == "json":
        return save_json(path, data)
    if fmt == "yaml":
        return save_yaml(path, data)
    raise InvalidRequestError(f"Export format must be 'json' or 'yaml', not {fmt!r}.")


def scenes_csv(result: SceneResult) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(SCENE_COLUMNS)
    for s in result.scenes:
        writer.writerow([getattr(s, c) for c in SCENE_COLUMNS])
    return buf.getvalue()


def export_scenes(result: SceneResult, path: str | Path, fmt: str = "csv") -> Path:
    """Save the scene table as ``csv`` or ``json`` atomically."""
    if fmt == "csv":
        return atomic_write_bytes(path, scenes_csv(result).encode("utf-8"))
    if fmt == "json":
        rows = [{c: getattr(s, c) for c in SCENE_COLUMNS} for s in result.scenes]
        doc = {"fps": result.fps, "frames_read": result.frames_read, "scenes": rows}
        return atomic_write_bytes(path, (json.dumps(doc, indent=2) + "\n").encode("utf-8"))
    raise InvalidRequestError(f"Export format must be 'csv' or 'json', not {fmt!r}.")
