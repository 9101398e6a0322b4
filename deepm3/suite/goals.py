"""Issue 20's goals and the rules that turn their figures into verdicts (pure functions), judged
in the budgets that train the time-aware variant rows (standard, full): the best continuous-time
model chosen by validation against the calibrated SASRec, on ML-1M's most irregular tertile,
against its own time-blind twin, and its drop under order-kept jitter against TiSASRec."""

from __future__ import annotations

from dataclasses import dataclass

from deepm3.reporting.text import ci, p_text, pct
from deepm3.suite.verdicts import (
    IRREGULAR_DATASET,
    _row_figure,
    _row_verdict,
    _tests,
    interval_verdict,
    unconverged,
)

# Issue 20's goals, judged in the budgets that train the variant rows (standard, full).
GOALS = {
    "best": "The best continuous-time model >= the calibrated SASRec (goal: +5%)",
    "irregular_best": "The best continuous-time model >= +5% vs SASRec on the most irregular "
    "CV tertile of ML-1M",
    "time_helps": "Time helps: the best continuous-time model beats its own time-blind twin (the "
    "same row, settings and all, with its time terms off)",
    "jitter": "Under Gaussian jitter with the order kept, the best continuous-time model drops "
    "less than TiSASRec",
    "speed": "Speed: a training step of the closed-form flow <= 1.1x the GRU without the flow, "
    "of the attention hybrid <= 1.3x SASRec (B=256, T=50 and 200); one-user inference (B=1, "
    "T=200) of the best continuous-time model <= 3x SASRec",
}
GOAL_GAIN = 0.05  # the +5% of the goals


@dataclass(frozen=True)
class Ratio:
    """One speed ratio of ``make bench`` (median of interleaved rounds, [q1, q3]) and the most
    the goal allows."""

    what: str  # e.g. "deepm3-decay train step / GRU without flow"
    batch: int
    length: int
    value: float
    low: float
    high: float
    limit: float

    @property
    def met(self) -> bool:
        return self.value <= self.limit

    def text(self) -> str:
        return (
            f"{self.what} {self.value:.2f}x [{self.low:.2f}-{self.high:.2f}] at B={self.batch}, "
            f"T={self.length}"
        )


@dataclass(frozen=True)
class SpeedFacts:
    """The speed goal's figures from one ``make bench`` result file: the training ratios, the
    chosen row's one-user inference ratio (None: its model is not among the benchmarked
    variants) and how the file was measured."""

    source: str
    training: tuple[Ratio, ...]
    inference: Ratio | None
    missing: tuple[str, ...] = ()  # ratios the goal needs that the file lacks


@dataclass(frozen=True)
class Comparison:
    """``row`` against ``baseline`` by the users x seeds bootstrap on all users and on untied
    users (effects.users_seeds_pair; the ``*_p_holm`` columns hold the raw p of this one test),
    so that :func:`_tests` reads it like a significance row."""

    row: str
    baseline: str
    users: int
    relative: float
    h_ci_low: float
    h_ci_high: float
    h_p_holm: float
    untied_users: int
    untied_relative: float
    untied_ci_low: float
    untied_ci_high: float
    untied_p_holm: float


@dataclass(frozen=True)
class DropFact:
    """``row``'s and ``baseline``'s relative NDCG@10 drop under perturbation ``key`` and the
    paired bootstrap of their difference (stats.drops.drop_difference: positive, ``row`` is
    hurt less)."""

    row: str
    baseline: str
    key: str
    drop_row: float
    drop_baseline: float
    difference: float
    ci_low: float
    ci_high: float
    p: float


@dataclass(frozen=True)
class GoalFacts:
    """What the goals read. ``validation``: each trained candidate (design.TIME_AWARE_TWINS) ->
    its mean validation NDCG@10 over seeds; ``trained``: every row with finished runs; the
    comparisons are of :attr:`chosen` and None where a row (or the user CV, or the perturbation
    ranks) is missing; ``irregular`` only on ML-1M."""

    dataset: str
    candidates: tuple[str, ...]
    twins: dict[str, str]  # candidate -> its time-blind twin
    trained: tuple[str, ...]
    validation: dict[str, float]
    vs_baseline: Comparison | None = None
    irregular: Comparison | None = None
    vs_twin: Comparison | None = None
    jitter: DropFact | None = None
    jitter_key: str | None = None  # the jitter (order kept) the goal reads; None: not in grid
    baseline: str = "sasrec"
    opponent: str = "tisasrec"
    speed: SpeedFacts | None = None  # None: no make bench result to read

    @property
    def chosen(self) -> str | None:
        return choose_by_validation(self.validation)

    def missing(self, *rows: str) -> list[str]:
        """The candidates and ``rows`` with no finished run yet, in that order."""
        needed = dict.fromkeys([*self.candidates, *rows])
        return [row for row in needed if row not in self.trained]


