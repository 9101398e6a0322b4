"""Every PNG figure of the reports (matplotlib, Agg backend): one function per figure.

Each draws numbers it is given (means, intervals, effects) and writes the file; none reads
records or computes a statistic.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

CURVES = ("jitter_kept", "jitter_sorted", "dropout")


def comparison_bars(
    names: list[str], series: dict[str, tuple[list[float], list[float]]], path: Path
) -> None:
    """Test metrics per model side by side: ``series`` maps a metric to (means, sds) over
    ``names``, drawn as labelled bars with one-sd error bars."""
    figure, axis = plt.subplots(figsize=(1.2 * len(names) + 2.5, 3.4))
    width = 0.38
    for offset, (metric, (means, errors)) in zip(
        (-width / 2, width / 2), series.items(), strict=True
    ):
        positions = [i + offset for i in range(len(names))]
        bars = axis.bar(positions, means, width, yerr=errors, capsize=2, label=metric)
        axis.bar_label(bars, fmt="%.3f", fontsize=7)
    axis.set_xticks(range(len(names)), names, rotation=20, ha="right")
    axis.set_ylabel("test, full ranking (mean ± sd)")
    axis.legend(frameon=False)
    axis.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    figure.savefig(path, dpi=130)
    plt.close(figure)


def core_bars(rows: list[str], means: list[float], sds: list[float], path: Path) -> None:
    """Test NDCG@10 per row, mean with a one-sd error bar."""
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.bar(rows, means, yerr=sds, capsize=3, color="#4C72B0")
    ax.set_ylabel("test NDCG@10 (mean ± sd over seeds)")
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def robustness_curves(effects: pd.DataFrame, grid: tuple, path: Path) -> None:
    """Relative NDCG@10 change against the noise level, one panel per curve, CI bands."""
    fig, axes = plt.subplots(1, len(CURVES), figsize=(13, 3.8), sharey=True)
    for ax, family in zip(axes, CURVES, strict=True):
        points = [p for p in grid if p.family == family]
        for row in effects["row"].unique():
            sub = effects[effects["row"] == row].set_index("key")
            xs = [p.level for p in points]
            ax.plot(xs, [100 * sub.loc[p.key, "relative"] for p in points], marker="o", label=row)
            ax.fill_between(
                xs,
                [100 * sub.loc[p.key, "ci_low"] for p in points],
                [100 * sub.loc[p.key, "ci_high"] for p in points],
                alpha=0.15,
            )
        ax.set_title(family.replace("_", " "))
        ax.set_xlabel("sigma (hours)" if family.startswith("jitter") else "p")
        ax.axhline(0, color="grey", lw=0.5)
    axes[0].set_ylabel("relative NDCG@10 change (%)")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def irregularity_bars(groups: pd.DataFrame, rows: list[str], path: Path) -> None:
    """NDCG@10 per CV group for each row."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(rows)
    for index, row in enumerate(rows):
        ax.bar(groups["group"] + index * width, groups[f"ndcg:{row}"], width, label=row)
    ax.set_xlabel(f"CV group (1 = most regular, {len(groups)} = most irregular)")
    ax.set_ylabel("test NDCG@10")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
