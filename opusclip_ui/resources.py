"""One cheap snapshot of the machine for the live gauges and the pre-flight checks.

RAM is cgroup-aware (a container's limit, not the host's), GPU figures come from NVML when
nvidia-ml-py finds a driver, from torch's own counters when CUDA is already in use, and otherwise the
snapshot says "CPU only". Nothing here creates a CUDA context or imports torch.
"""
from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from .log import setup_logging

__all__ = ["snapshot", "ram_info", "gpu_info", "disk_info", "is_zerogpu"]

_log = setup_logging("resources")
_proc = psutil.Process()
_proc.cpu_percent(None)  # the first reading is always 0.0; prime it
_nvml_lock = threading.Lock()
_nvml_state: dict[str, Any] = {}


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def ram_info() -> dict[str, Any]:
    """Total/used/available RAM in MB, from the cgroup limit where one is set."""
    vm = psutil.virtual_memory()
    total, available, source = vm.total, vm.available, "host"
    limit = _read_int("/sys/fs/cgroup/memory.max")            # cgroup v2 ("max" -> None)
    usage = _read_int("/sys/fs/cgroup/memory.current")
    if limit is None:                                          # cgroup v1
        limit = _read_int("/sys/fs/cgroup/memory/memory.limit_in_bytes")
        usage = _read_int("/sys/fs/cgroup/memory/memory.usage_in_bytes")
    if limit is not None and usage is not None and 0 < limit < total:
        total, available, source = limit, min(available, max(0, limit - usage)), "cgroup"
    used = total - available
    return {"total_mb": total / 2**20, "used_mb": used / 2**20, "available_mb": available / 2**20,
            "percent": 100.0 * used / total if total else 0.0, "source": source}


def disk_info(folder: str | Path) -> dict[str, Any]:
    """Free and total space of the file system holding ``folder`` (or its nearest parent)."""
    probe = Path(folder).resolve()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    du = shutil.disk_usage(probe)
    return {"folder": str(folder), "free_mb": du.free / 2**20, "total_mb": du.total / 2**20,
            "percent": 100.0 * (du.total - du.free) / du.total if du.total else 0.0}


def is_zerogpu() -> bool:
    """True on a Hugging Face ZeroGPU Space, where a GPU is attached only while a job runs."""
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "true")


def _nvml():
    """The initialised pynvml module, or None (tried once; the failure is logged once)."""
    with _nvml_lock:
        if "module" not in _nvml_state:
            _nvml_state["module"] = None
            try:
                import pynvml

                pynvml.nvmlInit()
                _nvml_state["module"] = pynvml
                _nvml_state["count"] = pynvml.nvmlDeviceGetCount()
            except Exception as exc:  # no driver, no library: a CPU machine
                _log.info("NVML unavailable (%s): GPU gauges show CPU only", type(exc).__name__)
        return _nvml_state["module"]


def gpu_info() -> dict[str, Any]:
    """GPU memory and utilisation per device, or ``{"mode": "cpu", "label": "CPU only"}``."""
    if is_zerogpu():
        return {"mode": "zerogpu", "label": "GPU attached per job", "devices": []}
    nv = _nvml()
    torch = sys.modules.get("torch")
    torch_cuda = torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized()
    if nv is not None and _nvml_state.get("count"):
        devices = []
        for i in range(_nvml_state["count"]):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            mem = nv.nvmlDeviceGetMemoryInfo(h)
            try:
                util = float(nv.nvmlDeviceGetUtilizationRates(h).gpu)
            except Exception:
                util = None
            name = nv.nvmlDeviceGetName(h)
            devices.append({"index": i, "name": name.decode() if isinstance(name, bytes) else name,
                            "used_mb": mem.used / 2**20, "total_mb": mem.total / 2**20,
                            "util_percent": util})
        if torch_cuda:
            for d in devices[: torch.cuda.device_count()]:
                d["torch_allocated_mb"] = torch.cuda.memory_allocated(d["index"]) / 2**20
        return {"mode": "nvml", "label": devices[0]["name"], "devices": devices}
    if torch_cuda:
        devices = []
        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            devices.append({"index": i, "name": torch.cuda.get_device_name(i),
                            "used_mb": (total - free) / 2**20, "total_mb": total / 2**20,
                            "util_percent": None,
                            "torch_allocated_mb": torch.cuda.memory_allocated(i) / 2**20})
        return {"mode": "torch", "label": devices[0]["name"] if devices else "CUDA", "devices": devices}
    return {"mode": "cpu", "label": "CPU only", "devices": []}


def snapshot(output_dir: str | Path = ".") -> dict[str, Any]:
    """RAM, this process, disk where outputs go, and GPU, in one dict of plain numbers."""
    with _proc.oneshot():
        rss = _proc.memory_info().rss
        cpu = _proc.cpu_percent(None)
    return {
        "time": time.time(),
        "ram": ram_info(),
        "process": {"rss_mb": rss / 2**20, "cpu_percent": cpu, "pid": _proc.pid},
        "disk": disk_info(output_dir),
        "gpu": gpu_info(),
    }