def choose_by_validation(validation: dict[str, float]) -> str | None:
    """The row with the best validation NDCG@10 (never the test's); the first listed on a tie;
    None when there is none."""
    return max(validation, key=lambda row: validation[row]) if validation else None


def _not_run(goal: str, missing: list[str]) -> dict:
    return {
        "claim": GOALS[goal],
        "our figure": "-",
        "verdict": f"not run yet: no finished runs of {', '.join(missing)}",
    }


def _chosen(facts: GoalFacts) -> str:
    """The chosen row, for the figures after the first goal's (which says how it was chosen)."""
    return f"`{facts.chosen}` (chosen by validation, first goal)"


def _choice(facts: GoalFacts) -> str:
    """How the row was chosen, for the first goal's figure."""
    scores = ", ".join(f"{row} {value:.4f}" for row, value in facts.validation.items())
    return (
        f"`{facts.chosen}`, the best validation NDCG@10 of the time-aware rows at the "
        f"last-event protocol ({scores}; the target-time rows answer another question and are "
        "not candidates)"
    )


def _goal_met(comparison: Comparison, goal: float) -> str:
    """``met`` when every co-primary test's point estimate is at least ``goal`` and its
    interval lies above 0 (p < 0.05); ``ruled out`` when every one's interval lies below
    ``goal``; ``not shown`` otherwise."""
    tests = _tests(comparison)
    if all(r >= goal and interval_verdict(lo, hi, p) == "confirmed" for _, r, lo, hi, p in tests):
        return "met"
    if all(hi < goal for _, _, _, hi, _ in tests):
        return "ruled out"
    return "not shown"


def best_vs_baseline(facts: GoalFacts) -> dict:
    """Goal 1, the chosen row (best validation among the candidates) against SASRec by the
    users x seeds bootstrap, all users and untied users co-primary. Parity: confirmed when
    every co-primary interval covers 0 or lies above it (its upper end >= 0), refuted when
    every one lies below 0 (p < 0.05), inconclusive otherwise. The +5% goal, a separate
    statement in the verdict: met when every co-primary point estimate is >= +5% and its
    interval lies above 0 (p < 0.05), ruled out when every interval lies below +5%, not shown
    otherwise. Not run yet while a candidate or SASRec has no finished run."""
    missing = facts.missing(facts.baseline)
    if missing or facts.vs_baseline is None:
        return _not_run("best", missing or [facts.baseline])
    tests = _tests(facts.vs_baseline)
    if all(hi >= 0 for _, _, _, hi, _ in tests):
        parity = "confirmed"
    elif all(hi < 0 and p < 0.05 for _, _, _, hi, p in tests):
        parity = "refuted"
    else:
        parity = "inconclusive"
    gain = _goal_met(facts.vs_baseline, GOAL_GAIN)
    return {
        "claim": GOALS["best"],
        "our figure": f"{_choice(facts)} vs {facts.baseline}: {_row_figure(facts.vs_baseline)}",
        "verdict": f"{parity} (parity); +5% goal {gain}",
    }


def irregular_best(facts: GoalFacts) -> dict:
    """Goal 2, on ML-1M only: the chosen row against SASRec on the most irregular CV tertile
    (report.irregular's tertiles), users x seeds bootstrap with untied users co-primary:
    confirmed when the +5% goal is met (every point estimate >= +5%, every interval above 0),
    refuted when it is ruled out (every interval below +5%), inconclusive otherwise. n/a on
    other data; not run yet while a row or the users' CV (analyses stage) is missing."""
    if facts.dataset != IRREGULAR_DATASET:
        return {
            "claim": GOALS["irregular_best"],
            "our figure": "-",
            "verdict": f"n/a (the goal is about ML-1M; this is {facts.dataset})",
        }
    missing = facts.missing(facts.baseline)
    if missing:
        return _not_run("irregular_best", missing)
    if facts.irregular is None:
        return {
            "claim": GOALS["irregular_best"],
            "our figure": "-",
            "verdict": "not run yet: no users' gap CV (analyses stage)",
        }
    verdict = {"met": "confirmed", "ruled out": "refuted", "not shown": "inconclusive"}[
        _goal_met(facts.irregular, GOAL_GAIN)
    ]
    figure = (
        f"{_chosen(facts)} vs {facts.baseline} on the most irregular CV tertile "
        f"({facts.irregular.users} users): {_row_figure(facts.irregular)}"
    )
    return {"claim": GOALS["irregular_best"], "our figure": figure, "verdict": verdict}


