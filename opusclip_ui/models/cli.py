"""``python -m opusclip_ui models list|load|embed|pull``: the Models tab from the command line.

Each subcommand prints a short human summary, or JSON with ``--json``. Errors are our typed errors;
the main CLI prints them as one friendly line and exits 2.
"""
from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("models", help="list, load, try out and download models")
    sub = p.add_subparsers(dest="models_command", required=True)

    q = sub.add_parser("list", help="model cards with their status and hardware fit")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(func=_list)

    q = sub.add_parser("load", help="load a model through the fallback ladder and report it")
    q.add_argument("name", help="card name, e.g. minilm or tiny-random-t2v")
    q.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], help="override the card")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(func=_load)

    q = sub.add_parser("embed", help="embed texts with a text encoder, print shapes and similarities")
    q.add_argument("name", help="a text-encoder card, e.g. minilm")
    q.add_argument("texts", nargs="+", help="one or more texts")
    q.add_argument("--batch-size", type=int, default=16)
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(func=_embed)

    q = sub.add_parser("pull", help="download a hub model's weights ahead of time")
    q.add_argument("name", help="card name, e.g. wan2.1-t2v-1.3b")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(func=_pull)


def _manager(settings):
    from .manager import ModelManager
    return ModelManager(settings)


def _print(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2, default=str) if args.json else text)


def _list(args, settings) -> int:
    from ..errors import map_errors
    with map_errors():
        listing = _manager(settings).list_models()
    lines = []
    for r in listing["models"]:
        warn = f"  [{r['warning']}]" if r.get("warning") else ""
        lines.append(f"{r['name']:<18} {r['model_type']:<14} {r['status']:<20} {r['fit']:<18}"
                     f"{warn}")
    rec = listing["recommended"]
    lines.append(f"recommended: text-to-video={rec['text-to-video']}, "
                 f"text-encoder={rec['text-encoder']}")
    for f, msg in listing["invalid_cards"].items():
        lines.append(f"invalid card {f}: {msg}")
    _print(args, listing, "\n".join(lines))
    return 0


def _load(args, settings) -> int:
    from ..errors import map_errors
    from .inference import describe_pipeline
    with map_errors():
        manager = _manager(settings)
        loaded = manager.load(args.name, device=args.device)
        info = loaded.info()
        info["components"] = describe_pipeline(loaded)
        manager.unload(args.name)
    _print(args, info, f"{info['name']}: {info['device']} {info['dtype']}, rung {info['rung']}, "
                       f"{info['seconds']:.2f} s")
    return 0


def _embed(args, settings) -> int:
    from ..errors import map_errors
    from .inference import embed
    with map_errors():
        manager = _manager(settings)
        with manager.use(args.name) as loaded:
            result = embed(loaded, list(args.texts), batch_size=args.batch_size, settings=settings)
        manager.unload(args.name)
    data = result.to_dict()
    rows = "\n".join("  " + " ".join(f"{v:6.3f}" for v in row) for row in data["similarity"])
    _print(args, data, f"shape {data['shape']}, {data['latency_ms']:.1f} ms on {data['device']}\n"
                       f"cosine similarity:\n{rows}")
    return 0


def _pull(args, settings) -> int:
    from ..errors import map_errors
    with map_errors():
        manager = _manager(settings)
        folder = manager.store.pull(manager.card(args.name))
    _print(args, {"name": args.name, "path": str(folder)}, f"{args.name}: ready in {folder}")
    return 0
