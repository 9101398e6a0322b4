"""Declared settings: a numeric option's valid range lives next to its default.

``epochs: int = setting(50, low=1)`` stores a :class:`Range` in the dataclass field's metadata;
:func:`check_settings` (called by each config or options dataclass's ``__post_init__``) checks
every declared field, so a new option cannot skip validation: a float must also be finite, an
int must fit in int64, and the error names the key. :func:`check_choice` does the same for
enumerated settings.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, fields
from typing import Any

from deepm3.errors import ConfigError

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
RANGE = "range"  # the metadata key of a field's declared Range


def check_choice(where: str, value: object, valid: tuple) -> None:
    """Raise a :class:`ConfigError` naming the valid choices unless ``value`` is one of them."""
    if value not in valid:
        raise ConfigError(f"{where} must be one of {', '.join(map(str, valid))}, got {value!r}")


def shown(value: object, limit: int = 40) -> str:
    """``repr(value)`` cut to about ``limit`` characters, so an error stays one short line."""
    if isinstance(value, int) and value.bit_length() > 128:  # repr refuses > 4300 digits
        return f"an integer of {int(value.bit_length() * math.log10(2)) + 1} digits"
    text = repr(value)
    size = len(value) if isinstance(value, str) else len(text)
    return text if len(text) <= limit else f"{text[: limit - 3]}... ({size} characters)"


def _bound(number: float) -> str:
    return str(number) if isinstance(number, int) else f"{number:g}"


@dataclass(frozen=True)
class Range:
    """The valid values of a numeric setting. ``low``/``high`` are inclusive bounds, ``above``/
    ``below`` strict ones (None: unbounded). Floats must be finite, ints must fit in int64."""

    low: float | None = None
    high: float | None = None
    above: float | None = None
    below: float | None = None

    def describe(self) -> str:
        """The range as a user reads it: ``>= 1``, ``> 0``, ``in [0, 1)``, ``finite``."""
        lower = self.low if self.above is None else self.above
        upper = self.high if self.below is None else self.below
        if lower is not None and upper is not None:
            opening = "(" if self.above is not None else "["
            closing = ")" if self.below is not None else "]"
            return f"in {opening}{_bound(lower)}, {_bound(upper)}{closing}"
        if lower is not None:
            return f"{'>' if self.above is not None else '>='} {_bound(lower)}"
        if upper is not None:
            return f"{'<' if self.below is not None else '<='} {_bound(upper)}"
        return "finite"

    def contains(self, value: float) -> bool:
        return (
            (self.low is None or value >= self.low)
            and (self.high is None or value <= self.high)
            and (self.above is None or value > self.above)
            and (self.below is None or value < self.below)
        )

    def check(self, key: str, value: object) -> None:
        """Raise a :class:`ConfigError` naming ``key`` unless ``value`` (None: unset) is valid."""
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, numbers.Real):  # numpy's too
            raise ConfigError(f"{key} must be a number, got {shown(value)}")
        if isinstance(value, numbers.Integral):
            if not INT64_MIN <= int(value) <= INT64_MAX:
                raise ConfigError(f"{key} must fit in a 64-bit integer, got {shown(int(value))}")
        elif not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value}")
        if not self.contains(value):
            raise ConfigError(f"{key} must be {self.describe()}, got {shown(value)}")


def setting(
    default: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    above: float | None = None,
    below: float | None = None,
) -> Any:
    """A dataclass field with ``default`` and its valid :class:`Range` (of each element, for a
    tuple), checked by :func:`check_settings`: ``epochs: int = setting(50, low=1)``."""
    return field(default=default, metadata={RANGE: Range(low, high, above, below)})


def check_settings(config: Any, section: str) -> None:
    """Check every field of dataclass ``config`` that declares a :class:`Range`; errors name
    ``section.field`` (``section.field[i]`` for an element of a tuple)."""
    for item in fields(config):
        bounds = item.metadata.get(RANGE)
        if bounds is None:
            continue
        value = getattr(config, item.name)
        if isinstance(value, (tuple, list)):
            for index, element in enumerate(value):
                bounds.check(f"{section}.{item.name}[{index}]", element)
        else:
            bounds.check(f"{section}.{item.name}", value)
