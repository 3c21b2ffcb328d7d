"""The model manager: which models are loaded, switching between them safely, and who uses them.

One slot per model type (one text-to-video pipeline and one text encoder at a time). Loading into a
taken slot is a switch, done as a transaction: unload the old model, collect garbage, load the new
one; if that fails, put the old one back and re-raise. Loads are serialised by one lock, so two
sessions pressing Load at once cannot both fill the GPU.

Jobs hold a model with ``with manager.use(name) as loaded:``. While a job holds it, an unload or a
switch detaches it from the slot but its memory is freed only when the last job lets go, so a running
generation never loses its model half-way.
"""
from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .. import notify
from ..errors import ConfigError, ModelNotFoundError, OpusClipError
from ..guards import cleanup_memory
from ..log import setup_logging
from .cards import CARDS_DIR, ModelCard, load_cards
from .loader import LoadedModel, ModelLoader
from .weights import WeightsStore

__all__ = ["ModelManager", "build_model_manager"]

_log = setup_logging("models.manager")


@dataclass
class _Entry:
    loaded: LoadedModel
    refs: int = 0
    detached: bool = False   # unloaded from its slot while jobs still held it


@dataclass
class _State:
    slots: dict[str, _Entry] = field(default_factory=dict)       # model_type -> entry
    held: dict[int, _Entry] = field(default_factory=dict)        # id(entry) -> detached entries


