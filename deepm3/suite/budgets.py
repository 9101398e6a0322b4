"""The suites and their budgets: what ``BUDGET=smoke|quick|full`` changes, in one table per suite.

Every trainable model gets the same settings within a budget (history length, loss, batch size,
epochs, patience, time cap, search trials); only the searched hyper-parameters differ. The suites
(:data:`SUITES`: ``ml1m``, ``amazon``) share every stage and every line of code; only the data and
the budgets differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Budget:
    name: str
    dataset: str  # the data set actually run (smoke runs ML-100K, not ML-1M)
    data: dict[str, Any]  # data overrides shared by every run
    train: dict[str, Any]  # train overrides shared by every run (core and ablations)
    trials: int  # search trials per trainable model (the same for every model)
    trial_train: dict[str, Any]  # train overrides of a search trial (shorter than core runs)
    seeds: tuple[int, ...]
    widths: tuple[int, ...]  # hidden sizes the search may pick
    sigmas_hours: tuple[float, ...]  # Gaussian timestamp jitter, standard deviation in hours
    drop_ps: tuple[float, ...]  # event dropout probabilities
    local_window: int  # order shuffle inside windows of this many events
    lipschitz: tuple[tuple[str, float], ...]  # (mode, L) trained besides the core setting
    solver_steps: tuple[int, ...] = (1, 2, 4)
    perturb_repeats: int = 1  # random perturbations are drawn this many times (seeds 0..)
    paper_protocol: dict[str, Any] = field(default_factory=dict)  # the paper's setting, one row
    note: str = ""


# The paper's own protocol: 20-item windows, BPR with one negative, 100 sampled negatives.
PAPER_PROTOCOL = {
    "data": {"max_len": 20},
    "train": {"loss": "bpr", "loss_negatives": 1, "logq": False},
    "eval": {"protocol": "sampled", "num_negatives": 100},
}

BUDGETS: dict[str, Budget] = {  # the MovieLens-1M suite
    "smoke": Budget(
        name="smoke",
        dataset="ml-100k",
        data={"max_len": 20, "train_windows": "last"},
        train={
            "epochs": 2,
            "patience": 1,
            "batch_size": 256,
            "loss": "shared_ce",
            "loss_negatives": 128,
            "time_budget": 30.0,
        },
        trials=2,
        trial_train={"epochs": 1, "time_budget": 15.0},
        seeds=(0, 1),
        widths=(32,),
        sigmas_hours=(0.0, 24.0),
        drop_ps=(0.0, 0.3),
        local_window=5,
        lipschitz=(("none", 1.0),),
        solver_steps=(1, 2),
        paper_protocol=PAPER_PROTOCOL,
        note="every stage on ML-100K with 1-2 epochs: checks the pipeline, not the models",
    ),
    "quick": Budget(
        name="quick",
        dataset="ml-1m",
        data={"max_len": 50, "train_windows": "all"},
        train={
            "epochs": 60,
            "patience": 3,
            "batch_size": 256,
            "loss": "shared_ce",
            "loss_negatives": 256,
            "time_budget": 360.0,
        },
        trials=4,
        trial_train={"epochs": 6, "time_budget": 100.0},
        seeds=(0, 1, 2),
        widths=(64, 128),
        sigmas_hours=(0.0, 1.0, 24.0, 168.0),
        drop_ps=(0.0, 0.1, 0.3, 0.5),
        local_window=5,
        lipschitz=(("none", 1.0), ("bounded", 1.0), ("spectral", 0.25), ("spectral", 4.0)),
        paper_protocol=PAPER_PROTOCOL,
        note=(
            "2 CPU cores, <= 2 h: histories cut to the last 50 events, every model trained with a "
            "sampled softmax over 256 uniform negatives shared per batch (the full softmax over "
            "3,266 items cost 5x more per step on this CPU), "
            "4 search trials of <= 6 epochs per model, core runs capped at 360 s of training"
        ),
    ),
    "full": Budget(
        name="full",
        dataset="ml-1m",
        data={"max_len": 200, "train_windows": "all"},
        train={"epochs": 200, "patience": 10, "batch_size": 128, "time_budget": 1800.0},
        trials=20,
        trial_train={"epochs": 30, "time_budget": 300.0},
        seeds=(0, 1, 2, 3, 4),
        widths=(64, 128, 256),
        sigmas_hours=(0.0, 1.0, 6.0, 24.0, 168.0, 720.0),
        drop_ps=(0.0, 0.1, 0.2, 0.3, 0.5),
        local_window=5,
        lipschitz=(
            ("none", 1.0),
            ("bounded", 1.0),
            ("spectral", 0.25),
            ("spectral", 0.5),
            ("spectral", 2.0),
            ("spectral", 4.0),
        ),
        perturb_repeats=3,
        paper_protocol=PAPER_PROTOCOL,
        note="the paper's settings (200-event histories, full softmax), for a GPU",
    ),
}


# Amazon 5-core: short histories (Beauty: median 6 events, 95% <= 21), many more users and items
# than ML-1M, day-granularity timestamps (jitter in days). Runs are capped by epochs, not seconds,
# so that a run's result does not depend on what else the machine is doing.
AMAZON_BUDGETS: dict[str, Budget] = {
    "smoke": replace(
        BUDGETS["smoke"],
        dataset="amazon-all-beauty",
        sigmas_hours=(0.0, 168.0),
        # All_Beauty has 85 items: 20 sampled negatives instead of the paper's 100
        paper_protocol={**PAPER_PROTOCOL, "eval": {"protocol": "sampled", "num_negatives": 20}},
        note="every stage on the small All_Beauty 2018 5-core file: checks the pipeline only",
    ),
    "quick": Budget(
        name="quick",
        dataset="",  # the suite's data set (DATASET=...)
        data={"max_len": 20, "train_windows": "all"},
        train={
            "epochs": 20,
            "patience": 3,
            "batch_size": 256,
            "loss": "shared_ce",
            "loss_negatives": 256,
            "time_budget": 600.0,
        },
        trials=4,
        trial_train={"epochs": 4, "time_budget": 200.0},
        seeds=(0, 1, 2),
        widths=(64, 128),
        sigmas_hours=(0.0, 24.0, 168.0, 720.0),
        drop_ps=(0.0, 0.1, 0.3, 0.5),
        local_window=5,
        lipschitz=(("none", 1.0), ("spectral", 4.0)),
        paper_protocol=PAPER_PROTOCOL,
        note=(
            "2 CPU cores, <= 2 h on Beauty-sized data: histories cut to the last 20 events (95% of "
            "Beauty users have <= 21), every model trained with a sampled softmax over 256 "
            "uniform negatives shared per batch, at most 20 epochs (patience 3), "
            "4 search trials of <= 4 epochs per model"
        ),
    ),
    "full": Budget(
        name="full",
        dataset="",
        data={"max_len": 50, "train_windows": "all"},
        train={
            "epochs": 200,
            "patience": 10,
            "batch_size": 256,
            "loss": "shared_ce",
            "loss_negatives": 1024,
            "logq": True,
            "time_budget": 3600.0,
        },
        trials=20,
        trial_train={"epochs": 20, "time_budget": 600.0},
        seeds=(0, 1, 2, 3, 4),
        widths=(64, 128, 256),
        sigmas_hours=(0.0, 24.0, 72.0, 168.0, 720.0),
        drop_ps=(0.0, 0.1, 0.2, 0.3, 0.5),
        local_window=5,
        lipschitz=BUDGETS["full"].lipschitz,
        perturb_repeats=3,
        paper_protocol=PAPER_PROTOCOL,
        note=(
            "the paper's Amazon Books setting for a GPU: 50-event histories, a sampled softmax "
            "over 1,024 shared uniform negatives with the logQ correction (the full softmax "
            "over 370k items does not fit), 20 search trials, 5 seeds"
        ),
    ),
}


@dataclass(frozen=True)
class Suite:
    """One experiment suite: its data set(s), budgets and where its results go."""

    name: str
    title: str
    default_dataset: str
    budgets: dict[str, Budget]
    results: str  # results folder of the default data set's ``quick`` budget
    headline: str | None = None  # the report's first section after the claims

    def budget(self, name: str, dataset: str | None = None) -> Budget:
        """The budget ``name`` for ``dataset`` (default: the budget's own, else the suite's)."""
        from deepm3.errors import ConfigError

        if name not in self.budgets:
            raise ConfigError(f"unknown budget {name!r}; valid: {', '.join(self.budgets)}")
        budget = self.budgets[name]
        return replace(budget, dataset=dataset or budget.dataset or self.default_dataset)

    def out(self, budget: Budget) -> Path:
        """``results/<suite>[/<dataset>]`` for quick, ``.../full`` for full; smoke under runs/."""
        if budget.name == "smoke":
            return Path("runs") / f"{self.name}-{Path(budget.dataset).stem}-smoke" / "out"
        root = Path(self.results)
        if budget.dataset != self.default_dataset:
            root = root / Path(budget.dataset).stem
        return root if budget.name == "quick" else root / budget.name


SUITES: dict[str, Suite] = {
    "ml1m": Suite("ml1m", "MovieLens-1M", "ml-1m", BUDGETS, "results/ml1m"),
    "amazon": Suite(
        "amazon", "Amazon 5-core", "amazon-books", AMAZON_BUDGETS, "results/amazon", "robustness"
    ),
}
