"""Command line for scripts: ``python -m opusclip_ui <command> ...``.

Subcommands come from ``opusclip_ui.<part>.cli`` modules that expose ``register(subparsers)``; each
registered parser sets ``func=handler`` with ``handler(args, settings) -> int``. Bad input prints one
friendly line on stderr (no traceback) and exits 2; an unexpected failure exits 1, its traceback in
the log file only.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Sequence

from .errors import OpusClipError
from .log import configure_logging, setup_logging
from .settings import Settings, load_settings

__all__ = ["main", "build_parser", "PLUGINS"]

_log = setup_logging("cli")
PLUGINS = ("opusclip_ui.video.cli", "opusclip_ui.models.cli", "opusclip_ui.generate.cli")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like our other input errors
        self.exit(2, f"error: {message} (see --help)\n")


def _selftest(args: argparse.Namespace, settings: Settings) -> int:
    from .selftest import run_selftest

    result = run_selftest(settings, deep=args.deep)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for c in result["checks"]:
            mark = "ok  " if c["ok"] else ("FAIL" if c["required"] else "warn")
            print(f"[{mark}] {c['name']}: {c['detail']}")
        print("ready" if result["ok"] else "NOT ready: fix the failed checks above")
    return 0 if result["ok"] else 1


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m opusclip_ui", description="Video-OpusClip from the command line.")
    parser.add_argument("--config", help="settings file (default configs/app.yaml)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("selftest", help="check that this machine can run the app")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--deep", action="store_true", help="also import torch and list its devices")
    p.set_defaults(func=_selftest)
    for name in PLUGINS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue  # that part of the app is not there: no subcommand
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config, overrides={"debug": True if args.debug else None})
        configure_logging("DEBUG" if settings.debug else "WARNING",
                          settings.logs if settings.logs.parent.exists() else None)
        return int(args.func(args, settings) or 0)
    except OpusClipError as exc:
        _log.debug("command failed", exc_info=True)
        print(f"error: {exc.friendly()}", file=sys.stderr)
        if args.debug:
            raise
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # unknown: one line here, the traceback in the log
        _log.error("unexpected failure in %s", args.command, exc_info=True)
        if args.debug:
            raise
        print(f"error: unexpected {type(exc).__name__}: {exc} (details in the log)", file=sys.stderr)
        return 1
