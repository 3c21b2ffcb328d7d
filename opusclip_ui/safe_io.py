"""Safe reads and atomic writes.

Writes go to a temp file in the same folder, are fsynced, then ``os.replace``d over the target, so a
reader sees the old file or the new one and never half of either. A free-space check runs first, an
optional ``.bak`` keeps the previous version, and verify-after-write reads the file back. YAML is read
with ``yaml.safe_load`` only; nothing here (or anywhere in the app) loads pickle.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import ConfigError, DiskFullError, FileMissingError, map_errors

__all__ = ["check_free_space", "atomic_write_bytes", "atomic_output", "save_json", "save_yaml",
           "load_json", "load_yaml", "fsync_dir"]

#: Room kept free beyond what a write needs, so the app never fills a disk to the last byte.
SAFETY_MARGIN = 16 * 2**20


def check_free_space(folder: str | Path, need_bytes: int) -> None:
    """Raise ``DiskFullError`` when ``folder`` lacks ``need_bytes`` plus a safety margin."""
    folder = Path(folder)
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < need_bytes + SAFETY_MARGIN:
        raise DiskFullError(
            f"Not enough free disk space in {folder}: {free / 2**20:.0f} MB free, "
            f"about {(need_bytes + SAFETY_MARGIN) / 2**20:.0f} MB needed.")


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_output(final_path: str | Path, *, backup: bool = False) -> Iterator[Path]:
    """Yield a temp path beside ``final_path``; on success it replaces ``final_path`` atomically.

    Whatever the block writes to the temp path is fsynced and renamed into place only when the block
    ends without an exception. On any failure the temp file is removed and the old file is untouched.
    With ``backup``, the previous version is kept as ``<name>.bak``.
    """
    final_path = Path(final_path)
    with map_errors():
        final_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final_path.name}.", suffix=".tmp",
                                        dir=final_path.parent)
        os.close(fd)
    tmp = Path(tmp_name)
    try:
        with map_errors():
            yield tmp
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            if backup and final_path.exists():
                shutil.copy2(final_path, final_path.with_name(final_path.name + ".bak"))
            os.replace(tmp, final_path)
            fsync_dir(final_path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_bytes(path: str | Path, data: bytes, *, backup: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (free-space check first). Returns the path."""
    path = Path(path)
    check_free_space(path.parent, len(data))
    with atomic_output(path, backup=backup) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
    return path


def _save(path: str | Path, text: str, parse, *, backup: bool, verify: bool) -> Path:
    data = text.encode("utf-8")
    path = atomic_write_bytes(path, data, backup=backup)
    if verify:
        with map_errors():
            back = Path(path).read_bytes()
        if back != data or parse(back.decode("utf-8")) != parse(text):
            raise DiskFullError(f"{Path(path).name} did not read back as written.",
                                "The disk may be failing or full; check it and save again.")
    return Path(path)


def save_json(path: str | Path, obj: Any, *, backup: bool = False, verify: bool = True) -> Path:
    """Save ``obj`` as UTF-8 JSON atomically, optionally keeping a ``.bak`` and reading it back."""
    text = json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n"
    return _save(path, text, json.loads, backup=backup, verify=verify)


def save_yaml(path: str | Path, obj: Any, *, backup: bool = False, verify: bool = True) -> Path:
    """Save ``obj`` as YAML (plain types only) atomically, like ``save_json``."""
    import yaml

    text = yaml.safe_dump(obj, sort_keys=False, allow_unicode=True)
    return _save(path, text, yaml.safe_load, backup=backup, verify=verify)


def _read_text(path: str | Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise FileMissingError(f"{path} does not exist.")
    with map_errors():
        return path.read_text(encoding="utf-8")


def load_yaml(path: str | Path) -> Any:
    """Read YAML with ``yaml.safe_load`` (python tags are refused). Raises ConfigError."""
    import yaml

    text = _read_text(path)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{Path(path).name} is not valid YAML{where}: {problem}.",
                          "Fix the file (only plain YAML is accepted; python tags are refused).",
                          details=str(exc)) from exc


def load_json(path: str | Path) -> Any:
    """Read JSON. Raises ConfigError naming the line and column of a syntax error."""
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{Path(path).name} is not valid JSON at line {exc.lineno}, column "
                          f"{exc.colno}: {exc.msg}.", "Fix the file and try again.") from exc
