"""The soak's latency over time (``serve_soak.py``), from its JSON only:

    python benchmarks/soak_plot.py benchmarks/results/serve_soak_cpu.json

Top: p50 (dashed) and p99 (solid) client latency per second, per kind of request (the bad
requests pooled). Bottom: the server's resident memory, sampled once a second, with the 10%
band around its value at the start of the window."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import ScalarFormatter  # noqa: E402


def plot(report: dict, path: Path) -> None:
    series = report["series"]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True, height_ratios=[2, 1])
    for number, (group, values) in enumerate(series["per_second"].items()):
        color = f"C{number}"
        seconds = [s + 0.5 for s in range(len(values["p99_ms"]))]
        top.plot(seconds, values["p99_ms"], color=color, label=f"{group} p99")
        top.plot(seconds, values["p50_ms"], color=color, linestyle="--", alpha=0.6)
    top.set_ylabel("client latency (ms)\nsolid p99, dashed p50")
    top.set_yscale("log")
    top.yaxis.set_major_formatter(ScalarFormatter())
    top.yaxis.set_minor_formatter(ScalarFormatter())
    top.tick_params(axis="y", which="minor", labelsize=7)
    top.legend(loc="upper right", fontsize=8, ncol=2)
    top.grid(alpha=0.3, which="both")
    load = report["load_average_at_start"][0], report["load_average_at_end"][0]
    top.set_title(
        f"deepm3 serve soak: {report['run']['model']} ({report['run']['dataset']}), "
        f"{report['clients']} clients, {report['duration_s']:g} s, {report['device']} "
        f"{report['threads']} thread(s), load {load[0]:g} -> {load[1]:g}",
        fontsize=9,
    )
    times = [t for t, _ in series["rss_mib"]]
    rss = [m for _, m in series["rss_mib"]]
    start = report["rss"]["start_mib"]
    tolerance = report["rss"]["tolerance"]
    bottom.plot(times, rss, color="k", marker=".", label="server RSS")
    bottom.axhspan(
        start * (1 - tolerance),
        start * (1 + tolerance),
        color="g",
        alpha=0.1,
        label=f"start \u00b1 {tolerance:.0%}",
    )
    bottom.set_ylabel("RSS (MiB)")
    bottom.set_xlabel("seconds into the measured window")
    bottom.grid(alpha=0.3)
    bottom.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    source = Path(sys.argv[1])
    plot(json.loads(source.read_text()), source.with_suffix(".png"))
