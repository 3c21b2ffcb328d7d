"""Top-level functions the worker tests run in a child process (they must be importable)."""
from __future__ import annotations

import os
import signal
import time


def sleepy(seconds: float) -> float:
    """Sleep ``seconds``; a negative value makes the process kill itself (a decoder crash)."""
    if seconds < 0:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(seconds)
    return seconds


def stalled_probe(path: str, limits: dict) -> dict:
    """Stands in for a decoder that hangs on a hostile file."""
    time.sleep(60)
    return {"ok": False, "code": "unreachable", "facts": {}}
