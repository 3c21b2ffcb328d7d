"""``python -m opusclip_ui generate``: a prompt to an MP4 from the command line.

    python -m opusclip_ui generate --model tiny-random-t2v --prompt "a red kite" \\
        --duration 2 --quality low --seed 7 --out kite.mp4 --json

Prints the JSON sidecar with ``--json`` (otherwise the video's path and the warnings).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["register", "handle"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("generate", help="make a video from a text prompt")
    p.add_argument("--model", default="tiny-random-t2v", help="model card name (default: %(default)s)")
    p.add_argument("--prompt", required=True, help="what the video shows")
    p.add_argument("--negative-prompt", default=None, help="what to avoid")
    p.add_argument("--duration", default="4", help="seconds, 1 to 60 (default: %(default)s)")
    p.add_argument("--quality", default="medium", help="low, medium or high (default: %(default)s)")
    p.add_argument("--seed", default=None, help="a whole number; random when omitted")
    p.add_argument("--steps", default=None, help="denoising steps (default: the preset's)")
    p.add_argument("--guidance", default=None, help="guidance scale (default: the preset's)")
    p.add_argument("--long-mode", default="segments", choices=("segments", "clamp"),
                   help="longer than one pass: consecutive segments or clamp (default: %(default)s)")
    p.add_argument("--out", default=None, help="write the MP4 here (the sidecar goes beside it)")
    p.add_argument("--json", action="store_true", help="print the sidecar as JSON")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace, settings: Any) -> int:
    from .. import notify
    from .request import validate_request
    from .service import GenerateService

    def on_warn(message: str) -> None:
        print(f"warning: {message}", file=sys.stderr)

    with notify.sink(on_warn=on_warn):
        # Check the request before the model manager (and torch) start up.
        validate_request(args.prompt, args.duration, args.quality, args.seed, args.negative_prompt,
                         args.steps, args.guidance, args.long_mode)
        out = args.out
        if out is not None and not str(out).lower().endswith(".mp4"):
            from ..errors import InvalidRequestError
            raise InvalidRequestError(f"`--out` must end in .mp4, not {out!r}.")
        service = GenerateService(settings)
        result = service.run(args.model, args.prompt, args.duration, args.quality, args.seed,
                             args.negative_prompt, args.steps, args.guidance, args.long_mode,
                             session_id="cli", out_path=out)
    if args.json:
        print(json.dumps(result.sidecar | {"video_path": str(result.video_path),
                                           "sidecar_path": str(result.sidecar_path)}, indent=2))
    else:
        print(result.video_path)
    return 0
