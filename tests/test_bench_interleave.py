"""Interleaved benchmark timing (``benchmarks/interleave.py``) on a fake machine whose load
changes, and the speed report's ratios built from it: no model, no real clock."""

from __future__ import annotations

import statistics
import sys

import pytest
from synthetic import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

import interleave  # noqa: E402
import speed_report  # noqa: E402


class FakeMachine:
    """A clock that moves only when a fake call runs: a call of cost ``c`` takes ``c`` seconds
    times the machine's current load, ``load(n)`` of the number ``n`` of calls made before it."""

    def __init__(self, load):
        self.now = 0.0
        self.count = 0
        self.load = load
        self.log: list[str] = []

    def clock(self) -> float:
        return self.now

    def call(self, name: str, cost: float):
        def run() -> None:
            self.now += cost * self.load(self.count)
            self.count += 1
            self.log.append(name)

        return run


COSTS = {"sasrec": 2.0, "deepm3": 1.5, "gru": 0.5}  # true ratios: deepm3 / sasrec = 0.75


def sequential_times(machine: FakeMachine, rounds: int, warmup: int) -> dict[str, list[float]]:
    """What ``make bench`` did before: every repeat of one model, then the next model's."""
    times = {}
    for name, cost in COSTS.items():
        run = machine.call(name, cost)
        times[name] = []
        for index in range(warmup + rounds):
            started = machine.clock()
            run()
            if index >= warmup:
                times[name].append(machine.clock() - started)
    return times


def interleaved(machine: FakeMachine, rounds: int, warmup: int) -> dict[str, list[float]]:
    calls = {name: machine.call(name, cost) for name, cost in COSTS.items()}
    return interleave.interleaved_times(calls, rounds, warmup, clock=machine.clock)


@pytest.mark.parametrize("switch_round", [2, 4])
def test_a_load_change_between_rounds_leaves_the_median_ratio_at_the_true_ratio(switch_round):
    # every call from round `switch_round` on is 3x slower (warm-up round included in the count)
    def load(calls_before):
        return 3.0 if calls_before >= switch_round * len(COSTS) else 1.0

    rounds, warmup = 8, 1
    times = interleaved(FakeMachine(load), rounds, warmup)
    for name in ("deepm3", "gru"):
        figure = interleave.ratio_spread(times, name, "sasrec")
        true = COSTS[name] / COSTS["sasrec"]
        assert figure["median"] == pytest.approx(true, rel=1e-12)
        assert figure["q1"] == pytest.approx(true, rel=1e-12)
        assert figure["q3"] == pytest.approx(true, rel=1e-12)
        assert figure["rounds"] == rounds
    # the same machine timed one model after another: the load change lands between models
    sequential = sequential_times(FakeMachine(load), rounds, warmup)
    ratios = interleave.round_ratios(sequential, "deepm3", "sasrec")
    assert statistics.median(ratios) > 2 * COSTS["deepm3"] / COSTS["sasrec"]


def test_a_load_change_inside_a_round_moves_one_round_not_the_median():
    def load(calls_before):  # round 3 (reversed: gru, deepm3, sasrec) changes before sasrec
        return 3.0 if calls_before >= 3 * len(COSTS) + 2 else 1.0

    times = interleaved(FakeMachine(load), rounds=7, warmup=1)
    ratios = interleave.round_ratios(times, "deepm3", "sasrec")
    off = [r for r in ratios if r != pytest.approx(0.75, rel=1e-12)]
    assert len(off) == 1  # one round saw the change between its calls
    assert interleave.spread(ratios)["median"] == pytest.approx(0.75, rel=1e-12)


def test_a_drift_within_rounds_favours_no_call_thanks_to_the_reversed_order():
    # each call 10% slower than the one before: a fixed order A B would charge B 10% every round
    def load(calls_before):
        return 1.1**calls_before

    times = interleaved(FakeMachine(load), rounds=8, warmup=1)
    median = interleave.ratio_spread(times, "deepm3", "sasrec")["median"]
    assert median == pytest.approx(0.75, rel=0.01)
    fixed = {}
    machine = FakeMachine(load)
    for name in ("deepm3", "sasrec"):  # the same schedule without the reversal, as a contrast
        fixed[name] = []
    for index in range(9):
        for name in ("deepm3", "sasrec"):
            started = machine.clock()
            machine.call(name, COSTS[name])()
            if index:
                fixed[name].append(machine.clock() - started)
    assert statistics.median(interleave.round_ratios(fixed, "deepm3", "sasrec")) < 0.75 / 1.09


