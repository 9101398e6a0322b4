"""Checkpoints written atomically (a crash, even ``kill -9``, leaves the previous one intact) and
read back safely: ``torch.load(weights_only=True)`` (a file can hold tensors and plain values,
never code to run), then checked against the model they are loaded into (model name, parameter
names, every shape) before any weight is used. A file that fails is a :class:`DataError` that
names it and says what does not match.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepm3.errors import DataError
from deepm3.models import MODELS


def save(path: Path, payload: dict[str, Any]) -> None:
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(handle)
    try:
        torch.save(payload, temporary)
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


def model_name(model: nn.Module) -> str:
    """The registry name of ``model`` (stored in every checkpoint, checked when loading)."""
    for name, (_, constructor) in MODELS.items():
        if type(model) is constructor:
            return name
    return type(model).__name__.lower()


def load(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The payload of checkpoint ``path`` (a dict), loaded with ``weights_only=True``."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected a checkpoint file")
    try:
        with warnings.catch_warnings():  # a damaged file gets one message (below), not a warning
            warnings.filterwarnings("ignore", category=UserWarning, module="torch")
            payload = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise DataError(f"{path}: missing") from None
    except PermissionError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    # torch raises many types on a damaged file (a truncated one: even OSError from a seek)
    except Exception as exc:
        if "GLOBAL" in str(exc):  # the weights_only unpickler met a class or function to call
            raise DataError(
                f"{path}: refused, holds objects other than tensors and plain values "
                "(a checkpoint is loaded with weights_only=True)"
            ) from None
        raise DataError(
            f"{path}: not a readable checkpoint (truncated or not a torch file)"
        ) from None
    if not isinstance(payload, dict):
        raise DataError(f"{path}: not a deepm3 checkpoint (holds a {type(payload).__name__})")
    return payload


def check(payload: dict[str, Any], path: Path, model: nn.Module, keys: tuple[str, ...]) -> None:
    """Raise a DataError naming ``path`` unless ``payload`` holds ``keys`` and weights that fit
    ``model``: the same model name (when stored), parameter names and shapes."""
    missing = [key for key in keys if key not in payload]
    if missing:
        raise DataError(f"{path}: not a deepm3 checkpoint (no {', '.join(map(repr, missing))})")
    stored_name, expected_name = payload.get("model_name"), model_name(model)
    if stored_name is not None and stored_name != expected_name:
        raise DataError(f"{path}: holds a {stored_name} model, the run is {expected_name}")
    weights = payload["model"]
    if not isinstance(weights, dict) or not all(
        isinstance(value, torch.Tensor) for value in weights.values()
    ):
        raise DataError(f"{path}: damaged, its 'model' entry is not a mapping of tensors")
    expected = model.state_dict()
    missing = [name for name in expected if name not in weights]
    extra = [name for name in weights if name not in expected]
    if missing or extra:
        parts = [f"lacks {_names(missing)}"] if missing else []
        parts += [f"has {_names(extra)}"] if extra else []
        raise DataError(f"{path}: weights of another model or version: it {' and '.join(parts)}")
    for name, tensor in expected.items():
        if weights[name].shape != tensor.shape:
            raise DataError(
                f"{path}: parameter {name} has shape {tuple(weights[name].shape)}, the run's "
                f"model expects {tuple(tensor.shape)}"
            )


def load_model(
    path: Path,
    model: nn.Module,
    device: torch.device | str = "cpu",
    keys: tuple[str, ...] = ("model",),
) -> dict[str, Any]:
    """Load checkpoint ``path`` into ``model`` after :func:`check`; returns the whole payload."""
    payload = load(path, device)
    check(payload, Path(path), model, keys)
    model.load_state_dict(payload["model"])
    return payload


def _names(names: list[str], shown: int = 3) -> str:
    """``names`` for a message, the first ``shown`` of them and a count of the rest."""
    text = ", ".join(names[:shown])
    return text + (f" and {len(names) - shown} more" if len(names) > shown else "")
