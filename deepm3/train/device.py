"""Device choice: ``auto`` picks CUDA, then Apple MPS, then the CPU.

Under ``torchrun`` each process of a node takes its own GPU, ``cuda:LOCAL_RANK``.
"""

from __future__ import annotations

import torch

from deepm3.config import DEVICES, check_choice
from deepm3.errors import ConfigError
from deepm3.train import distributed


def select_device(name: str = "auto", option: str = "train.device") -> torch.device:
    """The device ``name`` asks for (``option`` names the setting in messages); ConfigError when
    it is unknown or not available here."""
    check_choice(option, name, DEVICES)
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        name = "cuda" if cuda else "mps" if mps else "cpu"
    if (name == "cuda" and not cuda) or (name == "mps" and not mps):
        raise ConfigError(f"{option} {name!r} requested but not available on this machine")
    if name == "cuda" and distributed.launched():
        return _local_gpu(distributed.launch().local_rank)
    return torch.device(name)


def _local_gpu(local_rank: int) -> torch.device:
    """The GPU of the process with ``local_rank`` on its node (one GPU per process)."""
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise ConfigError(
            f"local rank {local_rank} has no GPU: this node has {count}; start at most {count} "
            "processes per node (torchrun --nproc-per-node)"
        )
    return torch.device("cuda", local_rank)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type
