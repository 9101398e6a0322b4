"""Comparison tables and plots from run records (reads result files only).

``collect`` copies the small files of each run (config, provenance, metrics, log, per-user ranks;
never checkpoints) into ``<out>/runs/<run name>/``, where they are committed beside the table;
``write_report`` reads only those committed records. Runs named ``<label>-s<seed>`` are seeds of
one row, reported as mean +- standard deviation over seeds. Every record is checked against what
the table needs (:data:`SCHEMA`) before anything is copied or written, so a damaged or unfinished
run is one error that names its file.
"""

from __future__ import annotations

import re
import shutil
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from deepm3.errors import ConfigError, DataError  # noqa: E402
from deepm3.train.rundir import failure, read_record  # noqa: E402

COLUMNS = ("ndcg@10", "hr@10", "mrr@10", "ndcg@20", "hr@20")
RECORD_FILES = (
    "config.json",
    "provenance.json",
    "metrics.json",
    "log.jsonl",
    "per_user_valid.csv.gz",
    "per_user_test.csv.gz",
)
SEED_SUFFIX = re.compile(r"-s\d+$")
NUMBER = (int, float)
MISSING = object()
# What the report reads from each record: dotted key -> allowed types.
SCHEMA: dict[str, dict[str, tuple[type, ...]]] = {
    "metrics": {
        **{f"test.{column}": NUMBER for column in COLUMNS},
        "test_untied.ndcg@10": NUMBER,
        "parameters.total": NUMBER,
        "seconds_per_epoch": (*NUMBER, type(None)),
        "epochs_run": (int,),
        "protocol.exclude_seen": (bool,),
        "protocol.untied_users": NUMBER,
    },
    "provenance": {
        "data.dataset": (str,),
        **{f"data.filtered.{key}": NUMBER for key in ("users", "items", "interactions")},
        "data_fingerprint": (str, type(None)),
        "device": (str,),
        "torch_threads": NUMBER,
        "git_commit": (str,),
    },
    "config": {"model_name": (str,)},
}
OPTIONAL = {"test_untied.ndcg@10"}  # absent when every evaluated target is tied


def untied_ndcg(metrics: list[dict]) -> list[float]:
    """Each record's NDCG@10 on untied targets, where there were any."""
    return [m["test_untied"]["ndcg@10"] for m in metrics if "ndcg@10" in m["test_untied"]]


def read_run_record(folder: Path) -> dict[str, dict]:
    """``folder``'s config, provenance and metrics, each checked against :data:`SCHEMA`."""
    record = {}
    for name, fields in SCHEMA.items():
        path = folder / f"{name}.json"
        record[name] = read_record(path)
        for dotted, kinds in fields.items():
            value: object = record[name]
            for key in dotted.split("."):
                value = value.get(key, MISSING) if isinstance(value, dict) else MISSING
            if value is MISSING and dotted in OPTIONAL:
                continue
            if value is MISSING:
                raise DataError(f"{path}: damaged or incomplete, no {dotted!r}")
            if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                raise DataError(f"{path}: damaged, {dotted} is {value!r:.40}")
    return record


def _check_finished(run_dir: Path) -> None:
    """Raise a clear error unless ``run_dir`` holds a finished run with intact records."""
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: not a run directory (no such folder)")
    if not (run_dir / "metrics.json").exists():
        reason = failure(run_dir)
        state = f"the run failed: {reason}" if reason else "not a finished run"
        raise ConfigError(
            f"{run_dir}: no metrics.json ({state}); continue it with "
            f"'deepm3 train --resume {run_dir}'"
        )
    read_run_record(run_dir)


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder; --out needs a folder")


