"""The report's sections: each reads committed suite files and returns markdown (and the facts
the claims table needs). Numbers come from :mod:`deepm3.suite.tables`, verdict text from
:mod:`deepm3.suite.claims`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from deepm3.analysis.report import untied_ndcg
from deepm3.suite import plots, tables
from deepm3.suite.claims import ci, p_text, pct
from deepm3.suite.runner import CORE_ROWS, COUNT_ROWS

FOCUS = "deepm3"
TRAINED_BASELINES = ("gru4rec", "sasrec", "tisasrec")


def read(path: Path):
    return json.loads(path.read_text())


def records(out: Path, stage: str) -> dict[str, dict]:
    """name -> {metrics, config, provenance, folder} of a stage's committed runs."""
    found = {}
    for folder in sorted((out / stage / "runs").glob("*/")):
        if (folder / "metrics.json").is_file():
            found[folder.name] = {
                "metrics": read(folder / "metrics.json"),
                "provenance": read(folder / "provenance.json"),
                "folder": folder,
            }
    return found


def row_of(name: str) -> tuple[str, int]:
    row, seed = name.rsplit("-s", 1)
    return row, int(seed)


def fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def header(title: str, budget, stats: dict, log: list[dict]) -> str:
    kept = stats.get("filtered", {})
    source = str(stats.get("source", "?"))
    lines = [
        f"# {title} experiment suite ({budget.name} budget)\n",
        f"Data: **{stats.get('dataset', budget.dataset)}** from `{source}`, "
        f"{kept.get('users', 0):,} users, {kept.get('items', 0):,} items, "
        f"{kept.get('interactions', 0):,} events, fingerprint `{stats.get('fingerprint', '?')}`."
        + (
            " This is the data mirror's ML-1M subset (users 1-2999 of 6,040): numbers are "
            "**not** comparable with published full ML-1M numbers."
            if "subset" in source
            else ""
        )
        + "\n",
        f"Budget `{budget.name}`: {budget.note}. Shared by every trainable model: data "
        f"{budget.data}, training {budget.train}; {budget.trials} search trials per model "
        f"({budget.trial_train}); seeds {list(budget.seeds)}. Protocol: leave-one-out, full "
        "ranking over all items, items already in the history masked, validation NDCG@10 for "
        "early stopping and selection, the test split touched once per run.\n",
    ]
    wall: dict[str, dict] = {}
    for entry in log:  # every (re)start of a stage adds its wall time
        seen = wall.setdefault(entry["stage"], {"seconds": 0.0, "commits": set(), "jobs": 0})
        seen["seconds"] += entry["wall_seconds"]
        seen["commits"].add(entry["git_commit"][:8])
        seen["jobs"] = max(seen["jobs"], entry["jobs"])
        seen["device"] = entry["device"]
    if wall:
        total = sum(e["seconds"] for e in wall.values())
        commits = sorted(set().union(*(e["commits"] for e in wall.values())))
        lines.append(
            f"Wall time per stage (summed over restarts; device setting "
            f"{next(iter(wall.values()))['device']}, "
            f"{max(e['jobs'] for e in wall.values())} parallel jobs): "
            + ", ".join(f"{s} {e['seconds'] / 60:.1f} min" for s, e in wall.items())
            + f"; **total {total / 60:.1f} min**. Code: commits {', '.join(commits)}.\n"
        )
    return "\n".join(lines)


def search(out: Path) -> str:
    path = out / "search" / "best.json"
    if not path.is_file():
        return "## 1. Search\n\nSkipped: every model ran with the shipped defaults.\n"
    rows = [
        {
            "model": model,
            "best valid NDCG@10": fmt(entry["valid_ndcg@10"]),
            "trials (pruned)": f"{entry['trials_counted']} ({entry['trials_pruned']})",
            "best parameters": ", ".join(
                f"{k}={v:.2g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in entry["params"].items()
            ),
        }
        for model, entry in read(path).items()
    ]
    return (
        "## 1. Search (validation only)\n\nOptuna TPE (seeded), median pruning on validation "
        "NDCG@10, the same number of trials for every model; spaces in "
        "`deepm3/suite/spaces.py`. DeepM3's variants (RK4, no ODE, target time) reuse DeepM3's "
        "best settings. Short trials favour models that learn fast. Trials in "
        "`search/trials_*.csv`.\n\n" + markdown(pd.DataFrame(rows)) + "\n"
    )


