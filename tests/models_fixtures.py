"""Fixtures for the model tests: settings whose cache holds the tiny random pipeline (built once per
session), managers on the real cards, and a folder of scratch cards. Nothing is downloaded."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

__all__ = ["tiny_cache", "model_settings", "manager", "shared_manager", "write_card"]


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    """A cache folder with the tiny random pipeline already built in it."""
    from opusclip_ui.models.tiny import ensure_tiny_t2v

    cache = tmp_path_factory.mktemp("model-cache")
    ensure_tiny_t2v(cache)
    return cache


@pytest.fixture
def model_settings(tmp_path, tiny_cache):
    """Settings in tmp_path; the cache is a copy-free link to the session's tiny pipeline."""
    from opusclip_ui.settings import Settings

    cache = tmp_path / "cache"
    cache.mkdir()
    for item in tiny_cache.iterdir():
        (cache / item.name).symlink_to(item, target_is_directory=item.is_dir())
    roots = tmp_path / "models"
    roots.mkdir()
    return Settings(data_dir=tmp_path / "data", cache_dir=cache, model_roots=[roots])


@pytest.fixture
def manager(model_settings):
    from opusclip_ui.models.manager import ModelManager

    m = ModelManager(model_settings)
    yield m
    m.unload_all()


@pytest.fixture(scope="module")
def shared_manager(tmp_path_factory, tiny_cache):
    """One manager per test module, for read-only use of loaded models (saves load time)."""
    from opusclip_ui.models.manager import ModelManager
    from opusclip_ui.settings import Settings

    base = tmp_path_factory.mktemp("shared")
    m = ModelManager(Settings(data_dir=base / "data", cache_dir=tiny_cache))
    yield m
    m.unload_all()


def write_card(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def copy_cards(dest: Path, names: list[str]) -> Path:
    from opusclip_ui.models.cards import CARDS_DIR

    dest.mkdir(parents=True, exist_ok=True)
    for n in names:
        shutil.copy(CARDS_DIR / f"{n}.yaml", dest / f"{n}.yaml")
    return dest