class ModelManager:
    """Holds the loaded models of one app.

    Args:
        settings: app settings (cache folder, model roots, test switches).
        cards_dir: the folder of model cards.
        store: where weights are found and downloaded (built from settings when omitted).
        loader: the ladder loader (built from settings when omitted).
    """

    def __init__(self, settings: Any, *, cards_dir: Path | str = CARDS_DIR,
                 store: WeightsStore | None = None, loader: ModelLoader | None = None):
        self.settings = settings
        self.cards_dir = Path(cards_dir)
        roots = list(getattr(settings, "model_roots", []) or [])
        cache = Path(settings.cache) if settings is not None else Path("data/cache")
        self.store = store or WeightsStore(cache, roots,
                                           timeout_s=getattr(settings, "hub_timeout_s", 30.0))
        self.loader = loader or ModelLoader(settings)
        self._load_lock = threading.RLock()
        self._state_lock = threading.Lock()
        self._state = _State()
        self.cards: dict[str, ModelCard] = {}
        self.card_errors: dict[str, ConfigError] = {}
        self.reload_cards()

    # --- cards ---------------------------------------------------------------------------------
    def reload_cards(self) -> None:
        roots = list(self.store.roots) + [self.store.cache_dir]
        self.cards, self.card_errors = load_cards(self.cards_dir, roots=roots)

    def card(self, name: str) -> ModelCard:
        card = self.cards.get(name)
        if card is None:
            known = ", ".join(sorted(self.cards)) or "none"
            bad = self.card_errors.get(f"{name}.yaml") or self.card_errors.get(f"{name}.json")
            if bad is not None:
                raise bad
            raise ModelNotFoundError(f"There is no model card named `{name}`.",
                                     f"Known cards: {known}.")
        return card

    def list_models(self, snap: dict[str, Any] | None = None) -> dict[str, Any]:
        """Every card with its weights status, hardware fit and load state, plus a recommendation.

        Args:
            snap: a ``resources.snapshot()``; taken now when omitted.
        """
        from ..resources import snapshot
        from .fit import hardware_fit, recommend
        from .weights import estimate_weights

        snap = snap or snapshot(self.store.cache_dir)
        loaded = {v["name"]: v for v in self.loaded().values()}
        rows, fits = [], {}
        for name, card in sorted(self.cards.items()):
            st = self.store.status(card)
            weights_gb = None
            if st.path is not None:
                try:
                    est = estimate_weights(st.path)
                    per = 4 if card.precision in ("fp32", "auto") else 2
                    weights_gb = est.bytes_at(per) / 2**30
                except Exception:  # noqa: BLE001 - a listing never fails on one card
                    _log.debug("could not measure %s", name, exc_info=True)
            if name in loaded:  # its own memory is already counted as used in the snapshot
                rung = loaded[name]["rung"]
                fit = {"verdict": "fits" if rung in ("full", "retry", "half") else
                       "fits with offload", "rung": rung,
                       "detail": f"loaded now on {loaded[name]['device']} (rung {rung})"}
            else:
                fit = hardware_fit(card, snap, weights_gb=weights_gb)
            fits[name] = fit
            rows.append({
                "name": name, "model_type": card.model_type, "description": card.description,
                "warning": card.warning, "model_path": card.model_path, "revision": card.revision,
                "status": st.status, "status_detail": st.detail, "fit": fit["verdict"],
                "fit_detail": fit["detail"], "loaded": name in loaded,
                "rung": loaded.get(name, {}).get("rung"),
                "memory": card.memory.model_dump(mode="json") if card.memory else None,
                "license": card.license, "native_fps": card.native_fps,
                "max_frames": card.max_frames,
                "presets": {k: v.model_dump() for k, v in (card.presets or {}).items()},
            })
        return {"models": rows,
                "recommended": {"text-to-video": recommend(self.cards, fits, "text-to-video"),
                                "text-encoder": recommend(self.cards, fits, "text-encoder")},
                "invalid_cards": {k: v.friendly() for k, v in self.card_errors.items()}}

    # --- state ---------------------------------------------------------------------------------
    def get(self, name: str) -> LoadedModel | None:
        with self._state_lock:
            for entry in self._state.slots.values():
                if entry.loaded.name == name:
                    return entry.loaded
        return None

    def loaded(self) -> dict[str, dict[str, Any]]:
        """What is loaded now, by model type, with the number of jobs using each."""
        with self._state_lock:
            return {kind: {**e.loaded.info(), "in_use": e.refs}
                    for kind, e in self._state.slots.items()}

    # --- load / switch / unload ----------------------------------------------------------------
    def load(self, name: str, *, device: str | None = None) -> LoadedModel:
        """Load ``name`` into its slot; a different model already there is switched out.

        On failure the previous model of that slot is restored and the error re-raised.
        """
        card = self.card(name)
        with self._load_lock:
            current = self.get(name)
            if current is not None:
                return current
            folder = self.store.resolve(card)  # fails (offline, missing) before anything unloads
            kind = card.model_type
            previous = self._detach(kind)
            prev_card = previous.loaded.card if previous else None
            prev_kept = previous is not None and previous.refs > 0
            if previous is not None and not prev_kept:
                self._free(previous)
                previous = None
            cleanup_memory()
            failed: OpusClipError | Exception | None = None
            try:
                loaded = self.loader.load(card, folder, device=device)
            except Exception as exc:  # noqa: BLE001 - restored below, then re-raised
                failed = exc
            if failed is None:
                with self._state_lock:
                    self._state.slots[kind] = _Entry(loaded)
                return loaded
            # Roll back outside the except block (the traceback would pin the new model's tensors).
            cleanup_memory()
            if prev_card is not None:
                self._restore(kind, previous, prev_card)
            raise failed

    def _restore(self, kind: str, previous: _Entry | None, prev_card: ModelCard) -> None:
        if previous is not None:  # still alive (jobs held it): just put it back
            with self._state_lock:
                self._state.held.pop(id(previous), None)
                previous.detached = False
                self._state.slots[kind] = previous
            notify.warn(f"Switching failed; `{prev_card.name}` is still loaded.")
            return
        try:
            folder = self.store.resolve(prev_card)
            restored = self.loader.load(prev_card, folder)
        except Exception:  # noqa: BLE001 - the original error matters more
            _log.exception("could not restore %s after a failed switch", prev_card.name)
            notify.warn(f"Switching failed and `{prev_card.name}` could not be reloaded; "
                        "no model of this kind is loaded.")
            return
        with self._state_lock:
            self._state.slots[kind] = _Entry(restored)
        notify.warn(f"Switching failed; `{prev_card.name}` was loaded again.")

    def unload(self, name_or_kind: str) -> dict[str, Any]:
        """Unload a model (by card name or model type) and free its memory.

        When jobs still use it, it leaves its slot now and is freed when the last job ends.
        """
        with self._load_lock:
            kind = self._kind_of(name_or_kind)
            if kind is None:
                return {"unloaded": None, "detail": f"`{name_or_kind}` is not loaded"}
            entry = self._detach(kind)
            if entry is None:
                return {"unloaded": None, "detail": f"`{name_or_kind}` is not loaded"}
            name = entry.loaded.name
            if entry.refs > 0:
                notify.warn(f"`{name}` is still used by {entry.refs} running job(s); its memory is "
                            "freed when they finish.")
                return {"unloaded": name, "deferred": True}
            self._free(entry)
            return {"unloaded": name, "deferred": False}

    def unload_all(self) -> None:
        for kind in list(self._state.slots):
            self.unload(kind)

    @contextlib.contextmanager
    def use(self, name: str, *, load: bool = True) -> Iterator[LoadedModel]:
        """Hold ``name`` for the length of a job (loading it first when ``load``)."""
        with self._load_lock:
            loaded = self.get(name)
            if loaded is None:
                if not load:
                    raise ModelNotFoundError(f"`{name}` is not loaded.", "Load it in the Models tab.")
                loaded = self.load(name)
            with self._state_lock:
                entry = self._state.slots[loaded.card.model_type]
                entry.refs += 1
        try:
            yield entry.loaded
        finally:
            free = False
            with self._state_lock:
                entry.refs -= 1
                if entry.detached and entry.refs == 0:
                    self._state.held.pop(id(entry), None)
                    free = True
            if free:
                self._free(entry)

    # --- internals -----------------------------------------------------------------------------
    def _kind_of(self, name_or_kind: str) -> str | None:
        with self._state_lock:
            if name_or_kind in self._state.slots:
                return name_or_kind
            for kind, e in self._state.slots.items():
                if e.loaded.name == name_or_kind:
                    return kind
        return None

    def _detach(self, kind: str) -> _Entry | None:
        with self._state_lock:
            entry = self._state.slots.pop(kind, None)
            if entry is not None and entry.refs > 0:
                entry.detached = True
                self._state.held[id(entry)] = entry
            return entry

    @staticmethod
    def _free(entry: _Entry) -> None:
        name = entry.loaded.name
        t0 = time.perf_counter()
        entry.loaded.release()
        cleanup_memory()
        _log.info("unloaded %s (%.2fs)", name, time.perf_counter() - t0)


def build_model_manager(settings: Any, cards_dir: Path | str = CARDS_DIR) -> ModelManager:
    """What ``build_services`` calls: the app's one model manager."""
    return ModelManager(settings, cards_dir=cards_dir)
