"""Start-up self-test: can this machine run the app, and with what?

The quick test (run at start-up) imports nothing heavy: it reads package versions from their metadata.
``deep=True`` also imports torch to list its devices (a second or two, and memory).
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
import time
from typing import Any

from .errors import OpusClipError
from .guards import run_command
from .log import setup_logging
from .resources import disk_info, gpu_info
from .safe_io import atomic_write_bytes
from .settings import Settings

__all__ = ["run_selftest", "PACKAGES"]

_log = setup_logging("selftest")
PACKAGES = ("gradio", "torch", "diffusers", "transformers", "accelerate", "opencv-python-headless",
            "imageio-ffmpeg", "scenedetect-headless", "huggingface-hub", "pydantic", "psutil",
            "nvidia-ml-py")
#: Below this much free space in the output folder the app still runs, but the check fails.
MIN_FREE_MB = 500


def _check(name: str, fn, required: bool = True) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        ok, detail = fn()
    except OpusClipError as exc:
        ok, detail = False, exc.friendly()
    except Exception as exc:  # a self-test reports, it does not crash
        ok, detail = False, f"{type(exc).__name__}: {exc}"
    return {"name": name, "ok": bool(ok), "required": required, "detail": detail,
            "seconds": round(time.perf_counter() - start, 3)}


def _ffmpeg() -> tuple[bool, str]:
    import imageio_ffmpeg

    exe = imageio_ffmpeg.get_ffmpeg_exe()
    out = run_command([exe, "-hide_banner", "-version"], timeout=15).stdout.decode(errors="replace")
    first = out.splitlines()[0].split(" Copyright")[0] if out else "ffmpeg"
    return True, f"{first} ({exe})"


def _writable(settings: Settings) -> tuple[bool, str]:
    folder = settings.outputs
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".selftest-{os.getpid()}"
    atomic_write_bytes(probe, b"ok")
    probe.unlink()
    disk = disk_info(folder)
    ok = disk["free_mb"] >= MIN_FREE_MB
    return ok, (f"{folder} is writable, {disk['free_mb'] / 1024:.1f} GB free"
                + ("" if ok else f" (under {MIN_FREE_MB} MB: generation will be refused)"))


def _torch(deep: bool) -> tuple[bool, str]:
    version = importlib.metadata.version("torch")
    if not deep:
        return True, f"torch {version} installed (devices are listed by the deep check)"
    import torch

    parts = [f"torch {torch.__version__}", f"{torch.get_num_threads()} CPU threads"]
    if torch.cuda.is_available():
        parts += [f"CUDA {torch.version.cuda}: " + ", ".join(
            torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))]
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        parts.append("MPS available")
    if not torch.cuda.is_available():
        parts.append("no CUDA: generation runs on the CPU (slow)")
    return True, "; ".join(parts)


def _gpu() -> tuple[bool, str]:
    info = gpu_info()
    if info["mode"] == "cpu":
        return True, "CPU only (no NVIDIA driver found)"
    if info["mode"] == "zerogpu":
        return True, info["label"]
    return True, ", ".join(f"{d['name']} ({d['total_mb'] / 1024:.0f} GB)" for d in info["devices"])


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in PACKAGES:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def run_selftest(settings: Settings, deep: bool = False) -> dict[str, Any]:
    """Run every check; ``ok`` is True when all required checks pass (the app can run)."""
    checks = [
        _check("python", lambda: (sys.version_info >= (3, 11), platform.python_version())),
        _check("ffmpeg", _ffmpeg),
        _check("output folder", lambda: _writable(settings)),
        _check("torch", lambda: _torch(deep)),
        _check("gpu", _gpu, required=False),
    ]
    result = {"ok": all(c["ok"] for c in checks if c["required"]), "deep": deep,
              "checks": checks, "versions": versions()}
    for c in checks:
        (_log.info if c["ok"] else _log.error)("self-test %s: %s - %s", c["name"],
                                                "ok" if c["ok"] else "FAILED", c["detail"])
    return result
