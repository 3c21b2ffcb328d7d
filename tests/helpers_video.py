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
