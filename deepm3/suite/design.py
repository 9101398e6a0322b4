"""What a suite trains: its table rows and the run specs of every training stage.

Pure planning, no I/O: :func:`plan_specs` turns a budget, a design and the searched settings
into the :class:`SpecPlan` of the ``core``, ``lipschitz`` and ``paper`` stages; each core row
takes its own searched settings where it had a study (:func:`searched_rows`), else its model's.
The report's row roles (the focus model, the trained baselines it is compared with, the count
rows) live here too, so that planning and reporting read one table. A budget's rows
(:func:`core_rows`) are :data:`CORE_ROWS`, then :data:`VARIANT_ROWS` where it trains them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from deepm3.models import COUNT_BASELINES
from deepm3.suite.budgets import Budget, Design

Sections = dict[str, dict[str, Any]]  # config sections: data/train/eval/model -> overrides


@dataclass(frozen=True)
class Row:
    """One row of the core table: a registry model and options fixed beyond the searched."""

    model: str
    fixed: dict[str, Any] = field(default_factory=dict)
    # trained with that row's searched settings and never searched itself (a time-off twin)
    settings_of: str | None = None

    @property
    def counted(self) -> bool:
        """A count baseline: deterministic, fitted once (one seed), nothing to search."""
        return self.model in COUNT_BASELINES

    @property
    def at_target_time(self) -> bool:
        """Predicts at the target's time (it knows when the next event happens): another
        protocol, not comparable with the rows that predict after the last event."""
        return self.fixed.get("predict_at") == "target_time"


CORE_ROWS: dict[str, Row] = {
    "pop": Row("pop"),
    "last_item": Row("last_item"),
    "gru4rec": Row("gru4rec"),
    "sasrec": Row("sasrec"),
    "tisasrec": Row("tisasrec"),
    "deepm3": Row("deepm3", {"solver": "euler"}),
    "deepm3-rk4": Row("deepm3", {"solver": "rk4"}),
    "deepm3-noode": Row("deepm3", {"ode": "none"}),
    "deepm3-target": Row("deepm3", {"predict_at": "target_time"}),
}
# The time-aware variants, trained by the standard and full budgets only (Budget.variant_rows),
# so that the quick and smoke runs stay what they were. Their time-off twins are TWIN_ROWS
# (timeattn with time_bias=none is SASRec exactly, at timeattn's settings).
VARIANT_ROWS: dict[str, Row] = {
    "deepm3-decay": Row("deepm3", {"ode": "decay"}),  # the closed-form flow
    "deepm3-gaps": Row("deepm3", {"gap_encoding": "shared"}),
    "timeattn": Row("timeattn"),  # SASRec with a learned log-bucketed gap bias
    "timeattn-flow": Row("timeattn", {"flow": "decay", "predict_at": "target_time"}),
    "tisasrec-gaps": Row("tisasrec", {"gap_encoding": "shared"}),
}
# Issue 20's "the same model trained with its time terms off": each goal candidate's twin takes
# the candidate's own searched settings (a separately searched time-blind row, deepm3-noode or
# sasrec, differs in settings too, so a gap to it could come from tuning, not time). Trained with
# the variant rows.
TWIN_ROWS: dict[str, Row] = {
    "deepm3-notime": Row("deepm3", {"ode": "none"}, settings_of="deepm3"),
    "deepm3-rk4-notime": Row("deepm3", {"ode": "none"}, settings_of="deepm3-rk4"),
    "deepm3-decay-notime": Row("deepm3", {"ode": "none"}, settings_of="deepm3-decay"),
    "deepm3-gaps-notime": Row(
        "deepm3", {"ode": "none", "gap_encoding": "none"}, settings_of="deepm3-gaps"
    ),
    "timeattn-notime": Row("timeattn", {"time_bias": "none"}, settings_of="timeattn"),
}
# every row any budget trains, in order
TABLE_ROWS: dict[str, Row] = {**CORE_ROWS, **VARIANT_ROWS, **TWIN_ROWS}
COUNT_ROWS = tuple(name for name, row in CORE_ROWS.items() if row.counted)
FOCUS = "deepm3"  # the model the claims are about
TRAINED_BASELINES = ("gru4rec", "sasrec", "tisasrec")  # what the paper compares it with
# the trained baselines whose scores depend on timestamps (the others are exactly unchanged by
# noise that moves only time: tests/test_models.py checks both ways)
TIME_READING_BASELINES = ("tisasrec",)
NO_FLOW_TWIN = "deepm3-noode"  # the same GRU without the flow: "does the flow help"
# Issue 20's goals (deepm3.suite.goals): the time-aware rows at the last-event protocol that may be
# chosen, by validation NDCG@10, as "the best continuous-time model", each with its time-blind
# twin (the same model reading no time). Not the target-time rows (another question), nor
# tisasrec-gaps (its twin tisasrec reads time too, so no time-blind twin exists).
TIME_AWARE_TWINS: dict[str, str] = {
    row.settings_of: name for name, row in TWIN_ROWS.items() if row.settings_of
}
GOAL_BASELINE = "sasrec"  # the calibrated SASRec the goals compare with
JITTER_OPPONENT = "tisasrec"  # the goal under jitter with the order kept compares drops with it
# The rows that predict at the target's time (another protocol): deepm3-target, timeattn-flow.
TARGET_TIME_ROWS = tuple(name for name, row in TABLE_ROWS.items() if row.at_target_time)
# Left out of the robustness views: pop reads no history, target-time is another protocol.
ROBUSTNESS_HIDDEN = ("pop", *TARGET_TIME_ROWS)
PAPER_MODELS = ("deepm3", "sasrec")  # rows of the paper-protocol stage


@dataclass(frozen=True)
class RunSpec:
    """One training (or count-baseline fit) of the suite."""

    stage: str  # core | lipschitz | paper | search
    row: str  # the table row, e.g. deepm3-rk4
    model: str  # registry name
    seed: int
    sections: Sections = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.row}-s{self.seed}"

    @property
    def counted(self) -> bool:
        return self.model in COUNT_BASELINES


@dataclass(frozen=True)
class SpecPlan:
    """Every run of the training stages, planned once."""

    core: tuple[RunSpec, ...]
    lipschitz: tuple[RunSpec, ...]
    paper: tuple[RunSpec, ...]

    def stage(self, name: str) -> tuple[RunSpec, ...]:
        return {"core": self.core, "lipschitz": self.lipschitz, "paper": self.paper}[name]


TRAINING_STAGES = ("core", "lipschitz", "paper")  # the trained stages of deepm3.suite.STAGES


def merge(*layers: Sections) -> Sections:
    """Sections merged key by key; later layers win."""
    merged: Sections = {}
    for layer in layers:
        for section, values in layer.items():
            merged.setdefault(section, {}).update(copy.deepcopy(values))
    return merged


def shared_sections(budget: Budget, model: str | None = None) -> Sections:
    """The data and train settings every run of a budget shares, and the model options the
    budget fixes for registry model ``model`` (``budget.model``; none without a model)."""
    fixed = budget.model.get(model, {}) if model else {}
    return {"data": budget.data, "train": budget.train, **({"model": fixed} if fixed else {})}


def core_rows(budget: Budget) -> dict[str, Row]:
    """The rows ``budget`` trains, in table order: :data:`CORE_ROWS`, then :data:`VARIANT_ROWS`
    and their :data:`TWIN_ROWS` when ``budget.variant_rows``."""
    return TABLE_ROWS if budget.variant_rows else CORE_ROWS


def searched_rows(budget: Budget) -> tuple[str, ...]:
    """The budget's rows with a study of their own: every trained model, and the variant rows
    (DeepM3's RK4, no ODE, target time; the time-aware variants where the budget trains them)
    when ``budget.search_variants``; otherwise a variant reuses the settings searched for its
    model. The target-time rows are searched too: they are trained (not only evaluated) at the
    target's time, so their best settings may differ."""
    return tuple(
        name
        for name, row in core_rows(budget).items()
        if not row.counted
        and row.settings_of is None
        and (name == row.model or budget.search_variants)
    )


def row_settings(name: str, row: Row, searched: dict[str, Sections]) -> Sections:
    """Row ``name``'s searched settings: its own study's (a twin: the row it copies), else its
    model's, else none (defaults)."""
    return searched.get(row.settings_of or name) or searched.get(row.model, {})


def core_specs(budget: Budget, searched: dict[str, Sections]) -> tuple[RunSpec, ...]:
    specs = []
    for name, row in core_rows(budget).items():
        seeds = budget.seeds[:1] if row.counted else budget.seeds
        fixed = {"model": row.fixed} if row.fixed else {}
        shared = shared_sections(budget, row.model)
        sections = merge(shared, row_settings(name, row, searched), fixed)
        specs += [RunSpec("core", name, row.model, seed, sections) for seed in seeds]
    return tuple(specs)


def lipschitz_row(mode: str, constant: float) -> str:
    return f"{FOCUS}-{mode}" if mode == "none" else f"{FOCUS}-{mode}{constant:g}"


def lipschitz_specs(
    budget: Budget, design: Design, searched: dict[str, Sections]
) -> tuple[RunSpec, ...]:
    shared = merge(shared_sections(budget, FOCUS), searched.get(FOCUS, {}))
    specs = []
    for mode, constant in design.lipschitz:
        fixed = {"model": {"lipschitz": mode, "lipschitz_constant": constant}}
        specs.append(
            RunSpec(
                "lipschitz",
                lipschitz_row(mode, constant),
                FOCUS,
                budget.seeds[0],
                merge(shared, fixed),
            )
        )
    return tuple(specs)


def paper_specs(
    budget: Budget, design: Design, searched: dict[str, Sections]
) -> tuple[RunSpec, ...]:
    """The paper's protocol (20-event windows, BPR with one negative, 100 sampled negatives):
    DeepM3 and SASRec, first seed, otherwise the searched settings."""
    return tuple(
        RunSpec(
            "paper",
            f"{model}-paper",
            model,
            budget.seeds[0],
            merge(shared_sections(budget), searched.get(model, {}), design.paper_protocol),
        )
        for model in PAPER_MODELS
    )


def plan_specs(budget: Budget, design: Design, searched: dict[str, Sections]) -> SpecPlan:
    return SpecPlan(
        core_specs(budget, searched),
        lipschitz_specs(budget, design, searched),
        paper_specs(budget, design, searched),
    )
