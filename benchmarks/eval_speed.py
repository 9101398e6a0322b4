"""Full-ranking evaluation speed: batched chunks against a per-user loop, in one process.

    DEEPM3_DATA_DIR=../shared/data python benchmarks/eval_speed.py [--dataset ml-1m]

Scores every test user of the data set against all items with a model (``pop`` by default, whose
scoring is nearly free, so the evaluator's own cost shows; an untrained neural model), once in
chunks of ``eval_batch_size`` users (the library's evaluator) and once one user at a time (the
naive baseline), checks that both give the same ranks, and prints the time of each and the ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deepm3.config import DataConfig, EvalConfig  # noqa: E402
from deepm3.data.prepare import prepare  # noqa: E402
from deepm3.eval.evaluator import evaluate  # noqa: E402
from deepm3.models import COUNT_BASELINES, build_model, model_options  # noqa: E402
from deepm3.train.loop import model_scorer  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--model", default="pop", help="pop shows the evaluator's own cost")
    parser.add_argument("--chunk", type=int, default=512)
    args = parser.parse_args(argv)
    data = prepare(DataConfig(dataset=args.dataset))
    torch.manual_seed(0)
    if args.model in COUNT_BASELINES:  # scoring is nearly free: the evaluator's own cost shows
        scorer = COUNT_BASELINES[args.model](data)
    else:
        options = model_options(args.model, {})
        model = build_model(args.model, data.num_items, options, data.max_len).eval()
        scorer = model_scorer(model)
    started = time.perf_counter()
    batched = evaluate(scorer, data, "test", EvalConfig(eval_batch_size=args.chunk))
    batched_seconds = time.perf_counter() - started
    users = len(batched.per_user)
    # The per-user loop: the same evaluator with chunks of one user.
    started = time.perf_counter()
    single = evaluate(scorer, data, "test", EvalConfig(eval_batch_size=1))
    loop_seconds = time.perf_counter() - started
    same = np.array_equal(single.per_user["rank"].to_numpy(), batched.per_user["rank"].to_numpy())
    print(
        f"{args.dataset}: {users:,} test users x {data.num_items:,} items, model {args.model}, "
        f"max_len {data.max_len}, {torch.get_num_threads()} threads"
    )
    print(f"batched ({args.chunk} users per chunk): {batched_seconds:.2f} s")
    print(
        f"per-user loop: {loop_seconds:.2f} s -> batched is "
        f"{loop_seconds / batched_seconds:.1f}x faster; identical ranks: {same}"
    )
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