def collect(run_dirs: list[Path], out: Path) -> list[Path]:
    """Copy each run's records to ``out/runs/<name>``; return the copies' folders."""
    names = [Path(d).name for d in run_dirs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ConfigError(f"run directories must have distinct names; repeated: {duplicated}")
    _check_out(out)
    for run_dir in map(Path, run_dirs):  # all checked before any is copied
        _check_finished(run_dir)
    copies = []
    for run_dir in map(Path, run_dirs):
        target = out / "runs" / run_dir.name
        for name in RECORD_FILES:
            if (run_dir / name).is_file():
                _copy(run_dir / name, target / name)
        copies.append(target)
    return copies


def _copy(source: Path, target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    except OSError as exc:
        where = exc.filename or source
        raise ConfigError(f"{where}: cannot copy {source} ({exc.strerror or exc})") from None


def load_records(out: Path) -> dict[str, list[dict]]:
    """Committed records under ``out/runs``, grouped by row label (the name less ``-s<seed>``)."""
    _check_out(out)
    groups: dict[str, list[dict]] = {}
    for folder in sorted((out / "runs").glob("*/")):
        record = read_run_record(folder)
        groups.setdefault(SEED_SUFFIX.sub("", folder.name), []).append(record)
    if not groups:
        raise ConfigError(f"{out}/runs holds no run records")
    # count baselines first, then trainable models, each alphabetically
    return dict(sorted(groups.items(), key=lambda g: (g[1][0]["metrics"]["epochs_run"] > 0, g[0])))


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def markdown_table(groups: dict[str, list[dict]]) -> str:
    header = ["model", *COLUMNS, "ndcg@10 untied", "seeds", "params", "s/epoch", "epochs"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, records in groups.items():
        metrics = [r["metrics"] for r in records]
        epoch_seconds = [m["seconds_per_epoch"] for m in metrics if m["seconds_per_epoch"]]
        cells = [
            label,
            *(mean_std([m["test"][c] for m in metrics]) for c in COLUMNS),
            mean_std(untied_ndcg(metrics)) if untied_ndcg(metrics) else "- (all tied)",
            str(len(records)),
            f"{metrics[0]['parameters']['total']:,}",
            f"{statistics.mean(epoch_seconds):.1f}" if epoch_seconds else "-",
            "/".join(str(m["epochs_run"]) for m in metrics) if epoch_seconds else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(groups: dict[str, list[dict]], path: Path) -> None:
    names = list(groups)
    figure, axis = plt.subplots(figsize=(1.2 * len(names) + 2.5, 3.4))
    width = 0.38
    for offset, metric in ((-width / 2, "ndcg@10"), (width / 2, "hr@10")):
        values = [[r["metrics"]["test"][metric] for r in groups[n]] for n in names]
        means = [statistics.mean(v) for v in values]
        errors = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]
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


def _describe(groups: dict[str, list[dict]]) -> list[str]:
    records = [r for rs in groups.values() for r in rs]
    data = records[0]["provenance"]["data"]
    fingerprints = sorted({r["provenance"]["data_fingerprint"] for r in records})
    hardware = sorted(
        {
            f"{r['provenance']['device']}, {r['provenance']['torch_threads']} torch threads"
            for r in records
        }
    )
    commits = sorted({r["provenance"]["git_commit"][:12] for r in records})
    return [
        f"Data: {data['dataset']} ({data['filtered']['users']:,} users, "
        f"{data['filtered']['items']:,} items, {data['filtered']['interactions']:,} events; "
        f"fingerprint {', '.join(fingerprints)}). Test split, full ranking over all items, "
        f"history items masked: {records[0]['metrics']['protocol']['exclude_seen']}. "
        f"'untied' keeps only the {records[0]['metrics']['protocol']['untied_users']:,} users "
        "whose test event does not share its timestamp with the previous event.",
        "",
        "Trained on: " + "; ".join(hardware) + ". Seconds per epoch count training only. "
        f"Code: {', '.join(commits)}.",
        "",
        "Each row's command, config, seed, data fingerprint, git commit, log and per-user ranks "
        "are under `runs/` beside this table.",
    ]


def write_report(out: Path, title: str) -> str:
    """Write ``out/table.md`` and ``out/comparison.png`` from ``out/runs``; return the table."""
    groups = load_records(out)
    table = markdown_table(groups)
    lines = [f"# {title}", "", table, "", *_describe(groups)]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    plot(groups, out / "comparison.png")
    return table
