"""Atomic writes: old file intact and no temp file left on any failure; safe loading only."""
from __future__ import annotations

import errno
import json
import os

import pytest

from opusclip_ui import safe_io
from opusclip_ui.errors import ConfigError, DiskFullError, FileMissingError
from opusclip_ui.safe_io import atomic_output, check_free_space, load_json, load_yaml, save_json, save_yaml


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_save_json_and_yaml_round_trip_with_backup(tmp_path):
    path = tmp_path / "props.json"
    save_json(path, {"fps": 24, "name": "clip ü"})
    save_json(path, {"fps": 30}, backup=True)
    assert json.loads(path.read_text()) == {"fps": 30}
    assert json.loads((tmp_path / "props.json.bak").read_text())["name"] == "clip ü"
    ypath = save_yaml(tmp_path / "props.yaml", {"a": [1, 2]})
    assert load_yaml(ypath) == {"a": [1, 2]}
    assert _leftovers(tmp_path) == []


def test_enospc_while_writing_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "app.json"
    save_json(path, {"version": 1})
    real_fsync = os.fsync

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safe_io.os, "fsync", full_disk)
    with pytest.raises(DiskFullError, match="disk is full"):
        save_json(path, {"version": 2})
    monkeypatch.setattr(safe_io.os, "fsync", real_fsync)
    assert json.loads(path.read_text()) == {"version": 1}
    assert _leftovers(tmp_path) == []


def test_failure_inside_atomic_output_block_leaves_nothing(tmp_path):
    final = tmp_path / "video.mp4"
    with pytest.raises(RuntimeError):
        with atomic_output(final) as tmp:
            tmp.write_bytes(b"half a video")
            raise RuntimeError("encoder died")
    assert not final.exists() and list(tmp_path.iterdir()) == []


def test_free_space_check_refuses_before_writing(tmp_path, monkeypatch):
    class Usage:
        free, total, used = 1024, 10**9, 10**9 - 1024

    monkeypatch.setattr(safe_io.shutil, "disk_usage", lambda p: Usage)
    with pytest.raises(DiskFullError, match="Not enough free disk space"):
        check_free_space(tmp_path, 10)
    with pytest.raises(DiskFullError):
        save_json(tmp_path / "x.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_verify_after_write_catches_a_bad_read_back(tmp_path, monkeypatch):
    original = type(tmp_path).read_bytes
    monkeypatch.setattr(type(tmp_path), "read_bytes", lambda self: b'{"changed": true}')
    with pytest.raises(DiskFullError, match="did not read back"):
        save_json(tmp_path / "x.json", {"a": 1})
    monkeypatch.setattr(type(tmp_path), "read_bytes", original)


@pytest.mark.parametrize("text, match", [
    ("!!python/object/apply:os.system ['echo pwned']", "not valid YAML"),
    ("a: [1, 2", "not valid YAML at line"),
])
def test_load_yaml_refuses_python_tags_and_bad_syntax(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_yaml(path)


def test_load_json_names_line_and_missing_files(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"a": 1,\n "b": }')
    with pytest.raises(ConfigError, match="line 2"):
        load_json(path)
    with pytest.raises(FileMissingError):
        load_json(tmp_path / "nope.json")
    (tmp_path / "empty.yaml").write_text("")
    assert load_yaml(tmp_path / "empty.yaml") is None
