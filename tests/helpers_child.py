"""Top-level functions for run_in_child tests (a child process must be able to import them)."""
import os
import time

from opusclip_ui.errors import InvalidVideoError


def add(a, b):
    return a + b


def sleep_and_write_pid(path, seconds):
    with open(path, "w") as fh:
        fh.write(str(os.getpid()))
    time.sleep(seconds)


def raise_ours():
    raise InvalidVideoError("This file is not a video.", "Upload a video file.")


def hard_crash():
    os._exit(7)


def allocate(mb):
    return len(bytearray(mb * 2**20))


def with_progress():
    from opusclip_ui.guards import report_progress

    report_progress(0.25, "first quarter")
    report_progress(0.75, "nearly")
    return "done"
