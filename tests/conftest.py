"""Shared fixtures: settings and services in a temp folder, a free port. Nothing is downloaded."""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Tests never reach the network: the hub is offline and Gradio sends no analytics.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture
def settings(tmp_path):
    from opusclip_ui.settings import Settings

    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def services(settings):
    from opusclip_ui.services import build_services

    return build_services(settings)


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
