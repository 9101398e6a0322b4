"""Run records: the small committed files of a finished run, their one schema, and how they
are read, checked and collected.

A run record is a folder holding ``config.json``, ``provenance.json``, ``metrics.json``, the log
and per-user ranks (never checkpoints). :func:`collect` copies them out of run directories;
:func:`read` loads one folder and checks every field a report reads against :data:`SCHEMA`, so a
damaged or unfinished record is one error that names its file and field. Every reader of
records (``deepm3 report``, the suite's report) goes through :func:`read`.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepm3.errors import ConfigError, DataError
from deepm3.train.rundir import failure, read_log, read_record

COLUMNS = ("ndcg@10", "hr@10", "mrr@10", "ndcg@20", "hr@20")
RECORD_FILES = (
    "config.json",
    "provenance.json",
    "metrics.json",
    "log.jsonl",
    "per_user_valid.csv.gz",
    "per_user_test.csv.gz",
)
SEED_SUFFIX = re.compile(r"-s(\d+)$")
NUMBER = (int, float)
OPTIONAL_NUMBER = (*NUMBER, type(None))
MISSING = object()
# What the reports read from each record: dotted key -> allowed types.
SCHEMA: dict[str, dict[str, tuple[type, ...]]] = {
    "metrics": {
        **{f"test.{column}": NUMBER for column in COLUMNS},
        "test.mrr@10": NUMBER,
        "valid.ndcg@10": NUMBER,
        "test_untied.ndcg@10": NUMBER,
        "parameters.total": NUMBER,
        "parameters.embedding": NUMBER,
        "parameters.other": NUMBER,
        "seconds": NUMBER,
        "seconds_per_epoch": OPTIONAL_NUMBER,
        "epochs_run": (int,),
        "best_epoch": (int, type(None)),
        "stopped_by": (str, type(None)),
        "options": (dict,),
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


def row_name(name: str) -> str:
    """The table row of a run named ``<row>-s<seed>``: the name less its seed suffix."""
    return SEED_SUFFIX.sub("", name)


@dataclass(frozen=True)
class RunRecord:
    """One run's checked records; ``name`` is its folder's name (``<row>-s<seed>``)."""

    name: str
    folder: Path
    config: dict[str, Any]
    provenance: dict[str, Any]
    metrics: dict[str, Any]

    @property
    def row(self) -> str:
        """The table row: the name less its ``-s<seed>`` suffix."""
        return row_name(self.name)

    @property
    def seed(self) -> int | None:
        found = SEED_SUFFIX.search(self.name)
        return int(found.group(1)) if found else None

    @property
    def capped_while_rising(self) -> bool:
        """The run was stopped by a cap (time or epochs) while its validation NDCG@10 still rose
        over its last :data:`RISING_WINDOW` validations: it had not converged."""
        if self.metrics.get("stopped_by") not in CAPS:
            return False
        return still_rising(validation_curve(self.folder))

    @property
    def untied_ndcg(self) -> float | None:
        """NDCG@10 on untied targets, None when every evaluated target was tied."""
        return self.metrics["test_untied"].get("ndcg@10")


CAPS = ("time_budget", "epochs")  # stop reasons that are a budget, not convergence
RISING_WINDOW = 5  # validations


def still_rising(curve: list[float], window: int = RISING_WINDOW) -> bool:
    """True when the best of the last ``window`` values beats every value before them (the
    curve was still improving when it ended). curve: validation NDCG@10 in epoch order."""
    if len(curve) <= window:
        return len(curve) > 1 and max(curve[1:]) > curve[0]
    return max(curve[-window:]) > max(curve[:-window])


def validation_curve(folder: Path) -> list[float]:
    """Validation NDCG@10 of every validated epoch in ``folder/log.jsonl`` ([] without one)."""
    path = folder / "log.jsonl"
    if not path.is_file():
        return []
    curve = []
    for number, record in read_log(path):
        valid = record.get("valid")
        if valid is None:
            continue
        try:
            curve.append(float(valid["ndcg@10"]))
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{path}, line {number}: damaged, no validation ndcg@10") from None
    return curve


def _check(record: dict[str, Any], fields: dict[str, tuple[type, ...]], path: Path) -> None:
    for dotted, kinds in fields.items():
        value: object = record
        for key in dotted.split("."):
            value = value.get(key, MISSING) if isinstance(value, dict) else MISSING
        if value is MISSING and dotted in OPTIONAL:
            continue
        if value is MISSING:
            raise DataError(f"{path}: damaged or incomplete, no {dotted!r}")
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise DataError(f"{path}: damaged, {dotted} is {value!r:.40}")


def read(folder: Path) -> RunRecord:
    """``folder``'s config, provenance and metrics, each checked against :data:`SCHEMA`."""
    loaded = {}
    for name, fields in SCHEMA.items():
        path = folder / f"{name}.json"
        loaded[name] = read_record(path)
        _check(loaded[name], fields, path)
    return RunRecord(folder.name, folder, **loaded)


def read_all(runs: Path, skip_unfinished: bool = True) -> list[RunRecord]:
    """Every record under ``runs`` (a ``runs/`` folder), by name. A folder without
    ``metrics.json`` (an unfinished run) is skipped, or an error when ``skip_unfinished`` is
    False; a damaged record is always an error."""
    folders = sorted(runs.glob("*/"))
    if skip_unfinished:
        folders = [f for f in folders if (f / "metrics.json").is_file()]
    return [read(f) for f in folders]


def untied_ndcg(records: list[RunRecord]) -> list[float]:
    """Each record's NDCG@10 on untied targets, where there were any."""
    return [r.untied_ndcg for r in records if r.untied_ndcg is not None]


def check_finished(run_dir: Path) -> None:
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
    read(run_dir)


def check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder; --out needs a folder")


def collect(run_dirs: list[Path], out: Path) -> list[Path]:
    """Copy each run's records to ``out/runs/<name>``; return the copies' folders."""
    names = [Path(d).name for d in run_dirs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ConfigError(f"run directories must have distinct names; repeated: {duplicated}")
    check_out(out)
    for run_dir in map(Path, run_dirs):  # all checked before any is copied
        check_finished(run_dir)
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
