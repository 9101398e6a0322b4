"""Per-data-set settings shipped with the package: the defaults of ``deepm3 train --dataset D``.

``deepm3/defaults/<dataset>/<model>.yaml`` holds only overrides of the dataclass defaults in
:mod:`deepm3.config`, one comment per key. They are applied first; a ``--config`` file and
``key=value`` overrides then win. A data set or model without a file gets the dataclass defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from deepm3.config import RunConfig, load_config
from deepm3.data.datasets import ALIASES

FOLDER = Path(__file__).resolve().parent


def shipped_settings(dataset: str, model: str) -> dict[str, dict[str, Any]]:
    """The shipped sections (data, train, model, ...) for ``model`` on ``dataset`` ({} if none)."""
    path = FOLDER / ALIASES.get(dataset, dataset) / f"{model}.yaml"
    if not path.is_file():
        return {}
    return yaml.safe_load(path.read_text()) or {}


def run_config(
    dataset: str,
    model: str,
    config_file: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    data_dir: str | None = None,
) -> RunConfig:
    """Shipped defaults for (dataset, model), then ``config_file``, then ``overrides``."""
    base = shipped_settings(dataset, model)
    base = {section: dict(values) for section, values in base.items()}
    base.setdefault("data", {}).update({"dataset": dataset})
    if data_dir:
        base["data"]["data_dir"] = data_dir
    return load_config(config_file, overrides, base=base)
