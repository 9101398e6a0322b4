"""Ratios, targets and tables of ``speed.py``'s measurements (rows of plain dicts)."""

from __future__ import annotations

from variants import ACCELERATED

# DeepM3-Euler: the fused recurrence and every accelerated one
EULER = ["deepm3-euler", *(name for name, (base, _) in ACCELERATED.items() if "euler" in base)]
# The targets of the GPU path: (what, row key, batch, length (None: any), goal "max" or
# "min", threshold, models it applies to)
TARGETS = [
    ("DeepM3-Euler train step / SASRec", "train_vs_sasrec", 256, 200, "max", 3.0, EULER),
    ("train speed-up over the eager loop", "fast_speedup_train", 256, 200, "min", 5.0, EULER),
    ("inference speed-up over the eager loop", "fast_speedup_infer", 256, 200, "min", 5.0, EULER),
    ("Euler / RK4 inference latency", "euler_vs_rk4_infer", 1, None, "max", 0.4, EULER),
]


def add_ratios(rows: list[dict]) -> None:
    index = {(r["model"], r["batch"], r["length"]): r for r in rows}
    for row in rows:
        key = row["batch"], row["length"]
        base = index.get(("sasrec", *key))
        if base:
            row["train_vs_sasrec"] = row["train_ms"] / base["train_ms"]
            row["infer_vs_sasrec"] = row["infer_ms"] / base["infer_ms"]
        fused = ACCELERATED.get(row["model"], (row["model"], None))[0]
        eager = index.get((fused + "-eager", *key))
        if eager:  # the fused recurrence, or an accelerated one, against the eager loop
            row["fast_speedup_train"] = eager["train_ms"] / row["train_ms"]
            row["fast_speedup_infer"] = eager["infer_ms"] / row["infer_ms"]
        if row["model"] in ACCELERATED and (fused, *key) in index:
            row["speedup_vs_fused_train"] = index[(fused, *key)]["train_ms"] / row["train_ms"]
            row["speedup_vs_fused_infer"] = index[(fused, *key)]["infer_ms"] / row["infer_ms"]
        rk4 = index.get((row["model"].replace("-euler", "-rk4"), *key))
        if "-euler" in row["model"] and rk4:
            row["euler_vs_rk4_infer"] = row["infer_ms"] / rk4["infer_ms"]
            row["euler_vs_rk4_train"] = row["train_ms"] / rk4["train_ms"]
            row["euler_vs_rk4_nfe"] = row["nfe_infer"] / max(rk4["nfe_infer"], 1)


def target_ratios(rows: list[dict]) -> list[dict]:
    """Each target of the GPU path against every row it applies to."""
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
                    "goal": f"{'<=' if goal == 'max' else '>='} {threshold}",
                    "met": value <= threshold if goal == "max" else value >= threshold,
                }
            )
    return found


def format_targets(targets: list[dict], device: str) -> str:
    lines = [
        f"Targets of the GPU path (measured on {device}):",
        "| target | model | B | T | value | goal | met |",
        "|" + "---|" * 7,
    ]
    for t in targets:
        lines.append(
            f"| {t['target']} | {t['model']} | {t['batch']} | {t['length']} | {t['value']:.2f} "
            f"| {t['goal']} | {'yes' if t['met'] else 'no'} |"
        )
    return "\n".join(lines)


def format_table(rows: list[dict], header: str) -> str:
    def ratio(row, key):
        return f"{row[key]:.2f}" if key in row else "-"

    def pair(row, first, second):
        return f"{row[first]:.2f}, {row[second]:.2f}" if first in row else "-"

    lines = [
        header,
        "| model | B | T | train ms (p95) | infer ms (p95) | events/s | mem MB | "
        "NFE | params | train/SASRec | infer/SASRec | speed-up vs eager loop (train, infer) "
        "| vs fused (train, infer) | Euler/RK4 infer (NFE) | setup s |",
        "|" + "---|" * 15,
    ]
    for row in rows:
        euler = (
            f"{row['euler_vs_rk4_infer']:.2f} ({row['euler_vs_rk4_nfe']:.2f})"
            if "euler_vs_rk4_infer" in row
            else "-"
        )
        lines.append(
            f"| {row['model']} | {row['batch']} | {row['length']} | "
            f"{row['train_ms']:.1f} ({row['train_p95_ms']:.1f}) | "
            f"{row['infer_ms']:.2f} ({row['infer_p95_ms']:.2f}) | "
            f"{row['train_events_per_s']:,.0f} | {row['memory_mb']:.0f} | {row['nfe_infer']} | "
            f"{row['parameters']:,} | {ratio(row, 'train_vs_sasrec')} | "
            f"{ratio(row, 'infer_vs_sasrec')} | "
            f"{pair(row, 'fast_speedup_train', 'fast_speedup_infer')} | "
            f"{pair(row, 'speedup_vs_fused_train', 'speedup_vs_fused_infer')} | {euler} | "
            f"{row['setup_s']:.1f} |"
        )
    return "\n".join(lines)
