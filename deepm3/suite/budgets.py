"""The suite's budgets: what ``BUDGET=smoke|quick|full`` changes, in one table.

Every trainable model gets the same settings within a budget (history length, loss, batch size,
epochs, patience, time cap, search trials); only the searched hyper-parameters differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    "train": {"loss": "bpr", "loss_negatives": 1},
    "eval": {"protocol": "sampled", "num_negatives": 100},
}

BUDGETS: dict[str, Budget] = {
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
