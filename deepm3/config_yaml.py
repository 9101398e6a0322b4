"""Reading a run configuration's text: a YAML file's sections, a ``key=value`` override's value,
and the rule that every key read from YAML is a setting name. Every failure is one ConfigError
line naming the file (:mod:`deepm3.config` builds the typed config from what this returns)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from deepm3.errors import ConfigError
from deepm3.settings import shown


def parse_scalar(text: str) -> Any:
    """Parse the right-hand side of ``key=value`` with YAML rules (numbers, bools, lists)."""
    try:
        value = yaml.safe_load(text) if text != "" else ""
    except (yaml.YAMLError, ValueError):  # ValueError: an integer of more than 4300 digits
        return text
    # Text that YAML reads as a mapping (``sep=::``) was meant as a plain string.
    return text if isinstance(value, dict) else value


def read_file(path: Path) -> dict[str, Any]:
    """The sections of YAML config file ``path``; any failure is one line naming the file."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())  # one line
        raise ConfigError(f"{path}: not valid YAML: {detail}") from None
    except ValueError as exc:  # an integer of more than 4300 digits
        raise ConfigError(f"{path}: a value is too long to read ({exc})") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of sections")
    return loaded


def check_keys(values: dict[Any, Any], where: str) -> None:
    """Every key of a section read from YAML is a name: ``~: 1`` (null) or ``1: 2`` (a number)
    is a ConfigError naming the file, the section and the key."""
    for key in values:
        if not isinstance(key, str) or not key.strip():
            name = "null (~)" if key is None else shown(key)
            raise ConfigError(
                f"{where}: key {name} is not a setting name (keys are names such as epochs)"
            )
