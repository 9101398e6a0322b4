"""Score of a finished ``mutmut run`` (see scripts/mutation.sh): killed / total per module.

Reads mutmut's per-module records (``mutants/<module>.meta``), writes ``score.json`` and
``score.md`` to ``--out``. A timeout counts as killed (the mutant broke something: mutmut's
own score does the same). Surviving mutants are listed with their change; those known to be
equivalent (no test can tell them from the original: listed in EQUIVALENT, by function and
mutated line) are marked, and the score is also given without them.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from collections import Counter
from importlib.metadata import version
from pathlib import Path

from mutmut.configuration import config
from mutmut.stats import status_by_exit_code

# (function, the mutated line) -> why no test can kill it
EQUIVALENT = {
    (
        "sample_negatives",
        "starts = np.searchsorted(seen_rows, np.arange(len(targets) + 2))",
    ): "one more row start past the last row: never read",
    (
        "sample_negatives",
        "probabilities = weights[1:].astype(None) + 1e-12",
    ): "astype(None) is astype(float64)",
    (
        "sample_negatives",
        "draw = rng.choice(num_items, size=3 * count, p=probabilities) + 1",
    ): "draws in larger batches: other negatives for a seed, from the same distribution "
    "(the draw batch is not a documented property; a test would have to pin drawn items)",
    (
        "evaluated_rows",
        "if config.eval_users == 0 or config.eval_users > count:",
    ): "eval_users == count: a sample of every row, sorted, is every row",
    (
        "evaluated_rows",
        "return np.sort(rng.choice(count, size=config.eval_users, replace=None))",
    ): "replace=None is falsy: the same as replace=False",
    ("pessimistic_ranks", "return at_least.to(None)"): "the count is int64 already",
    # evaluate (mutated only once it is not decorated: see "not_mutated" below)
    (
        "evaluate",
        "seen_rows, seen_items = seen_rows[:1], seen_items[:0]",
    ): "one row index without an item: broadcasts to nothing masked, nothing excluded",
    (
        "evaluate",
        "seen_rows, seen_items = seen_rows[:0], seen_items[:1]",
    ): "one item without a row index: broadcasts to nothing masked, nothing excluded",
    (
        "evaluate",
        "row_starts = np.searchsorted(seen_rows, np.arange(len(table) + 2))",
    ): "one more row start past the last row: never read",
    **{
        ("evaluate", line): "float('-INF') is float('-inf')"
        for line in (
            'scores = torch.nan_to_num(scorer(batch).float(), nan=float("-INF"))',
            'scores[:, 0] = float("-INF")',
            "scores[mask_rows, torch.from_numpy(seen_items[lo:hi]).to(scores.device)] = "
            'float("-INF")',
        )
    },
    **{
        ("evaluate", line): "tensors already on the device: the same on a CPU (a GPU run of "
        "the tests would tell)"
        for line in (
            "batch = table.batch(rows).to(None)",
            "mask_rows = torch.from_numpy(seen_rows[lo:hi] - start).to(None)",
            'scores[mask_rows, torch.from_numpy(seen_items[lo:hi]).to(None)] = float("-inf")',
            "[batch.target[:, None], torch.from_numpy(negatives[rows]).to(None)], 1",
        )
    },
    **{
        ("evaluate", line): "whether tqdm leaves its bar on screen: display only"
        for line in (
            'for start in tqdm(chunks, desc=f"evaluate {role}", disable=not progress, leave=None):',
            'for start in tqdm(chunks, desc=f"evaluate {role}", disable=not progress, ):',
            'for start in tqdm(chunks, desc=f"evaluate {role}", disable=not progress, leave=True):',
        )
    },
    # deepm3/stats/significance.py and effects.py
    **{
        ("per_user_ndcg", line): "numpy's default dtype is float64"
        for line in (
            "ndcg = np.zeros(len(ranks), dtype=None)",
            "ndcg = np.zeros(len(ranks), )",
            "ndcg[hit] = 1.0 / np.log2(ranks[hit].astype(None) + 1.0)",
        )
    },
    **{
        (function, line): "float('NAN') is float('nan')"
        for function, line in (
            ("_relative", 'return mean_a / mean_b - 1.0 if mean_b != 0 else float("NAN")'),
            ("seed_interval", 'return mean, 0.0, float("NAN")'),
            ("relative_change", 'low = high = float("NAN")'),
        )
    },
    (
        "paired_tests",
        "wilcoxon_p = float(stats.wilcoxon(a, b, ).pvalue)",
    ): 'zero_method="wilcox" is scipy\'s default',
    (
        "paired_tests",
        'wilcoxon_p = float(stats.wilcoxon(a, b, zero_method="WILCOX").pvalue)',
    ): "scipy lower-cases zero_method",
    (
        "paired_tests",
        "rounding = ROUNDING_ULPS * np.finfo(None).eps * np.abs(difference).max()",
    ): "np.finfo(None) is np.finfo(float64)",
    **{
        ("holm", line): "tied p-values get one adjusted value whatever their order: the sort "
        "algorithm (and its stability) cannot change a result"
        for line in (
            "order = np.argsort(raw, kind=None)",
            "order = np.argsort(raw, )",
            'order = np.argsort(raw, kind="STABLE")',
        )
    },
    **{
        (function, line): "both sequences have one length by construction"
        for function, line in (
            ("holm", "return {name: float(value) for name, value in zip(names, adjusted, )}"),
            *(
                (
                    "holm",
                    "return {name: float(value) for name, value in "
                    f"zip(names, adjusted, strict={strict})}}",
                )
                for strict in ("None", "False")
            ),
            ("significance", 'adjusted = holm(dict(zip(frame["baseline"], frame[column], )))'),
            *(
                (
                    "significance",
                    'adjusted = holm(dict(zip(frame["baseline"], frame[column], '
                    f"strict={strict})))",
                )
                for strict in ("None", "False")
            ),
        )
    },
    (
        "bootstrap_relative_ci",
        "drawn = rng.integers(users, size=(min(chunk, n_resamples - start), users))",
    ): "integers(users) draws from [0, users), the same stream as integers(0, users)",
    **{
        (function, line): "per_user_ndcg's default k is 10, which is K"
        for function, line in (
            (
                "mean_user_ndcg",
                "[pd.Series(per_user_ndcg(s.to_numpy(), ), index=s.index) for s in "
                "rank_columns], axis=1",
            ),
            (
                "perturbation_effects",
                "values = np.mean([per_user_ndcg(frame[c].to_numpy(), ) for c in columns], axis=0)",
            ),
        )
    },
    (
        "solver_summary",
        'summary = frame.groupby(["solver", "steps"], sort=None)[columns].mean().reset_index()',
    ): "sort=None is falsy: pandas keeps the first-seen order as with sort=False",
}


def mutated_line(name: str) -> str:
    """The mutant's changed line ('+' side of ``mutmut show``), stripped."""
    shown = subprocess.run(
        [str(Path(sys.executable).parent / "mutmut"), "show", name],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    added = [line[1:].strip() for line in shown.splitlines() if line.startswith("+ ")]
    added = added or [
        line[1:].strip()
        for line in shown.splitlines()
        if line.startswith("+") and not line.startswith("+++")
    ]
    return " / ".join(added)


def function_of(name: str) -> str:
    """``deepm3.eval.evaluator.x_sample_negatives__mutmut_10`` -> ``sample_negatives``."""
    qualified = name.rsplit("__mutmut_", 1)[0].rsplit(".", 1)[-1]
    return qualified.removeprefix("x_").replace("xǁ", "").replace("ǁ", ".")


def module_score(path: str) -> dict:
    meta = json.loads(Path("mutants", path + ".meta").read_text())
    statuses = {key: status_by_exit_code[code] for key, code in meta["exit_code_by_key"].items()}
    counts = Counter(statuses.values())
    killed = counts["killed"] + counts["timeout"]
    survivors = []
    for name in sorted(k for k, status in statuses.items() if status != "killed"):
        if statuses[name] == "timeout":
            continue
        line = mutated_line(name)
        function = function_of(name)
        survivors.append(
            {
                "mutant": name,
                "status": statuses[name],
                "function": function,
                "line": line,
                "equivalent": EQUIVALENT.get((function, line)),
            }
        )
    equivalent = sum(1 for s in survivors if s["equivalent"])
    total = len(statuses)
    return {
        "killed": killed,
        "total": total,
        "score": round(killed / total, 4) if total else None,
        "equivalent": equivalent,
        "score_without_equivalent": round(killed / (total - equivalent), 4)
        if total > equivalent
        else None,
        "statuses": dict(sorted(counts.items())),
        "survivors": survivors,
    }


def markdown(record: dict) -> str:
    lines = [
        "# Mutation score",
        "",
        f"mutmut {record['mutmut']}, {record['seconds']} s on this machine; tests run against "
        f"each mutant: {', '.join(record['tests'])}. A timeout counts as killed.",
        "",
        "| module | killed | total | score | equivalent | score without equivalent |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for path, score in record["modules"].items():
        lines.append(
            f"| {path} | {score['killed']} | {score['total']} | {score['score']:.1%} | "
            f"{score['equivalent']} | {score['score_without_equivalent']:.1%} |"
        )
    for path, score in record["modules"].items():
        if not score["survivors"]:
            continue
        lines += ["", f"## Surviving mutants of {path}", ""]
        for survivor in score["survivors"]:
            why = f" (equivalent: {survivor['equivalent']})" if survivor["equivalent"] else ""
            lines.append(
                f"- `{survivor['mutant']}` {survivor['status']}: `{survivor['line']}`{why}"
            )
    if record["not_mutated"]:
        lines += ["", "## Not mutated", ""]
        lines += [f"- {note}" for note in record["not_mutated"]]
    return "\n".join(lines) + "\n"


def decorated_functions(path: Path) -> list[str]:
    """Functions and methods of ``path`` with a decorator (mutmut leaves them unmutated)."""
    tree = ast.parse(path.read_text())
    return [
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.decorator_list
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    settings = config()  # [tool.mutmut] of pyproject.toml
    record = {
        "mutmut": version("mutmut"),
        "seconds": args.seconds,
        "tests": settings.pytest_add_cli_args_test_selection,
        "modules": {path: module_score(path) for path in settings.only_mutate},
        # mutmut skips decorated functions (it cannot trampoline them)
        "not_mutated": [
            f"{path}: {name} (decorated)"
            for path in settings.only_mutate
            for name in decorated_functions(Path(path))
        ],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "score.json").write_text(json.dumps(record, indent=2) + "\n")
    (args.out / "score.md").write_text(markdown(record))
    for path, score in record["modules"].items():
        print(f"{path}: {score['killed']}/{score['total']} killed ({score['score']:.1%})")


if __name__ == "__main__":
    main()
