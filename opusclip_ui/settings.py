"""App settings: ``configs/app.yaml``, then ``OPUSCLIP_*`` environment variables, then CLI flags.

Validated by one pydantic schema that refuses unknown keys. Every error names the key, the bad value
and where it came from (file, environment or flag).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError

__all__ = ["Settings", "load_settings", "DEFAULT_CONFIG", "ENV_PREFIX"]

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "app.yaml"
ENV_PREFIX = "OPUSCLIP_"


class Settings(BaseModel):
    """Every knob the app has. ``Settings()`` alone gives safe defaults."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # where things live
    data_dir: Path = Path("data")
    output_dir: Path | None = Field(None, description="default: <data_dir>/outputs")
    cache_dir: Path | None = Field(None, description="default: <data_dir>/cache")
    model_roots: list[Path] = Field(default_factory=list,
                                    description="extra folders local model paths may live in")
    # limits
    upload_max_mb: int = Field(2048, ge=1, le=1_000_000)
    max_pixels: int = Field(8192 * 4320, ge=1)
    max_duration_s: float = Field(4 * 3600, gt=0)
    max_fps: float = Field(1000, gt=0)
    probe_timeout_s: float = Field(20, gt=0, le=3600)
    url_max_mb: int = Field(2048, ge=1)
    url_timeout_s: float = Field(30, gt=0, le=3600)
    hub_timeout_s: float = Field(30, gt=0, le=3600, description="a silent model hub fails after this")
    outputs_max_age_hours: float = Field(24, gt=0)
    outputs_max_total_mb: int = Field(5000, ge=1)
    # server
    host: str = "127.0.0.1"
    port: int = Field(7860, ge=0, le=65535)
    share: bool = False
    auth: str | None = Field(None, description="user:pass, turns on login")
    mcp: bool = Field(False, description="also serve the API as an MCP server for AI agents")
    queue_max_size: int = Field(32, ge=1, le=10_000)
    default_concurrency: int = Field(4, ge=1, le=256)
    gpu_concurrency: int = Field(1, ge=1, le=64)
    gauge_interval_s: float = Field(2.0, ge=0.5, le=60)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    debug: bool = False
    # test-only switches, off by default
    allow_private_urls: bool = Field(False, description="TEST ONLY: lets URL ingest reach loopback")
    inject_oom: str | None = Field(
        None, description="TEST ONLY: comma list of stage[:N] that raise a real OOM N times: "
                          "load.<rung> or load.*, embed, embed.cpu, generate.denoise, "
                          "generate.decode")

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v

    @field_validator("auth")
    @classmethod
    def _auth(cls, v: str | None) -> str | None:
        if v is not None and (":" not in v or not v.split(":", 1)[0] or not v.split(":", 1)[1]):
            raise ValueError("must look like user:password")
        return v

    # derived folders (never None after this)
    @property
    def outputs(self) -> Path:
        return Path(self.output_dir or Path(self.data_dir) / "outputs")

    @property
    def cache(self) -> Path:
        return Path(self.cache_dir or Path(self.data_dir) / "cache")

    @property
    def logs(self) -> Path:
        return Path(self.data_dir) / "logs"

    @property
    def upload_max_bytes(self) -> int:
        return self.upload_max_mb * 2**20

    def public_dict(self) -> dict[str, Any]:
        """Settings for display: the password is masked."""
        d = self.model_dump(mode="json")
        if d.get("auth"):
            d["auth"] = d["auth"].split(":", 1)[0] + ":***"
        return d


def _read_file(path: Path) -> dict[str, Any]:
    from .safe_io import load_yaml  # local: safe_io imports errors only

    data = load_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path.name} must hold a mapping of settings, not {type(data).__name__}.")
    return data


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX):].lower()
        if name == "model_roots":
            out[name] = [p for p in value.split(os.pathsep) if p]
        else:
            out[name] = value
    return out


def load_settings(config_path: str | Path | None = None, env: Mapping[str, str] | None = None,
                  overrides: Mapping[str, Any] | None = None) -> Settings:
    """Load settings from the file, the environment and explicit overrides (last wins).

    Args:
        config_path: a YAML file; ``None`` uses ``configs/app.yaml`` when it exists.
        env: environment mapping (default ``os.environ``); ``OPUSCLIP_<KEY>`` sets ``<key>``.
        overrides: values from CLI flags; ``None`` values are ignored.

    Raises:
        ConfigError: naming the key, the bad value and where it came from.
    """
    path = Path(config_path) if config_path else DEFAULT_CONFIG
    if config_path and not path.is_file():
        raise ConfigError(f"The settings file {path} does not exist.", "Check the --config path.")
    sources: dict[str, str] = {}
    merged: dict[str, Any] = {}
    layers = [
        (f"file {path.name}", _read_file(path) if path.is_file() else {}),
        ("environment", _from_env(os.environ if env is None else env)),
        ("flag", {k: v for k, v in (overrides or {}).items() if v is not None}),
    ]
    for origin, layer in layers:
        for key, value in layer.items():
            merged[key] = value
            sources[key] = origin
    try:
        return Settings(**merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "?"
        top = str(err["loc"][0]) if err["loc"] else key
        origin = sources.get(top, "default")
        if err["type"] == "extra_forbidden":
            msg = f"Unknown setting `{key}` (from {origin})."
            hint = f"Known settings: {', '.join(Settings.model_fields)}."
        else:
            shown = repr(err.get("input"))[:80]
            msg = f"Setting `{key}` has a bad value {shown} (from {origin}): {err['msg']}."
            hint = "Fix that value and start again."
        raise ConfigError(msg, hint, details=str(exc)) from exc