def test_rounds_alternate_their_order_and_warm_ups_are_not_returned():
    slow_first = {"a": 100.0}

    def load(calls_before):
        return 50.0 if calls_before < 3 else 1.0  # the warm-up round is the slow one

    machine = FakeMachine(load)
    calls = {name: machine.call(name, slow_first.get(name, 1.0)) for name in ("a", "b", "c")}
    times = interleave.interleaved_times(calls, rounds=3, warmup=1, clock=machine.clock)
    assert machine.log == ["a", "b", "c", "c", "b", "a", "a", "b", "c", "c", "b", "a"]
    assert times == {"a": [100.0] * 3, "b": [1.0] * 3, "c": [1.0] * 3}


def test_spread_is_the_median_and_quartiles_of_the_values():
    figure = interleave.spread([4.0, 1.0, 3.0, 2.0, 5.0])
    assert figure == {"median": 3.0, "q1": 2.0, "q3": 4.0, "rounds": 5}
    assert interleave.spread([0.7]) == {"median": 0.7, "q1": 0.7, "q3": 0.7, "rounds": 1}
    assert interleave.format_spread({"median": 0.789, "q1": 0.75, "q3": 0.8249}) == (
        "0.79 [0.75-0.82]"
    )
    with pytest.raises(ValueError):
        interleave.interleaved_times({"a": lambda: None}, rounds=0)


def _row(model: str, train: list[float], infer: list[float]) -> dict:
    return {
        "model": model,
        "batch": 256,
        "length": 50,
        "train_ms": statistics.median(train),
        "infer_ms": statistics.median(infer),
        "train_rounds_ms": train,
        "infer_rounds_ms": infer,
        "nfe_infer": 50,
    }


def test_the_report_divides_round_by_round_not_medians():
    # rounds 2 and 4 ran under load: per-round ratios Euler / RK4 (train) 0.5, 0.6, 0.5, 0.5
    rows = [
        _row("sasrec", [20.0, 60.0, 20.0, 80.0], [2.0, 6.0, 2.0, 8.0]),
        _row("deepm3-no-ode", [5.0, 15.0, 5.0, 20.0], [1.0, 3.0, 1.0, 4.0]),
        _row("deepm3-euler", [10.0, 30.0, 12.0, 40.0], [1.0, 3.0, 1.0, 4.0]),
        _row("deepm3-rk4", [20.0, 50.0, 24.0, 80.0], [2.0, 6.0, 2.0, 8.0]),
    ]
    speed_report.add_ratios(rows)
    euler = rows[2]
    # by hand: sorted per-round ratios 0.5, 0.5, 0.5, 0.6; the ratio of medians is 21/37 = 0.57
    assert euler["euler_vs_rk4_train"] == pytest.approx(0.5)
    assert euler["euler_vs_rk4_train_iqr"] == pytest.approx([0.5, 0.525])
    assert euler["euler_vs_rk4_infer"] == pytest.approx(0.5)
    # Euler / SASRec train: 0.5, 0.5, 0.6, 0.5; Euler / GRU without flow: 2, 2, 2.4, 2
    assert euler["train_vs_sasrec"] == pytest.approx(0.5)
    assert euler["train_vs_sasrec_iqr"] == pytest.approx([0.5, 0.525])
    assert euler["train_vs_no_flow"] == pytest.approx(2.0)
    assert euler["train_vs_no_flow_iqr"] == pytest.approx([2.0, 2.1])
    assert rows[0]["train_vs_sasrec"] == 1.0
    table = speed_report.format_ratio_table(rows, "header")
    line = next(line for line in table.splitlines() if line.startswith("| deepm3-euler |"))
    assert line.startswith("| deepm3-euler | 256 | 50 | 0.50 [0.50-0.5")
    assert "| 2.00 [2.00-2.10] |" in line
