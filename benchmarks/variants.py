"""The benchmarked variants: a model and its options, and DeepM3 with an accelerated recurrence
(a static loop of ``deepm3/models/loops.py``), by name, for ``speed.py`` and ``epoch_speed.py``."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deepm3.models import build_model, model_options  # noqa: E402

VARIANTS: dict[str, tuple[str, dict]] = {
    "sasrec": ("sasrec", {}),
    "tisasrec": ("tisasrec", {}),
    "gru4rec": ("gru4rec", {}),
    "deepm3-euler": ("deepm3", {"solver": "euler"}),
    "deepm3-euler-eager": ("deepm3", {"solver": "euler", "implementation": "eager"}),
    "deepm3-rk4": ("deepm3", {"solver": "rk4"}),
    "deepm3-rk4-eager": ("deepm3", {"solver": "rk4", "implementation": "eager"}),
    "deepm3-dopri5": ("deepm3", {"solver": "dopri5"}),
    "deepm3-euler-bounded": ("deepm3", {"solver": "euler", "lipschitz": "bounded"}),
    "deepm3-euler-none": ("deepm3", {"solver": "euler", "lipschitz": "none"}),
    "deepm3-no-ode": ("deepm3", {"ode": "none"}),
    "deepm3-decay": ("deepm3", {"ode": "decay"}),
    "timeattn": ("timeattn", {}),
    "timeattn-flow": ("timeattn", {"flow": "decay", "predict_at": "target_time"}),
}
# name -> (the variant whose recurrence it accelerates, its model.implementation)
ACCELERATED: dict[str, tuple[str, str]] = {
    "deepm3-euler-compiled": ("deepm3-euler", "compile"),
    "deepm3-euler-graph": ("deepm3-euler", "cuda_graph"),
    "deepm3-euler-graph-compiled": ("deepm3-euler", "compiled_cuda_graph"),
    "deepm3-rk4-compiled": ("deepm3-rk4", "compile"),
    "deepm3-rk4-graph": ("deepm3-rk4", "cuda_graph"),
    "deepm3-rk4-graph-compiled": ("deepm3-rk4", "compiled_cuda_graph"),
}
CUDA_ONLY = {"cuda_graph", "compiled_cuda_graph"}


def build_variant(variant: str, num_items: int, length: int, device: torch.device):
    """A seeded model of ``variant`` on ``device``, its recurrence accelerated if so named."""
    base, loop = ACCELERATED.get(variant, (variant, None))
    name, options = VARIANTS[base]
    if loop is not None:
        options = {**options, "implementation": loop}
    torch.manual_seed(0)
    return build_model(name, num_items, model_options(name, options), length).to(device)


def card_name(device: torch.device) -> str:
    """A file name for the device: the GPU's name sanitised (``nvidia-h200``), else its type."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
