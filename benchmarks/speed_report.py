"""Ratios, targets and tables of ``speed.py``'s measurements (rows of plain dicts)."""

from __future__ import annotations

from interleave import format_spread, ratio_spread
from variants import ACCELERATED

SASREC, NO_FLOW = "sasrec", "deepm3-no-ode"  # the baselines: SASRec, the GRU without the flow

# DeepM3-Euler: the fused recurrence and every accelerated one
EULER = ["deepm3-euler", *(name for name, (base, _) in ACCELERATED.items() if "euler" in base)]
# The targets of the GPU path: (what, row key, batch, length (None: any), goal "max" or
# "min", threshold, models it applies to)
TARGETS = [
    ("DeepM3-Euler train step / SASRec", "train_vs_sasrec", 256, 200, "max", 3.0, EULER),
    ("train speed-up over the eager loop", "fast_speedup_train", 256, 200, "min", 5.0, EULER),
    ("inference speed-up over the eager loop", "fast_speedup_infer", 256, 200, "min", 5.0, EULER),
    ("Euler / RK4 inference latency", "euler_vs_rk4_infer", 1, None, "max", 0.4, EULER),
    # issue 20: the closed-form flow costs about the GRU without a flow; the attention hybrid
    # about SASRec; one-user inference of a continuous-time model at most 3x SASRec's
    (
        "closed-form flow train step / GRU without flow",
        "train_vs_no_flow",
        256,
        None,
        "max",
        1.1,
        ["deepm3-decay"],
    ),
    (
        "time-attention train step / SASRec",
        "train_vs_sasrec",
        256,
        None,
        "max",
        1.3,
        ["timeattn", "timeattn-flow"],
    ),
    (
        "one-user inference / SASRec",
        "infer_vs_sasrec",
        1,
        200,
        "max",
        3.0,
        ["deepm3-euler", "deepm3-decay", "timeattn", "timeattn-flow"],
    ),
]


def _put(row: dict, key: str, numerator: dict, denominator: dict, times: str) -> None:
    """``row[key]``: the median over rounds of ``numerator``'s ``times`` (train or infer) over
    ``denominator``'s, round by round; ``row[key + "_iqr"]``: their interquartile range."""
    rounds = {"a": numerator[f"{times}_rounds_ms"], "b": denominator[f"{times}_rounds_ms"]}
    figure = ratio_spread(rounds, "a", "b")
    row[key], row[f"{key}_iqr"] = figure["median"], [figure["q1"], figure["q3"]]


def add_ratios(rows: list[dict]) -> None:
    """Ratios between the rows of one setting (B, T), which one interleaved schedule timed
    (``benchmarks/interleave.py``): each the median of the per-round ratios, with its IQR."""
    index = {(r["model"], r["batch"], r["length"]): r for r in rows}
    for row in rows:
        key = row["batch"], row["length"]
        fused = ACCELERATED.get(row["model"], (row["model"], None))[0]
        eager = index.get((fused + "-eager", *key))
        rk4 = index.get((row["model"].replace("-euler", "-rk4"), *key))
        for times in ("train", "infer"):
            for baseline, name in ((SASREC, "sasrec"), (NO_FLOW, "no_flow")):
                if (baseline, *key) in index:
                    _put(row, f"{times}_vs_{name}", row, index[(baseline, *key)], times)
            if eager:  # the fused recurrence, or an accelerated one, against the eager loop
                _put(row, f"fast_speedup_{times}", eager, row, times)
            if row["model"] in ACCELERATED and (fused, *key) in index:
                _put(row, f"speedup_vs_fused_{times}", index[(fused, *key)], row, times)
            if "-euler" in row["model"] and rk4:
                _put(row, f"euler_vs_rk4_{times}", row, rk4, times)
        if "-euler" in row["model"] and rk4:
            row["euler_vs_rk4_nfe"] = row["nfe_infer"] / max(rk4["nfe_infer"], 1)


def target_ratios(rows: list[dict]) -> list[dict]:
    """Each target of the GPU path against every row it applies to (median ratio and IQR)."""
    found = []
    for what, key, batch, length, goal, threshold, models in TARGETS:
        for row in rows:
            applies = row["model"] in models and key in row and row["batch"] == batch
            if not applies or length not in (None, row["length"]):
                continue
            value = row[key]
            found.append(
                {
                    "target": what,
                    "model": row["model"],
                    "batch": batch,
                    "length": row["length"],
                    "value": round(value, 3),
                    "iqr": [round(q, 3) for q in row[f"{key}_iqr"]],
                    "goal": f"{'<=' if goal == 'max' else '>='} {threshold}",
                    "met": value <= threshold if goal == "max" else value >= threshold,
                }
            )
    return found


def format_targets(targets: list[dict], device: str) -> str:
    lines = [
        f"Targets of the GPU path (measured on {device}; median ratio [interquartile range]):",
        "| target | model | B | T | value | goal | met |",
        "|" + "---|" * 7,
    ]
    for t in targets:
        value = format_spread({"median": t["value"], "q1": t["iqr"][0], "q3": t["iqr"][1]})
        lines.append(
            f"| {t['target']} | {t['model']} | {t['batch']} | {t['length']} | {value} "
            f"| {t['goal']} | {'yes' if t['met'] else 'no'} |"
        )
    return "\n".join(lines)


def format_table(rows: list[dict], header: str) -> str:
    """The measurements: median (p95) times over the rounds, throughput, memory, NFE, setup."""
    lines = [
        header,
        "| model | B | T | train ms (p95) | infer ms (p95) | events/s | mem MB | NFE | params "
        "| field weights ms | setup s |",
        "|" + "---|" * 11,
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['batch']} | {row['length']} | "
            f"{row['train_ms']:.1f} ({row['train_p95_ms']:.1f}) | "
            f"{row['infer_ms']:.2f} ({row['infer_p95_ms']:.2f}) | "
            f"{row['train_events_per_s']:,.0f} | {row['memory_mb']:.0f} | {row['nfe_infer']} | "
            f"{row['parameters']:,} | {row['field_weights_ms']:.2f} | {row['setup_s']:.1f} |"
        )
    return "\n".join(lines)


RATIO_COLUMNS = [  # (heading, row key)
    ("train / SASRec", "train_vs_sasrec"),
    ("train / GRU without flow", "train_vs_no_flow"),
    ("infer / SASRec", "infer_vs_sasrec"),
    ("infer / GRU without flow", "infer_vs_no_flow"),
    ("Euler / RK4 train", "euler_vs_rk4_train"),
    ("Euler / RK4 infer", "euler_vs_rk4_infer"),
    ("speed-up vs eager loop, train", "fast_speedup_train"),
    ("speed-up vs eager loop, infer", "fast_speedup_infer"),
    ("vs fused, train", "speedup_vs_fused_train"),
    ("vs fused, infer", "speedup_vs_fused_infer"),
]


def format_ratio_table(rows: list[dict], header: str) -> str:
    """The ratios, each the median of the per-round ratios [first - third quartile]."""
    columns = [(h, k) for h, k in RATIO_COLUMNS if any(k in row for row in rows)]
    lines = [
        header,
        "| model | B | T | " + " | ".join(h for h, _ in columns) + " |",
        "|" + "---|" * (3 + len(columns)),
    ]
    for row in rows:
        cells = [
            format_spread({"median": row[k], "q1": row[k + "_iqr"][0], "q3": row[k + "_iqr"][1]})
            if k in row
            else "-"
            for _, k in columns
        ]
        lines.append(f"| {row['model']} | {row['batch']} | {row['length']} | {' | '.join(cells)} |")
    return "\n".join(lines)
