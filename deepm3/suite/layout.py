"""Where a suite keeps everything: one place that builds every path, for writers and readers.

Two folders: ``runs`` (working run directories with checkpoints, never committed) and ``out``
(small committed results: run records, search results, analysis files, the report)::

    runs/<stage>/<row>-s<seed>/            a run directory (checkpoints); <name>.out its log
    runs/search/<model>-trial<n>/          a search trial (removed when it ends)
    runs/search/worker<w>.out              a search worker's log
    out/<stage>/runs/<row>-s<seed>/        the run's committed records
    out/search/optuna.db                   the default Optuna storage
    out/search/best.json, trials_<model>.csv
    out/analyses/perturb/<stage>-<name>.csv.gz, solver/<name>.json, efficiency/<name>.json
    out/analyses/user_cv.csv.gz, parameters.json
    out/suite_log.jsonl, report.md, core.png, irregularity.png, robustness.png
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FIGURES = ("core", "irregularity", "robustness")


@dataclass(frozen=True)
class Layout:
    runs: Path  # working run directories (checkpoints)
    out: Path  # committed results

    # training runs
    def run_dir(self, stage: str, name: str) -> Path:
        return self.runs / stage / name

    def run_log(self, stage: str, name: str) -> Path:
        return self.run_dir(stage, name).with_suffix(".out")

    def record_dir(self, stage: str, name: str) -> Path:
        return self.out / stage / "runs" / name

    def stage_out(self, stage: str) -> Path:
        """Where ``collect`` puts a stage's records (``<stage>/runs/<name>``)."""
        return self.out / stage

    def records(self, stage: str) -> Path:
        return self.out / stage / "runs"

    # search
    @property
    def search(self) -> Path:
        return self.out / "search"

    @property
    def optuna_db(self) -> Path:
        return self.search / "optuna.db"

    @property
    def best(self) -> Path:
        return self.search / "best.json"

    def trials(self, model: str) -> Path:
        return self.search / f"trials_{model}.csv"

    def trial_dir(self, name: str) -> Path:
        return self.runs / "search" / name

    def worker_log(self, worker: int) -> Path:
        return self.runs / "search" / f"worker{worker}.out"

    # analyses
    @property
    def analyses(self) -> Path:
        return self.out / "analyses"

    def perturb_ranks(self, stage: str, name: str) -> Path:
        return self.analyses / "perturb" / f"{stage}-{name}.csv.gz"

    def perturb_seeds(self, stage: str, row: str) -> list[Path]:
        """Every seed's perturbation ranks of one row, by name."""
        return sorted((self.analyses / "perturb").glob(f"{stage}-{row}-s*.csv.gz"))

    def solver_file(self, name: str) -> Path:
        return self.analyses / "solver" / f"{name}.json"

    def solver_files(self) -> list[Path]:
        return sorted((self.analyses / "solver").glob("*.json"))

    def efficiency_file(self, name: str) -> Path:
        return self.analyses / "efficiency" / f"{name}.json"

    def efficiency_files(self) -> list[Path]:
        return sorted((self.analyses / "efficiency").glob("*.json"))

    @property
    def user_cv(self) -> Path:
        return self.analyses / "user_cv.csv.gz"

    @property
    def parameters(self) -> Path:
        return self.analyses / "parameters.json"

    # the suite's own files
    @property
    def log(self) -> Path:
        return self.out / "suite_log.jsonl"

    @property
    def report(self) -> Path:
        return self.out / "report.md"

    def figure(self, name: str) -> Path:
        """A report figure, ``name`` in :data:`FIGURES`; the report links it by file name."""
        if name not in FIGURES:
            raise ValueError(f"unknown figure {name!r}; valid: {', '.join(FIGURES)}")
        return self.out / f"{name}.png"