def core(core_records: dict, out: Path) -> tuple[str, dict[str, pd.Series]]:
    """The core table (mean +- sd, 95% CI over seeds) and per-user NDCG@10 of every row."""
    by_row: dict[str, list[dict]] = {}
    for name, record in core_records.items():
        by_row.setdefault(row_of(name)[0], []).append(record)
    lines, ndcg, means, sds = [], {}, [], []
    for row in (r for r in CORE_ROWS if r in by_row):
        metrics = [r["metrics"] for r in by_row[row]]
        mean, sd, half = tables.seed_interval([m["test"]["ndcg@10"] for m in metrics])
        means.append(mean)
        sds.append(sd)
        per_epoch = [m["seconds_per_epoch"] for m in metrics if m["seconds_per_epoch"]]
        lines.append(
            {
                "row": row,
                "seeds": len(metrics),
                "NDCG@10": f"{mean:.4f} ± {sd:.4f}",
                "95% CI": "n/a" if math.isnan(half) else f"[{mean - half:.4f}, {mean + half:.4f}]",
                "HR@10": fmt(float(np.mean([m["test"]["hr@10"] for m in metrics]))),
                "MRR@10": fmt(float(np.mean([m["test"]["mrr@10"] for m in metrics]))),
                "NDCG@10 untied": fmt(float(np.mean(untied_ndcg(metrics))))
                if untied_ndcg(metrics)
                else "- (all tied)",
                "epochs (best)": "-"
                if row in COUNT_ROWS
                else ", ".join(f"{m['epochs_run']} ({m['best_epoch']})" for m in metrics),
                "stopped by": ", ".join(
                    sorted({m["stopped_by"] for m in metrics if m["stopped_by"]})
                )
                or "-",
                "s/epoch": f"{np.mean(per_epoch):.1f}" if per_epoch else "-",
                "parameters": f"{metrics[0]['parameters']['total']:,}",
            }
        )
        ranks = [
            pd.read_csv(r["folder"] / "per_user_test.csv.gz").set_index("user")["rank"]
            for r in by_row[row]
        ]
        ndcg[row] = tables.mean_user_ndcg(ranks)
    frame = pd.DataFrame(lines)
    plots.core_bars(list(frame["row"]), means, sds, out / "core.png")
    text = (
        "## 2. Core comparison (test, full ranking)\n\nMean ± sd over seeds and the 95% "
        "Student-t interval of the mean. `NDCG@10 untied`: users whose test event does not share "
        "its timestamp with the last history event. `stopped by`: patience (early stopping), "
        "time_budget (the run's time cap was hit: the model may still have been improving), "
        "epochs. `deepm3-target` predicts at the target's timestamp (it knows when the next "
        "event happens): a different protocol, not comparable with the other rows.\n\n"
        + markdown(frame)
        + "\n\n![core](core.png)\n"
    )
    return text, ndcg


def significance(ndcg: dict[str, pd.Series]) -> tuple[str, pd.DataFrame]:
    sig = tables.significance(ndcg, FOCUS)
    view = pd.DataFrame(
        {
            "DeepM3 vs": sig["baseline"],
            "NDCG@10 DeepM3 / other": [
                f"{a:.4f} / {b:.4f}" for a, b in zip(sig["mean_a"], sig["mean_b"], strict=True)
            ],
            "relative": sig["relative"].map(pct),
            "95% CI": [ci(a, b) for a, b in zip(sig["ci_low"], sig["ci_high"], strict=True)],
            "Wilcoxon p (Holm)": sig["wilcoxon_p_holm"].map(p_text),
            "t-test p (Holm)": sig["t_p_holm"].map(p_text),
        }
    )
    text = (
        "## 3. Significance (per-user paired tests)\n\nPer-user NDCG@10 averaged over seeds; "
        "Wilcoxon signed-rank and paired t-test, Holm-corrected over the comparisons; paired "
        "bootstrap (1,000 resamples) 95% interval of the relative difference.\n\n"
        + markdown(view)
        + "\n"
    )
    return text, sig


