"""Comparison tables and plots from run directories (reads result files only)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLUMNS = ("ndcg@10", "hr@10", "mrr@10", "ndcg@20", "hr@20")


def load_runs(run_dirs: list[Path]) -> list[dict]:
    runs = []
    for run_dir in run_dirs:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        provenance = json.loads((run_dir / "provenance.json").read_text())
        config = json.loads((run_dir / "config.json").read_text())
        # Older records lack torch_threads; the config then says what the run asked for.
        provenance.setdefault("torch_threads", config["train"].get("num_threads") or "default")
        runs.append({"dir": str(run_dir), "metrics": metrics, "provenance": provenance})
    return runs


def markdown_table(runs: list[dict]) -> str:
    header = ["model", *COLUMNS, "params", "s/epoch", "epochs"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in runs:
        metrics = run["metrics"]
        epoch_seconds = metrics.get("seconds_per_epoch")
        lines.append(
            "| "
            + " | ".join(
                [
                    metrics["model"],
                    *(f"{metrics['test'][c]:.4f}" for c in COLUMNS),
                    f"{metrics['parameters']['total']:,}",
                    "-" if epoch_seconds is None else f"{epoch_seconds:.1f}",
                    str(metrics.get("epochs_run", "-")),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def plot(runs: list[dict], path: Path) -> None:
    names = [run["metrics"]["model"] for run in runs]
    figure, axis = plt.subplots(figsize=(1.2 * len(names) + 2.5, 3.2))
    width = 0.38
    for offset, metric in ((-width / 2, "ndcg@10"), (width / 2, "hr@10")):
        values = [run["metrics"]["test"][metric] for run in runs]
        bars = axis.bar([i + offset for i in range(len(names))], values, width, label=metric)
        axis.bar_label(bars, fmt="%.3f", fontsize=7)
    axis.set_xticks(range(len(names)), names)
    axis.set_ylabel("test, full ranking")
    axis.legend(frameon=False)
    axis.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    figure.savefig(path, dpi=130)
    plt.close(figure)


def _hardware(provenance: dict) -> str:
    return f"{provenance['device']}, {provenance.get('torch_threads', '?')} torch threads"


def write_report(run_dirs: list[Path], out: Path, title: str) -> str:
    """Write ``out/table.md``, ``out/comparison.png`` and each run's record; return the table."""
    runs = load_runs(run_dirs)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(runs)
    first = runs[0]["provenance"]
    data = first["data"]
    lines = [
        f"# {title}",
        "",
        f"Data: {data['dataset']} ({data['filtered']['users']:,} users, "
        f"{data['filtered']['items']:,} items, {data['filtered']['interactions']:,} events; "
        f"fingerprint {data['fingerprint']}). Test split, full ranking over all items, "
        f"history items masked: {runs[0]['metrics']['protocol']['exclude_seen']}.",
        "",
        table,
        "",
        "Trained on: "
        + "; ".join(sorted({_hardware(run["provenance"]) for run in runs}))
        + ". Seconds per epoch count training only (validation excluded).",
        "",
        "Each row's command, config, seed, data fingerprint and git commit are in `runs/`.",
    ]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    plot(runs, out / "comparison.png")
    runs_out = out / "runs"
    for run in runs:
        target = runs_out / Path(run["dir"]).name
        target.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "provenance.json", "metrics.json"):
            shutil.copy(Path(run["dir"]) / name, target / name)
    return table
