"""The services object: everything the tabs need, built once in app.py and passed in.

No module-level globals hold state; a test builds its own ``Services`` with its own settings.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from .guards import ErrorTracker
from .log import configure_logging, setup_logging
from .resources import snapshot
from .selftest import run_selftest
from .settings import Settings

__all__ = ["Services", "build_services"]

_log = setup_logging("services")


@dataclass
class Services:
    """Args: settings; the rest is built by ``build_services`` (tests may pass fakes)."""

    settings: Settings
    tracker: ErrorTracker = field(default_factory=ErrorTracker)
    selftest: dict[str, Any] | None = None
    inspect: Any = None    # opusclip_ui.video.service.InspectService
    models: Any = None     # opusclip_ui.models.manager.ModelManager
    generate: Any = None   # opusclip_ui.generate.service.GenerateService
    _selftest_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def snapshot(self) -> dict[str, Any]:
        return snapshot(self.settings.outputs)

    def run_selftest(self, deep: bool = False) -> dict[str, Any]:
        result = run_selftest(self.settings, deep=deep)
        with self._selftest_lock:
            self.selftest = result
        return result

    def start_selftest(self) -> threading.Thread:
        """Run the quick self-test in the background so start-up does not wait for it."""
        t = threading.Thread(target=self.run_selftest, name="opusclip-selftest", daemon=True)
        t.start()
        return t

    def system_status(self) -> dict[str, Any]:
        return {"snapshot": self.snapshot(), "selftest": self.selftest,
                "settings": self.settings.public_dict()}


def build_services(settings: Settings) -> Services:
    """Create folders, set up logging, and build the services for this settings object."""
    for folder in (settings.data_dir, settings.outputs, settings.cache, settings.logs):
        folder.mkdir(parents=True, exist_ok=True)
    log_file = configure_logging(settings.log_level, settings.logs)
    _log.info("data in %s, outputs in %s, log file %s", settings.data_dir, settings.outputs, log_file)
    # None of these imports torch: models load on demand.
    from .generate.service import GenerateService
    from .models.manager import build_model_manager
    from .video.service import InspectService

    models = build_model_manager(settings)
    return Services(settings=settings, inspect=InspectService(settings), models=models,
                    generate=GenerateService(settings, models=models))
