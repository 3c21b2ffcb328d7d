"""One logging format for the whole app, a rotating log file in the data folder, no print()."""
from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

__all__ = ["setup_logging", "configure_logging", "LOG_FORMAT"]

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_ROOT = "opusclip"
_configured: dict[str, object] = {}


def setup_logging(name: str) -> logging.Logger:
    """The logger for one part of the app, under the ``opusclip`` root logger."""
    return logging.getLogger(f"{_ROOT}.{name}")


def configure_logging(level: str = "INFO", log_dir: Path | None = None) -> Path | None:
    """Attach the console handler and (with ``log_dir``) the rotating file handler, once.

    Calling again with another folder or level moves the file handler and changes the level.
    Returns the log file's path, if any.
    """
    root = logging.getLogger(_ROOT)
    root.setLevel(level.upper())
    root.propagate = False
    fmt = logging.Formatter(LOG_FORMAT)
    if "console" not in _configured:
        console = logging.StreamHandler()
        console.setFormatter(fmt)
        root.addHandler(console)
        _configured["console"] = console
    if log_dir is None:
        return None
    log_file = Path(log_dir) / "opusclip.log"
    old = _configured.get("file")
    if old is not None and Path(old.baseFilename) == log_file.resolve():
        return log_file
    if old is not None:
        root.removeHandler(old)
        old.close()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(log_file, maxBytes=5 * 2**20, backupCount=3,
                                                   encoding="utf-8")
    handler.setFormatter(fmt)
    root.addHandler(handler)
    _configured["file"] = handler
    return log_file