def irregularity(out: Path, ndcg: dict[str, pd.Series]) -> tuple[str, dict | None]:
    path = out / "analyses" / "user_cv.csv.gz"
    if not path.is_file() or FOCUS not in ndcg:
        return "", None
    cv = pd.read_csv(path).set_index("user")["cv"]
    compared = [r for r in (*TRAINED_BASELINES, "deepm3-noode", "last_item") if r in ndcg]
    shown = {r: ndcg[r] for r in [FOCUS, *compared]}
    parts = [
        "## 4. Irregular users (coefficient of variation of history gaps)\n\nCV of each test "
        f"user's gaps before the test event (history only); {int(cv.isna().sum())} users "
        "without a defined CV are left out. Gains are DeepM3's relative NDCG@10 difference "
        "[paired bootstrap 95% CI] and the Wilcoxon p (not corrected).\n"
    ]
    fact = None
    for count, title in ((3, "tertiles (the paper's grouping)"), (5, "quintiles")):
        groups = tables.irregularity_groups(cv, shown, FOCUS, count)
        view = pd.DataFrame(
            {
                "group": groups["group"],
                "users": groups["users"],
                "CV range": [
                    f"{a:.2f}-{b:.2f}"
                    for a, b in zip(groups["cv_min"], groups["cv_max"], strict=True)
                ],
                **{f"NDCG {r}": groups[f"ndcg:{r}"].map(fmt) for r in shown},
                **{
                    f"gain vs {r}": [
                        f"{pct(g)} {ci(*c)} p={p_text(p)}"
                        for g, c, p in zip(
                            groups[f"gain:{r}"], groups[f"ci:{r}"], groups[f"p:{r}"], strict=True
                        )
                    ]
                    for r in compared
                },
            }
        )
        parts.append(f"**{title}**\n\n" + markdown(view) + "\n")
        if count == 3:
            trained = [r for r in TRAINED_BASELINES if r in ndcg]
            strongest = max(trained, key=lambda r: ndcg[r].mean())
            last = groups.iloc[-1]
            low, high = last[f"ci:{strongest}"]
            fact = {
                "baseline": strongest,
                "gain": last[f"gain:{strongest}"],
                "low": low,
                "high": high,
                "p": last[f"p:{strongest}"],
                "users": int(last["users"]),
            }
        else:
            plots.irregularity_bars(groups, [FOCUS, *compared], out / "irregularity.png")
    parts.append("![irregularity](irregularity.png)\n")
    return "\n".join(parts), fact


def perturbation_effects(out: Path, rows: list[str], grid: list, stage: str = "core"):
    """Rows x perturbations: relative NDCG@10 change with CI (seeds averaged per user)."""
    frames = []
    for row in rows:
        paths = sorted((out / "analyses" / "perturb").glob(f"{stage}-{row}-s*.csv.gz"))
        if not paths:
            continue
        effects = tables.perturbation_effects(
            [pd.read_csv(p) for p in paths], [p.key for p in grid]
        )
        effects.insert(0, "row", row)
        frames.append(effects)
    return pd.concat(frames) if frames else pd.DataFrame()


def focus_keys(grid: list, local_window: int) -> list[str]:
    """The claim's noise: full and local shuffles, the paper's drop, and each of jitter (both
    kinds) and dropout at its largest level."""
    keys = ["order_full", f"order_local:{local_window}", "paper_drop"]
    for family in ("jitter_kept", "jitter_sorted", "dropout"):
        levels = [p for p in grid if p.family == family]
        if levels:
            keys.append(max(levels, key=lambda p: p.level).key)
    return keys


