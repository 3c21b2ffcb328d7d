"""``python -m opusclip_ui inspect PATH_OR_URL [--json] [--thumbnails N DIR] [--scenes]``."""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from ..errors import InvalidRequestError
from ..settings import Settings

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("inspect", help="print a video's properties (file or http(s) URL)")
    p.add_argument("source", metavar="PATH_OR_URL", help="a local video file or an http(s) link")
    p.add_argument("--json", action="store_true", help="print the properties as JSON")
    p.add_argument("--thumbnails", nargs=2, metavar=("N", "DIR"),
                   help="write N JPEG thumbnails into DIR")
    p.add_argument("--scenes", action="store_true", help="add the scene cuts [start, end] in seconds")
    p.add_argument("--threshold", type=float, default=27.0,
                   help="scene threshold (PySceneDetect default 27)")
    p.set_defaults(func=_inspect)


def _thumb_args(values: list[str] | None) -> tuple[int, Path] | None:
    if values is None:
        return None
    n_text, folder = values
    try:
        n = int(n_text)
    except ValueError:
        raise InvalidRequestError(f"--thumbnails needs a whole number first, not {n_text!r}.",
                                  "For example: --thumbnails 12 thumbs/") from None
    return n, Path(folder)


def _inspect(args: argparse.Namespace, settings: Settings) -> int:
    from .service import InspectService

    thumbs = _thumb_args(args.thumbnails)
    if thumbs is not None and not 1 <= thumbs[0] <= 100:
        raise InvalidRequestError(f"--thumbnails must be between 1 and 100, not {thumbs[0]}.")
    service = InspectService(settings)
    result = service.inspect(args.source, thumbnails=thumbs[0] if thumbs else 0, preview=False)
    try:
        return _report(args, service, result, thumbs)
    finally:  # the command line keeps only what it was asked to write
        shutil.rmtree(service.root / result.job_id, ignore_errors=True)


def _report(args: argparse.Namespace, service: Any, result: Any,
            thumbs: tuple[int, Path] | None) -> int:
    out: dict[str, Any] = result.info.cli_dict()
    if thumbs is not None:
        folder = thumbs[1]
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for i, th in enumerate(result.thumbnails):
            target = folder / f"thumb_{i + 1:03d}.jpg"
            shutil.copyfile(th.path, target)
            written.append({"path": str(target), "time": th.time})
        out["thumbnails"] = written
    if args.scenes:
        scenes = service.scenes(result.source, result.info, threshold=args.threshold,
                                thumbnails=False, job_id=result.job_id)
        out["scenes"] = scenes.cut_list()
    if args.json:
        print(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        for key, value in out.items():
            if key in ("thumbnails", "scenes"):
                value = f"{len(value)} ({', '.join(str(v) for v in value[:3])}{' ...' if len(value) > 3 else ''})"
            print(f"{key:18s} {value}")
    return 0
