"""How numbers and tables are written in every report: one formatter per kind of number and
one markdown table writer, so that two reports never spell the same figure differently."""

from __future__ import annotations

import math
import statistics

import pandas as pd


def markdown(frame: pd.DataFrame) -> str:
    """A GitHub markdown table of ``frame``'s columns and rows (cells as ``str``)."""
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def fmt(value: float | None, digits: int = 4) -> str:
    """A metric with ``digits`` decimals; ``n/a`` for None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def pct(value: float | None) -> str:
    """A relative change as a signed percentage (``+1.23%``); ``n/a`` for None or NaN."""
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:+.2f}%"


def ci(low: float, high: float) -> str:
    """An interval of relative changes, ``[-1.00%, +2.00%]``."""
    return f"[{pct(low)}, {pct(high)}]"


def p_text(value: float | None) -> str:
    """A p-value: scientific below 0.001, three decimals otherwise."""
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:.1e}" if value < 1e-3 else f"{value:.3f}"


def mean_sd(values: list[float]) -> str:
    """``mean ± sd`` over seeds (sd with ddof=1); the value alone for one seed."""
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"