def robustness_duels(effects: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per key: DeepM3 against the trained baseline that drops least, by their intervals."""
    duels = []
    for key in keys:
        at = effects[effects["key"] == key].set_index("row")
        baselines = [b for b in TRAINED_BASELINES if b in at.index]
        if FOCUS not in at.index or not baselines:
            continue
        best = max(baselines, key=lambda b: at.loc[b, "relative"])
        ours, theirs = at.loc[FOCUS], at.loc[best]
        if ours["ci_low"] > theirs["ci_high"]:
            outcome = "more"
        elif ours["ci_high"] < theirs["ci_low"]:
            outcome = "less"
        else:
            outcome = "overlap"
        duels.append({"key": key, "baseline": best, "outcome": outcome})
    return pd.DataFrame(duels, columns=["key", "baseline", "outcome"])


def robustness_headline(effects: pd.DataFrame, grid: list, rows: list[str], local_window: int):
    """Every model at the claim's noise, and DeepM3 against the most robust baseline."""
    if effects.empty:
        return "", pd.DataFrame()
    keys = focus_keys(grid, local_window)
    labels = {p.key: p.label for p in grid}
    shown = [r for r in rows if r not in ("pop", "deepm3-target")]
    view = pd.DataFrame(
        [{"row": r, **{labels[k]: _cell(effects, r, k) for k in keys}} for r in shown]
    )
    duels = robustness_duels(effects, keys)
    text = (
        "## Headline: robustness\n\nThe paper's claim on Amazon: DeepM3 loses under 0.36% "
        "NDCG under shuffling, Gaussian jitter and dropout, while the baselines are torn apart. "
        "Relative test NDCG@10 change [paired bootstrap 95% CI over users, seeds averaged per "
        "user] at each kind of noise's strongest level; every level in section 6 and "
        "`robustness.png`. GRU4Rec, SASRec and last-item ignore timestamps, so noise that only "
        "moves timestamps (the paper's drop, jitter with the order kept) leaves them unchanged "
        "by construction; TiSASRec and DeepM3 read them.\n\n"
        + markdown(view)
        + "\n\nDeepM3 against the trained baseline "
        "that drops least (more / less robust when the intervals do not overlap):\n\n"
        + markdown(duels)
        + "\n\n![robustness](robustness.png)\n"
    )
    return text, duels


def _cell(effects: pd.DataFrame, row: str, key: str) -> str:
    chosen = effects[(effects["row"] == row) & (effects["key"] == key)]
    if chosen.empty:
        return "-"
    e = chosen.iloc[0]
    return f"{pct(e['relative'])} {ci(e['ci_low'], e['ci_high'])}"


def time_and_robustness(out: Path, rows: list[str], grid: list) -> tuple[str, pd.DataFrame]:
    effects = perturbation_effects(out, rows, grid)
    if effects.empty:
        return "", effects
    time_keys = [p for p in grid if p.group == "time"]
    robust_keys = [p for p in grid if p.group == "robustness" and p.level != 0]
    time_view = pd.DataFrame(
        [{"row": r, **{p.label: _cell(effects, r, p.key) for p in time_keys}} for r in rows]
    )
    robust_view = pd.DataFrame(
        [
            {"perturbation": p.label, **{r: _cell(effects, r, p.key) for r in rows}}
            for p in robust_keys
        ]
    )
    curves = effects[~effects["row"].isin(["pop", "deepm3-target"])]
    plots.robustness_curves(curves, grid, out / "robustness.png")
    text = (
        "## 5. Time sensitivity (items and order kept, time changed)\n\nRelative test NDCG@10 "
        "change [paired bootstrap 95% CI]. A model that ignores time shows exactly 0: pop, "
        "last_item, SASRec and GRU4Rec are the controls.\n\n"
        + markdown(time_view)
        + "\n\n## 6. Robustness\n\nRelative test NDCG@10 change [paired bootstrap 95% CI]. The "
        'paper\'s "drop" zeroes timestamps and keeps every event (it is not event dropout, which '
        "is `event dropout p`). Jitter 'order kept' keeps the event order (times may go "
        "backwards); 're-sorted' re-sorts events by their jittered times. sigma=0 and p=0 "
        "reproduce the clean ranks exactly (tested). Masking and targets are unchanged.\n\n"
        + markdown(robust_view)
        + "\n\n![robustness](robustness.png)\n"
    )
    return text, effects


def solver(out: Path, core_records: dict) -> tuple[str, tuple[float, float] | None]:
    files = sorted((out / "analyses" / "solver").glob("*.json"))
    if not files:
        return "", None
    trained = next(
        r["metrics"]["options"] for n, r in core_records.items() if row_of(n)[0] == FOCUS
    )
    first = read(files[0])["rows"][0]
    summary = tables.solver_summary([read(p) for p in files])
    ratios = (
        tables.latency_ratio(summary, "ms_per_1000_users"),
        tables.latency_ratio(summary, "ms_single_user"),
    )
    view = pd.DataFrame(
        {
            "solver": summary["solver"],
            "steps": summary["steps"],
            "NDCG@10": summary["ndcg@10"].map(fmt),
            "state error vs dopri5": summary["relative_state_error"].map(lambda v: f"{v:.2e}"),
            "ms / 1000 users (batched)": summary["ms_per_1000_users"].map(lambda v: f"{v:.0f}"),
            "ms, one user": summary["ms_single_user"].map(lambda v: f"{v:.2f}"),
            "field evaluations / batch": summary["nfe_per_batch"].map(lambda v: f"{v:.0f}"),
        }
    )
    text = (
        f"## 7. Solver and Lipschitz ablation\n\nThe trained DeepM3 runs ({len(files)} seeds, "
        f"trained with {trained['solver']} x {trained['steps']} step(s) per gap) re-solved with "
        "each solver (same weights). `state error`: mean distance of the "
        "final state from dopri5's (rtol 1e-5), relative to its norm: the solver's real error on "
        f"the trained field. Latency on {first['device']}, one thread, evaluation batches of "
        f"{first['batch_size']} users, histories of {first['max_len']} events.\n\n"
        + markdown(view)
        + f"\n\nEuler / RK4 latency at one step per gap: **{ratios[0]:.2f}** batched, "
        f"**{ratios[1]:.2f}** for one user. The `deepm3-rk4` row of the core table is a model "
        "trained with RK4.\n"
    )
    return text, ratios


def lipschitz(out: Path, core_records: dict, grid: list, first_seed: int) -> str:
    runs = {
        f"core/{n}": ("core", n, r)
        for n, r in core_records.items()
        if row_of(n) == (FOCUS, first_seed)
    }
    runs.update(
        {f"lipschitz/{n}": ("lipschitz", n, r) for n, r in records(out, "lipschitz").items()}
    )
    if len(runs) < 2:
        return ""
    largest_jitter = [p for p in grid if p.family == "jitter_sorted"][-1].key
    keys = ["order_full", largest_jitter, [p for p in grid if p.family == "dropout"][-1].key]
    lines = []
    for label, (stage, name, record) in runs.items():
        metrics = record["metrics"]
        lip = metrics.get("lipschitz", {})
        path = out / "analyses" / "perturb" / f"{stage}-{name}.csv.gz"
        changes = {}
        if path.is_file():
            effects = tables.perturbation_effects([pd.read_csv(path)], keys).set_index("key")
            changes = {f"change: {k}": pct(effects.loc[k, "relative"]) for k in keys}
        lines.append(
            {
                "run": label,
                "field": f"{lip.get('mode')} L={lip.get('constant', float('nan')):.3g}",
                "valid NDCG@10": fmt(metrics["valid"]["ndcg@10"]),
                "test NDCG@10": fmt(metrics["test"]["ndcg@10"]),
                "measured constant": fmt(lip.get("measured"), 3),
                "upper bound": fmt(lip.get("upper_bound"), 3),
                **changes,
            }
        )
    return (
        "\n**Lipschitz ablation** (first seed; `measured`: the largest Jacobian norm of the "
        "field at real inputs; `upper bound`: the product of the layers' spectral norms; "
        "`bounded` bounds the drift's size, not its constant).\n\n"
        + markdown(pd.DataFrame(lines))
        + "\n"
    )


def efficiency(out: Path, core_records: dict) -> tuple[str, tuple[float, float] | None]:
    lines = []
    for path in sorted((out / "analyses" / "efficiency").glob("*.json")):
        record = read(path)
        row = row_of(record["run"])[0]
        metrics = [r["metrics"] for n, r in core_records.items() if row_of(n)[0] == row]
        params = metrics[0]["parameters"]
        peak = record["peak_gpu_bytes"]
        lines.append(
            {
                "row": row,
                "parameters (embedding / other)": f"{params['embedding']:,} / {params['other']:,}",
                "width": metrics[0]["options"].get("hidden_size", "-"),
                "s/epoch": f"{np.mean([m['seconds_per_epoch'] for m in metrics]):.1f}",
                "ms, one user": f"{record['ms_single_user']:.2f}",
                "ms / 1000 users": f"{record['ms_per_1000_users']:.0f}",
                "peak GPU memory": "-" if peak is None else f"{peak / 2**20:.0f} MiB",
                "device": record["device"],
            }
        )
    parts = ["## 8. Efficiency\n"]
    if lines:
        parts.append(
            "Searched configurations; on CPU one thread per process with two processes at once, "
            "so timings are indicative; batched latency at the evaluation batch size.\n\n"
            + markdown(pd.DataFrame(lines))
            + "\n"
        )
    path = out / "analyses" / "parameters.json"
    if not path.is_file():
        return "\n".join(parts), None
    sizes = read(path)
    models = ("deepm3", "sasrec", "tisasrec", "gru4rec")
    for key, what in (
        ("ml-1m_full_paper_sizes", "the full ML-1M item count (3,706) and 200-event histories"),
        ("amazon-books_sizes", "Amazon Books' item count (367,982) and 50-event histories"),
    ):
        if key not in sizes:
            continue
        table = sizes[key]["counts"]
        widths = sorted({int(k.split("@")[1]) for k in table})
        view = pd.DataFrame(
            [
                {"width": w, **{m: f"{table[f'{m}@{w}']['total'] / 1e6:.2f}M" for m in models}}
                for w in widths
            ]
        )
        parts.append(
            f"Parameters at equal width with default options, for {what}:\n\n"
            + markdown(view)
            + "\n"
        )
    counts = sizes["ml-1m_full_paper_sizes"]["counts"]  # the paper's claim is about ML-1M
    widths = sorted({int(k.split("@")[1]) for k in counts})
    ratios = [counts[f"sasrec@{w}"]["total"] / counts[f"deepm3@{w}"]["total"] for w in widths]
    return "\n".join(parts), (min(ratios), max(ratios))


def paper_protocol(out: Path, core_records: dict) -> str:
    paper = records(out, "paper")
    if not paper:
        return ""
    lines = []
    for name, record in paper.items():
        row = row_of(name)[0].removesuffix("-paper")
        ours = [
            r["metrics"]["test"]["ndcg@10"] for n, r in core_records.items() if row_of(n)[0] == row
        ]
        test = record["metrics"]["test"]
        lines.append(
            {
                "model": row,
                "paper protocol NDCG@10 (100 sampled negatives)": fmt(test["ndcg@10"]),
                "paper protocol HR@10": fmt(test["hr@10"]),
                "our protocol NDCG@10 (full ranking, core mean)": fmt(float(np.mean(ours)))
                if ours
                else "-",
            }
        )
    return (
        "## 9. The paper's protocol\n\n20-event histories, BPR with one negative, the target "
        "ranked among 100 sampled negatives (first seed, otherwise the searched settings). "
        "Sampled metrics are far higher and can reorder models; shown to measure what the "
        "protocol alone changes.\n\n" + markdown(pd.DataFrame(lines)) + "\n"
    )
