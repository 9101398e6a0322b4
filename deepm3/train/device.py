"""Device choice: ``auto`` picks CUDA, then Apple MPS, then the CPU."""

from __future__ import annotations

import torch

from deepm3.config import DEVICES, check_choice
from deepm3.errors import ConfigError


def select_device(name: str = "auto") -> torch.device:
    check_choice("train.device", name, DEVICES)
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if (name == "cuda" and not cuda) or (name == "mps" and not mps):
        raise ConfigError(f"device {name!r} requested but not available")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type
