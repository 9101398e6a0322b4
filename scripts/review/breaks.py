"""Break the code on purpose, one behaviour at a time, and check that the test meant to notice
each break fails (then restore the code and check it passes again).

    python scripts/review/breaks.py [NAME ...]      # every break by default; prints a table

Each break is a literal text replacement in one file (it must match exactly once); the file is
restored from its original bytes whatever happens. Run from the repository root with the
package importable (``PYTHONPATH=.`` or the project's venv).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Break:
    name: str
    behaviour: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]  # pytest node ids expected to fail


MASK_ONLY_THE_WINDOW = """    seen_rows, seen_items = history_items(data, table.users, role)
    window = {(r, int(i)) for r in range(len(table)) for i in table.items[r] if i}
    keep = np.array([(int(r), int(i)) in window for r, i in zip(seen_rows, seen_items)], bool)
    seen_rows, seen_items = seen_rows[keep], seen_items[keep]"""

FIT_LINE = (
    "        state, valid, test = fit(model, data, plan.config, out, plan.device, resume=resume)\n"
)

FIT_LINE = (
    "        state, valid, test = fit(model, data, plan.config, out, plan.device, resume=resume)\n"
)


BREAKS = [
    Break(
        "best-checkpoint",
        "test metrics come from the best checkpoint",
        "deepm3/train/selection.py",
        "    checkpoint.load_model(best_path, model, device)\n",
        "",
        ("tests/test_training_rules.py::test_test_metrics_come_from_the_best_checkpoint",),
    ),
    Break(
        "test-twice",
        "the test split is touched once (an extra test evaluation after fit)",
        "deepm3/train/run.py",
        FIT_LINE,
        FIT_LINE + '        evaluate(scorer, data, "test", plan.config.eval)\n',
        ("tests/test_training_rules.py::test_the_test_split_is_evaluated_once_after_training",),
    ),
    Break(
        "search-tests",
        "the test split is touched once (search trials evaluating test)",
        "deepm3/suite/search.py",
        "            evaluate_test=False,\n",
        "            evaluate_test=True,\n",
        ("tests/test_suite.py::test_search_trials_never_touch_the_test_split",),
    ),
    Break(
        "mask-window",
        "history masking; recommend == evaluator top-k (the evaluator masks only the window)",
        "deepm3/eval/evaluator.py",
        "    seen_rows, seen_items = history_items(data, table.users, role)",
        MASK_ONLY_THE_WINDOW,
        (
            "tests/test_metrics.py::test_full_ranking_equals_a_per_user_loop",
            "tests/test_recommend.py::test_recommend_ranks_like_the_evaluator_for_test_users",
        ),
    ),
    Break(
        "cache-unused",
        "cached state == replay (the cache never used)",
        "deepm3/recommend/state.py",
        "    return entry is not None and entry.state is not None and not request.events",
        "    return False",
        ("tests/test_recommend.py::test_incremental_state_equals_a_full_replay",),
    ),
    Break(
        "serve-reversed",
        "serve answers like the library (items reversed in the HTTP answer)",
        "deepm3/recommend/server.py",
        "            out = answer.to_dict()\n",
        '            out = answer.to_dict()\n            out["items"] = out["items"][::-1]\n',
        ("tests/test_serve.py::test_answers_are_the_librarys",),
    ),
    Break(
        "queue-500",
        "serve's queue-full answer is 503",
        "deepm3/recommend/server.py",
        '        return _error_response(f"server busy: {error}", 503)',
        '        return _error_response(f"server busy: {error}", 500)',
        ("tests/test_serve.py::test_a_full_queue_is_answered_503",),
    ),
    Break(
        "export-time-scale",
        "export parity (the export ignores time_scale; parity compares the export with itself)",
        "deepm3/recommend/scoring_path.py",
        "        h = states_at_events(self.model, items, timestamps, time_gaps, time_scale)[:, -1]",
        "        h = states_at_events(\n"
        "            self.model, items, timestamps, time_gaps, torch.ones_like(time_scale)\n"
        "        )[:, -1]",
        ("tests/test_export.py::test_the_export_scores_like_the_eager_model",),
    ),
    Break(
        "export-self-parity",
        "export parity (the parity check compares the export with itself)",
        "deepm3/recommend/scoring_path.py",
        "        eager = recommender.scoring.histories(data, at, solver).numpy()\n",
        "        eager = run(*(x.numpy() for x in _tensors(data, query)))\n",
        ("tests/test_export.py",),
    ),
    Break(
        "stale-resume",
        "resume by config hash (a stale last.pt resumed after the hash changed)",
        "deepm3/suite/training.py",
        '    if _matches(folder, planned.digest, False) and (folder / "last.pt").is_file():\n'
        "        return resume(folder)",
        '    if (folder / "last.pt").is_file():\n        return resume(folder)',
        ("tests/test_suite.py::test_a_checkpoint_of_other_settings_is_never_resumed",),
    ),
    Break(
        "unaligned-users",
        "paired significance (users paired by position, not by id)",
        "deepm3/stats/effects.py",
        '        a, b = ndcg[focus].align(values, join="inner")',
        "        count = min(len(ndcg[focus]), len(values))\n"
        "        a = pd.Series(ndcg[focus].to_numpy()[:count])\n"
        "        b = pd.Series(values.to_numpy()[:count])",
        ("tests/test_suite.py::test_significance_pairs_users_by_id_not_by_position",),
    ),
    Break(
        "logq-ignored",
        "logq in training (the loop ignores train.logq)",
        "deepm3/train/loop.py",
        "                logq=train.logq,",
        "                logq=False,",
        ("tests/test_training_rules.py",),
    ),
    Break(
        "loop-ignored",
        "accelerate in training (the loop setting ignored: compile runs the fused loop)",
        "deepm3/models/loops.py",
        '    "compile": Loop(static(compiled=True, graphs=False), static=True),',
        '    "compile": Loop(fused),',
        (
            "tests/test_accelerate.py::"
            "test_train_accelerate_trains_and_evaluates_through_the_accelerated_step",
        ),
    ),
]


def pytest(tests: tuple[str, ...]) -> tuple[bool, float, str]:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    last = (result.stdout.strip().splitlines() or [""])[-1]
    return result.returncode == 0, time.perf_counter() - started, last


def check(one: Break) -> dict:
    path = ROOT / one.path
    original = path.read_bytes()
    text = original.decode()
    if text.count(one.old) != 1:
        return {"break": one.name, "outcome": f"NOT APPLIED ({text.count(one.old)} matches)"}
    try:
        path.write_text(text.replace(one.old, one.new))
        broken_passed, seconds, last = pytest(one.tests)
    finally:
        path.write_bytes(original)
    restored_passed, _, restored_last = pytest(one.tests)
    caught = not broken_passed and restored_passed
    return {
        "break": one.name,
        "outcome": "caught" if caught else "NOT CAUGHT",
        "broken": last,
        "restored": restored_last,
        "seconds": round(seconds, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help="breaks to check (default: all)")
    chosen = parser.parse_args().names
    rows = [check(b) for b in BREAKS if not chosen or b.name in chosen]
    by_name = {b.name: b for b in BREAKS}
    print("| behaviour | break | tests | with the break | restored |")
    print("|---|---|---|---|---|")
    for row in rows:
        one = by_name[row["break"]]
        tests = ", ".join(f"`{t.split('::')[-1]}`" for t in one.tests)
        print(
            f"| {one.behaviour} | {row['break']} | {tests} | {row.get('broken', row['outcome'])}"
            f" ({row['outcome']}) | {row.get('restored', '-')} |"
        )
    return 0 if all(r["outcome"] == "caught" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
