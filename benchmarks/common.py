"""What every benchmark reports beside its numbers: the machine they were measured on."""

from __future__ import annotations

import importlib.metadata
import os
import platform

import torch


def machine_info(
    device: torch.device | str | None = None, packages: tuple[str, ...] = ("torchvision",)
) -> dict:
    """Platform, CPU count, torch version and threads, load average, package versions, GPU.

    The 1-minute load average is read before the timing starts: on a shared machine it says how
    much of the CPU the benchmark had.
    """
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    for package in packages:
        try:
            info[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            info[package] = None
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda" or device is None and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