def time_helps(facts: GoalFacts) -> dict:
    """Goal 3: the chosen row against its own time-blind twin (design.TIME_AWARE_TWINS), users
    x seeds bootstrap with untied users co-primary: confirmed on this data set when every
    interval lies above 0 (p < 0.05), refuted when every one lies below, inconclusive
    otherwise. tisasrec-gaps is not a candidate: its twin tisasrec reads time too."""
    chosen = facts.chosen
    twin = facts.twins.get(chosen) if chosen else None
    missing = facts.missing(*([twin] if twin else []))
    if missing or facts.vs_twin is None:
        return _not_run("time_helps", missing or [twin or "a candidate"])
    verdict = {"worse": "refuted"}.get(_row_verdict(facts.vs_twin), _row_verdict(facts.vs_twin))
    figure = (
        f"{_chosen(facts)} vs its time-off twin {twin} (its own settings, time terms off): "
        f"{_row_figure(facts.vs_twin)}"
    )
    return {"claim": GOALS["time_helps"], "our figure": figure, "verdict": verdict}


def jitter_drop(facts: GoalFacts) -> dict:
    """Goal 4: the drops of the chosen row and TiSASRec under the strongest Gaussian jitter with
    the order kept (the robustness analysis' ranks), by the paired bootstrap of their
    difference: confirmed when the chosen row is hurt less (interval above 0, p < 0.05),
    refuted when it is hurt more (below 0), inconclusive otherwise. n/a when the design has no
    such jitter or the chosen row or TiSASRec was not perturbed."""
    missing = facts.missing(facts.opponent)
    if missing:
        return _not_run("jitter", missing)
    if facts.jitter_key is None or facts.jitter is None:
        reason = (
            "the design has no jitter with the order kept"
            if facts.jitter_key is None
            else f"{facts.chosen} or {facts.opponent} has no perturbation ranks (analyses stage)"
        )
        return {"claim": GOALS["jitter"], "our figure": "-", "verdict": f"n/a ({reason})"}
    d = facts.jitter
    if d.ci_low > 0 and d.p < 0.05:
        verdict = "confirmed"
    elif d.ci_high < 0 and d.p < 0.05:
        verdict = "refuted"
    else:
        verdict = "inconclusive"
    figure = (
        f"{_chosen(facts)}: drop {pct(d.drop_row)} vs {d.baseline} {pct(d.drop_baseline)} under "
        f"{d.key}; difference {pct(d.difference)} {ci(d.ci_low, d.ci_high)}, p={p_text(d.p)} "
        "(paired bootstrap over users, seeds averaged per user)"
    )
    return {"claim": GOALS["jitter"], "our figure": figure, "verdict": verdict}


def speed_goal(facts: GoalFacts) -> dict:
    """Goal 5, read from ``make bench``'s ratios (not from the suite's runs): met when every
    training ratio's median and the chosen row's one-user inference ratio are within their
    limits; not met otherwise, naming what is over; not measured without a bench result, and
    the inference part not measured when the chosen row's model is not benchmarked."""
    speed = facts.speed
    if speed is None:
        return {
            "claim": GOALS["speed"],
            "our figure": "-",
            "verdict": "not measured: no make bench result (benchmarks/results/cpu-quick.json)",
        }
    ratios = [*speed.training, *([speed.inference] if speed.inference else [])]
    over = [r for r in ratios if not r.met]
    figure = "; ".join(r.text() for r in ratios) + f" ({speed.source})"
    if speed.missing:
        verdict = "not measured: the bench result lacks " + ", ".join(speed.missing)
    elif over:
        verdict = "not met: " + ", ".join(f"{r.what} at T={r.length}" for r in over)
    elif facts.chosen is None:
        verdict = "training met; inference: no candidate trained yet, so no best model"
    elif speed.inference is None:
        verdict = f"training met; inference not measured ({facts.chosen} is not benchmarked)"
    else:
        verdict = "met"
    return {"claim": GOALS["speed"], "our figure": figure, "verdict": verdict}


def goal_rows(facts: GoalFacts, capped: dict[str, tuple[int, int]]) -> list[dict]:
    """The five goals' rows; a verdict is inconclusive when a row it compares (the chosen one
    and its opponent) had a run capped while still rising (:func:`unconverged`). The speed
    goal reads the benchmark, not runs."""
    chosen = [facts.chosen] if facts.chosen else []
    twin = [facts.twins[facts.chosen]] if facts.chosen else []
    judged = (
        (best_vs_baseline(facts), [facts.baseline]),
        (irregular_best(facts), [facts.baseline]),
        (time_helps(facts), twin),
        (jitter_drop(facts), [facts.opponent]),
    )
    return [
        *(
            verdict
            if verdict["verdict"].startswith("not run yet")
            else unconverged(verdict, [*chosen, *others], capped)
            for verdict, others in judged
        ),
        speed_goal(facts),
    ]
