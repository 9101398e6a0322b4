"""The suites, their training budgets and their analysis designs, one table per suite.

A :class:`Budget` says how much every trainable model is trained (history length, loss, batch
size, epochs, patience, time cap, search trials, seeds); a :class:`Design` says what is measured
on the trained runs (perturbation grid, solver steps, Lipschitz settings, the paper's protocol).
Every trainable model gets the same budget; only the searched hyper-parameters differ. The
suites (:data:`SUITES`: ``ml1m``, ``amazon``) share every stage and every line of code; only the
data, the budgets and the designs differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from deepm3.errors import ConfigError


@dataclass(frozen=True)
class Budget:
    """How much training every model gets."""

    name: str
    dataset: str  # the data set actually run (smoke runs ML-100K, not ML-1M); "" = the suite's
    data: dict[str, Any]  # data overrides shared by every run
    train: dict[str, Any]  # train overrides shared by every run (core and ablations)
    trials: int  # search trials per trainable model (the same for every model)
    trial_train: dict[str, Any]  # train overrides of a search trial (shorter than core runs)
    seeds: tuple[int, ...]
    widths: tuple[int, ...]  # hidden sizes the search may pick
    note: str = ""
    # The search's own settings (deepm3.suite.search); the defaults are the committed quick runs'.
    spread_trials: int = 0  # first trials of every study: lr log-evenly over its range
    prune_warmup: int = 1  # epochs a trial runs before median pruning may stop it
    search_variants: bool = False  # DeepM3's variant rows (RK4, no ODE, target time) own a study
    # The time-aware variant rows (deepm3.suite.design.VARIANT_ROWS) are trained too, each with
    # its own study when search_variants
    variant_rows: bool = False
    # Model options fixed in every search trial, core and ablation run of a registry model (not
    # in the paper-protocol rows, which keep the paper's models), e.g. the calibration ladder's
    # output LayerNorm for the recurrent models (RECURRENT_OUTPUT)
    model: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Design:
    """What the analyses measure on the trained runs."""

    sigmas_hours: tuple[float, ...]  # Gaussian timestamp jitter, standard deviation in hours
    drop_ps: tuple[float, ...]  # event dropout probabilities
    local_window: int  # order shuffle inside windows of this many events
    lipschitz: tuple[tuple[str, float], ...]  # (mode, L) trained besides the core setting
    solver_steps: tuple[int, ...] = (1, 2, 4)
    perturb_repeats: int = 1  # random perturbations are drawn this many times (seeds 0..)
    paper_protocol: dict[str, Any] = field(default_factory=dict)  # the paper's setting, one row


# The paper's own protocol: 20-item windows, BPR with one negative, 100 sampled negatives.
PAPER_PROTOCOL = {
    "data": {"max_len": 20},
    "train": {"loss": "bpr", "loss_negatives": 1, "logq": False},
    "eval": {"protocol": "sampled", "num_negatives": 100},
}
SPECTRAL_FULL = (
    ("none", 1.0),
    ("bounded", 1.0),
    ("spectral", 0.25),
    ("spectral", 0.5),
    ("spectral", 2.0),
    ("spectral", 4.0),
)

# The standard budget's training, shared by both suites: equal epoch caps for every model, no
# time cap (a comparison must not be decided by seconds), a warm-up before patience counts, and
# one loss for every model: the calibration ladder's (results/amazon/amazon-beauty/standard/
# calibration.md), a sampled softmax over 2048 negatives shared per batch, drawn by popularity
# (count ** 0.5, GRU4Rec's) with the logQ correction. On Beauty it took DeepM3's best validation
# NDCG@10 from 0.027 (256 uniform negatives, still rising at epoch 10) to 0.045 at epoch 13, and
# SASRec's validation curve rises faster with it (0.038 vs 0.019 at epoch 6). Each random
# batch is computed in chunks of similar length without their padding (train.batching=chunked):
# the ladder's updates, an epoch 1.9-3.2x faster on Beauty, where 88% of a padded window is
# padding. Batches of one length (batching=length, 2.7-4.7x) cost DeepM3 and GRU4Rec 3-8% of
# test NDCG@10 on the ladder (SASRec nothing): a bias against the recurrent models, not used.
STANDARD_TRAIN = {
    "epochs": 200,
    "patience": 10,
    "min_epochs": 5,
    "batch_size": 256,
    "batching": "chunked",
    "loss": "shared_ce",
    "loss_negatives": 2048,
    "loss_sampling": "popularity",
    "loss_sampling_alpha": 0.5,
    "logq": True,
}
# What the calibration ladder gave the recurrent models besides the loss (issue 19: "what
# recurrent models are known to need"): a LayerNorm of the scored state, whose tanh bound caps
# the logits' scale (rung r6-output-norm, chosen by validation among DeepM3's rungs: 0.0469
# against 0.0452 without it, 1 seed). SASRec's and TiSASRec's blocks end in a LayerNorm already.
# DeepM3's rows (RK4, no ODE, target time, decay, gaps) are registry model deepm3 and get it too.
RECURRENT_OUTPUT = {"gru4rec": {"output_norm": "layer"}, "deepm3": {"output_norm": "layer"}}
# The search of the standard and full budgets: four first trials spread over the learning rate,
# five epochs before pruning, every trained row of the core table searched on its own, the
# time-aware variant rows among them (quick and smoke train neither).
STANDARD_SEARCH: dict[str, Any] = {
    "spread_trials": 4,
    "prune_warmup": 5,
    "search_variants": True,
    "variant_rows": True,
}

BUDGETS: dict[str, Budget] = {  # the MovieLens-1M suite
    "smoke": Budget(
        name="smoke",
        dataset="ml-100k",
        data={"max_len": 20, "train_windows": "last"},
        train={
            "epochs": 2,
            "patience": 1,
            "min_epochs": 0,  # the shipped warm-up came later: these runs predate it
            "batch_size": 256,
            "loss": "shared_ce",
            "loss_negatives": 128,
            "time_budget": 30.0,
        },
        trials=2,
        trial_train={"epochs": 1, "time_budget": 15.0},
        seeds=(0, 1),
        widths=(32,),
        note="every stage on ML-100K with 1-2 epochs: checks the pipeline, not the models",
    ),
    "quick": Budget(
        name="quick",
        dataset="ml-1m",
        data={"max_len": 50, "train_windows": "all"},
        train={
            "epochs": 60,
            "patience": 3,
            "min_epochs": 0,  # the shipped warm-up came later: these runs predate it
            "batch_size": 256,
            "loss": "shared_ce",
            "loss_negatives": 256,
            "time_budget": 360.0,
        },
        trials=4,
        trial_train={"epochs": 6, "time_budget": 100.0},
        seeds=(0, 1, 2),
        widths=(64, 128),
        note=(
            "2 CPU cores, <= 2 h: histories cut to the last 50 events, every model trained with a "
            "sampled softmax over 256 uniform negatives shared per batch (the full softmax over "
            "3,266 items cost 5x more per step on this CPU), "
            "4 search trials of <= 6 epochs per model, core runs capped at 360 s of training"
        ),
    ),
    "standard": Budget(
        name="standard",
        dataset="ml-1m",
        data={"max_len": 200, "train_windows": "all"},
        train=STANDARD_TRAIN,
        model=RECURRENT_OUTPUT,
        trials=8,
        trial_train={"epochs": 15},
        # 3 seeds, the minimum: 14 trained rows with 2048 negatives take days of 2 CPU
        # cores already (the full budget, for a GPU, keeps 5)
        seeds=(0, 1, 2),
        widths=(64, 128),
        **STANDARD_SEARCH,
        note=(
            "2 CPU cores over days, stopped and resumed: 200-event histories, every model to "
            "convergence (at most 200 epochs, patience 10 after a 5-epoch warm-up, no time cap), "
            "8 search trials of 15 epochs per row (DeepM3's variants searched on their own), "
            "3 seeds, one loss for every model (2048 popularity-sampled negatives with logQ: the "
            "calibration ladder's), GRU4Rec and DeepM3 with the ladder's output LayerNorm, each "
            "batch computed in chunks of similar length without padding"
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
        **STANDARD_SEARCH,
        note="the paper's settings (200-event histories, full softmax), for a GPU",
    ),
}
DESIGNS: dict[str, Design] = {
    "smoke": Design(
        sigmas_hours=(0.0, 24.0),
        drop_ps=(0.0, 0.3),
        local_window=5,
        lipschitz=(("none", 1.0),),
        solver_steps=(1, 2),
        paper_protocol=PAPER_PROTOCOL,
    ),
    "quick": Design(
        sigmas_hours=(0.0, 1.0, 24.0, 168.0),
        drop_ps=(0.0, 0.1, 0.3, 0.5),
        local_window=5,
        lipschitz=(("none", 1.0), ("bounded", 1.0), ("spectral", 0.25), ("spectral", 4.0)),
        paper_protocol=PAPER_PROTOCOL,
    ),
    "standard": Design(
        sigmas_hours=(0.0, 1.0, 24.0, 168.0),
        drop_ps=(0.0, 0.1, 0.3, 0.5),
        local_window=5,
        lipschitz=(("none", 1.0), ("bounded", 1.0), ("spectral", 0.25), ("spectral", 4.0)),
        paper_protocol=PAPER_PROTOCOL,
    ),
    "full": Design(
        sigmas_hours=(0.0, 1.0, 6.0, 24.0, 168.0, 720.0),
        drop_ps=(0.0, 0.1, 0.2, 0.3, 0.5),
        local_window=5,
        lipschitz=SPECTRAL_FULL,
        perturb_repeats=3,
        paper_protocol=PAPER_PROTOCOL,
    ),
}


# Amazon 5-core: short histories (Beauty: median 6 events, 95% <= 21), many more users and items
# than ML-1M, day-granularity timestamps (jitter in days). Runs are capped by epochs, not seconds,
# so that a run's result does not depend on what else the machine is doing.
AMAZON_BUDGETS: dict[str, Budget] = {
    "smoke": replace(
        BUDGETS["smoke"],
        dataset="amazon-all-beauty",
        note="every stage on the small All_Beauty 2018 5-core file: checks the pipeline only",
    ),
    "quick": Budget(
        name="quick",
        dataset="",  # the suite's data set (DATASET=...)
        data={"max_len": 20, "train_windows": "all"},
        train={
            "epochs": 20,
            "patience": 3,
            "min_epochs": 0,  # the shipped warm-up came later: these runs predate it
            "batch_size": 256,
            "loss": "shared_ce",
            "loss_negatives": 256,
            "time_budget": 600.0,
        },
        trials=4,
        trial_train={"epochs": 4, "time_budget": 200.0},
        seeds=(0, 1, 2),
        widths=(64, 128),
        note=(
            "2 CPU cores, <= 2 h on Beauty-sized data: histories cut to the last 20 events (95% of "
            "Beauty users have <= 21), every model trained with a sampled softmax over 256 "
            "uniform negatives shared per batch, at most 20 epochs (patience 3), "
            "4 search trials of <= 4 epochs per model"
        ),
    ),
    "standard": replace(
        BUDGETS["standard"],
        dataset="",
        data={"max_len": 50, "train_windows": "all"},
        note=(
            "2 CPU cores over days, stopped and resumed: 50-event histories (as published "
            "Beauty runs), every model to convergence (at most 200 epochs, patience 10 after a "
            "5-epoch warm-up, no time cap), 8 search trials of 15 epochs per row (DeepM3's "
            "variants searched on their own), 3 seeds, one loss for every model (2048 "
            "popularity-sampled negatives with logQ: the calibration ladder's), GRU4Rec and "
            "DeepM3 with the ladder's output LayerNorm, each batch computed in chunks of similar "
            "length without padding"
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
        **STANDARD_SEARCH,
        note=(
            "the paper's Amazon Books setting for a GPU: 50-event histories, a sampled softmax "
            "over 1,024 shared uniform negatives with the logQ correction (the full softmax "
            "over 370k items does not fit), 20 search trials, 5 seeds"
        ),
    ),
}
AMAZON_DESIGNS: dict[str, Design] = {
    "smoke": replace(
        DESIGNS["smoke"],
        sigmas_hours=(0.0, 168.0),
        # All_Beauty has 85 items: 20 sampled negatives instead of the paper's 100
        paper_protocol={**PAPER_PROTOCOL, "eval": {"protocol": "sampled", "num_negatives": 20}},
    ),
    "quick": Design(
        sigmas_hours=(0.0, 24.0, 168.0, 720.0),
        drop_ps=(0.0, 0.1, 0.3, 0.5),
        local_window=5,
        lipschitz=(("none", 1.0), ("spectral", 4.0)),
        paper_protocol=PAPER_PROTOCOL,
    ),
    "standard": Design(
        sigmas_hours=(0.0, 24.0, 168.0, 720.0),
        drop_ps=(0.0, 0.1, 0.3, 0.5),
        local_window=5,
        lipschitz=(("none", 1.0), ("spectral", 4.0)),
        paper_protocol=PAPER_PROTOCOL,
    ),
    "full": Design(
        sigmas_hours=(0.0, 24.0, 72.0, 168.0, 720.0),
        drop_ps=(0.0, 0.1, 0.2, 0.3, 0.5),
        local_window=5,
        lipschitz=SPECTRAL_FULL,
        perturb_repeats=3,
        paper_protocol=PAPER_PROTOCOL,
    ),
}


@dataclass(frozen=True)
class Suite:
    """One experiment suite: its data set(s), budgets, designs and where its results go."""

    name: str
    title: str
    default_dataset: str
    budgets: dict[str, Budget]
    designs: dict[str, Design]
    results: str  # results folder of the default data set's ``quick`` budget
    headline: str | None = None  # the report's first section after the claims

    def budget(self, name: str, dataset: str | None = None) -> Budget:
        """The budget ``name`` for ``dataset`` (default: the budget's own, else the suite's)."""
        if name not in self.budgets:
            raise ConfigError(f"unknown budget {name!r}; valid: {', '.join(self.budgets)}")
        budget = self.budgets[name]
        return replace(budget, dataset=dataset or budget.dataset or self.default_dataset)

    def design(self, name: str) -> Design:
        """The analysis design that goes with budget ``name``."""
        if name not in self.designs:
            raise ConfigError(f"unknown budget {name!r}; valid: {', '.join(self.designs)}")
        return self.designs[name]

    def out(self, budget: Budget) -> Path:
        """``results/<suite>[/<dataset>]`` for quick, ``.../<budget>`` for standard and full;
        smoke under runs/."""
        if budget.name == "smoke":
            return Path("runs") / f"{self.name}-{Path(budget.dataset).stem}-smoke" / "out"
        root = Path(self.results)
        if budget.dataset != self.default_dataset:
            root = root / Path(budget.dataset).stem
        return root if budget.name == "quick" else root / budget.name


SUITES: dict[str, Suite] = {
    "ml1m": Suite("ml1m", "MovieLens-1M", "ml-1m", BUDGETS, DESIGNS, "results/ml1m"),
    "amazon": Suite(
        "amazon",
        "Amazon 5-core",
        "amazon-books",
        AMAZON_BUDGETS,
        AMAZON_DESIGNS,
        "results/amazon",
        "robustness",
    ),
}
