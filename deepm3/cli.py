"""The ``deepm3`` command: thin subcommands over library functions.

    deepm3 data prepare DATASET [--data-dir DIR] [--json] [key=value ...]
    deepm3 train --dataset D --model M [--data-dir DIR] [--config FILE] [--out DIR]
                 [--overwrite] [key=value ...]
    deepm3 train --resume RUN_DIR
    torchrun --nproc-per-node N -m deepm3 train ...   (N processes, DistributedDataParallel)
    deepm3 evaluate RUN_DIR [--protocol full|sampled]
    deepm3 report [RUN_DIR ...] --out FOLDER
    deepm3 models
    deepm3 recommend RUN_DIR [--input requests.jsonl] [--output answers.jsonl]
    deepm3 export RUN_DIR [--format torchscript|onnx] [--out DIR] [--solver euler|rk4]
    deepm3 serve RUN_DIR [--host 127.0.0.1] [--port 8000] [--max-batch 64] [--max-wait-ms 2]
    deepm3 suite ml1m|amazon [--budget smoke|quick|full] [--dataset D] [--device D] [--jobs N]

Bad input ends with one message on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import fields
from pathlib import Path

from deepm3.config import SECTIONS, DataConfig, did_you_mean, load_config
from deepm3.data.prepare import prepare
from deepm3.defaults import run_config
from deepm3.errors import ConfigError, DeepM3Error
from deepm3.models import (
    COUNT_BASELINES,
    MODELS,
    build_model,
    describe_options,
    model_options,
    option_ranges,
)
from deepm3.models.contract import count_parameters
from deepm3.recommend.commands import add_serving_commands
from deepm3.reporting.comparison import write_report
from deepm3.reporting.records import collect
from deepm3.suite import stages
from deepm3.suite.budgets import SUITES
from deepm3.suite.layout import Layout
from deepm3.suite.pool import DEVICES, Execution, default_jobs
from deepm3.suite.training import Source
from deepm3.train.run import evaluate_run, resume, run
from deepm3.train.rundir import failure


def _table(rows: list[tuple[str, object]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _data_settings_only(overrides: list[str]) -> None:
    """``data prepare`` reads the data section alone: refuse any other key, naming it."""
    names = {field.name for field in fields(DataConfig)}
    keys = [item.split("=", 1)[0].strip() for item in overrides if "=" in item]
    refused = [key for key in keys if key.removeprefix("data.") not in names]
    if refused:
        first = refused[0].split(".")[-1]
        owners = [s for s, cls in SECTIONS.items() if first in {f.name for f in fields(cls)}]
        hint = f"; {first} is a {owners[0]} setting" if owners else did_you_mean(first)
        raise ConfigError(
            f"data prepare takes data settings only, not {', '.join(refused)}"
            + hint
            + "; data keys: "
            + ", ".join(sorted(names))
        )


def cmd_data_prepare(args: argparse.Namespace) -> int:
    _data_settings_only(args.overrides)
    base = {"data": {"dataset": args.dataset}}
    if args.data_dir:
        base["data"]["data_dir"] = args.data_dir
    config = load_config(None, args.overrides, base=base)
    prepared = prepare(config.data, use_cache=not args.no_cache)
    stats = prepared.stats
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    raw, kept = stats["raw"], stats["filtered"]
    print(
        _table(
            [
                ("dataset", f"{stats['dataset']}  ({stats['source']})"),
                (
                    "raw users/items/events",
                    f"{raw['users']:,} / {raw['items']:,} / {raw['interactions']:,}",
                ),
                (
                    "kept users/items/events",
                    f"{kept['users']:,} / {kept['items']:,} / {kept['interactions']:,}",
                ),
                ("duplicate events", stats["duplicate_events"]),
                ("dropped by k-core", stats["dropped_by_kcore"]),
                ("avg / median length", f"{stats['avg_seq_len']} / {stats['median_seq_len']}"),
                ("zero-gap share", stats["zero_gap_share"]),
                ("users not evaluated", stats["users_not_evaluated"]),
                ("fingerprint", stats["fingerprint"]),
            ]
        )
    )
    return 0


def _print_metrics(metrics: dict, out: Path) -> None:
    if not metrics:  # a torchrun rank other than 0: rank 0 prints
        return
    rows = [(key, f"{value:.4f}") for key, value in metrics["test"].items()]
    rows.append(("parameters", f"{metrics['parameters']['total']:,}"))
    if metrics["seconds_per_epoch"] is not None:
        rows.append(("seconds/epoch", metrics["seconds_per_epoch"]))
        rows.append(("best epoch", f"{metrics['best_epoch']} of {metrics['epochs_run']}"))
    print(_table(rows))
    print(f"run directory: {out}")


def cmd_train(args: argparse.Namespace) -> int:
    if args.resume:
        options = ("dataset", "model", "data_dir", "config", "out", "overwrite")
        given = [
            f"--{o.replace('_', '-')}" for o in options if getattr(args, o) not in (None, False)
        ]
        if given or args.overrides:
            raise ConfigError(
                "--resume takes no other options or key=value settings: "
                + ", ".join([*given, *args.overrides])
            )
        reason = failure(Path(args.resume))
        if reason:
            print(f"resuming {args.resume}, which failed before: {reason}", flush=True)
        _print_metrics(resume(args.resume), Path(args.resume))
        return 0
    if not args.dataset or not args.model:
        raise ConfigError("train needs --dataset and --model (or --resume RUN_DIR)")
    config = run_config(args.dataset, args.model, args.config, args.overrides, args.data_dir)
    out = Path(args.out or f"runs/{args.dataset}-{args.model}")
    _print_metrics(run(args.model, config, out, overwrite=args.overwrite), out)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    payload = evaluate_run(args.run_dir, args.protocol)
    print(_table([(key, f"{value:.4f}") for key, value in payload["test"].items()]))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    num_items, max_len = args.num_items, args.max_len
    if args.dataset:
        base = {"data": {"dataset": args.dataset}}
        if args.data_dir:
            base["data"]["data_dir"] = args.data_dir
        data = prepare(load_config(None, [], base=base).data)
        num_items, max_len = data.num_items, data.max_len
    print(f"parameter counts for {num_items:,} items, max_len {max_len}")
    for name in COUNT_BASELINES:
        print(f"{name:<10} {0:>12,}  (count baseline, no options)")
    for name in MODELS:
        model = build_model(name, num_items, model_options(name, {}), max_len)
        counts = count_parameters(model)
        print(
            f"{name:<10} {counts['total']:>12,}  (embedding {counts['embedding']:,}, "
            f"other {counts['other']:,})"
        )
        ranges = option_ranges(name)
        print(
            "           options: "
            + ", ".join(
                f"{k}={v}" + (f" ({ranges[k]})" if k in ranges else "")
                for k, v in describe_options(name).items()
            )
        )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    out = Path(args.out)
    collect([Path(d) for d in args.run_dirs], out)
    print(write_report(out, args.title))
    print(f"written: {out}/table.md, {out}/comparison.png, records in {out}/runs/")
    return 0


def cmd_suite(args: argparse.Namespace) -> int:
    if not 0 <= args.threads <= 1024:
        raise ConfigError(f"--threads must be from 0 (torch's default) to 1024, got {args.threads}")
    suite = SUITES[args.suite]
    budget = suite.budget(args.budget, args.dataset)
    skip = frozenset(s for s in (args.skip or "").split(",") if s)
    unknown = sorted(skip - set(stages.STAGES))
    if unknown:
        raise ConfigError(
            f"unknown stage(s) {', '.join(unknown)}; stages: {', '.join(stages.STAGES)}"
        )
    if args.device not in DEVICES:
        raise ConfigError(f"unknown device {args.device!r}; valid: {', '.join(DEVICES)}")
    if args.jobs == "auto":
        jobs = default_jobs(args.device)
    elif args.jobs.isdigit() and int(args.jobs) > 0:
        jobs = int(args.jobs)
    else:
        raise ConfigError(f"--jobs must be a positive integer or auto, got {args.jobs!r}")
    out = Path(args.out) if args.out else suite.out(budget)
    stem = Path(budget.dataset).stem
    source = Source(budget.dataset, args.data_dir or os.environ.get("DEEPM3_DATA_DIR") or None)
    layout = Layout(runs=Path(args.runs or f"runs/{args.suite}-{stem}-{budget.name}"), out=out)
    execution = Execution(device=args.device, threads=args.threads, jobs=jobs)
    print(
        f"suite {args.suite}, budget {budget.name} ({budget.note}); data {budget.dataset}; "
        f"device {args.device}, {jobs} parallel job(s); results in {out}",
        flush=True,
    )
    settings = stages.SuiteSettings(
        suite, budget, suite.design(budget.name), source, layout, execution, args.storage, skip
    )
    if args.plan:
        print("\n".join(stages.plan_lines(settings)))
        return 0
    stages.check_data(source)
    stages.run_suite(settings)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepm3", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="data set preparation").add_subparsers(
        dest="data_command", required=True
    )
    prep = data.add_parser("prepare", help="read, filter, split and cache a data set; print stats")
    prep.add_argument("dataset", help="ml-1m, ml-100k, amazon-books, ... or a .csv/.tsv/.inter")
    prep.add_argument("--data-dir", help="folder with the raw files (default: $DEEPM3_DATA_DIR)")
    prep.add_argument("--json", action="store_true", help="print statistics as JSON")
    prep.add_argument("--no-cache", action="store_true", help="ignore and do not write the cache")
    prep.add_argument("overrides", nargs="*", help="data settings as key=value (kcore=10)")
    prep.set_defaults(func=cmd_data_prepare)

    train = sub.add_parser(
        "train",
        help="train (or fit) a model and evaluate it",
        description="Train (or fit) a model and evaluate it. The same command runs on several "
        "processes under torchrun (torchrun --nproc-per-node N -m deepm3 train ...: "
        "DistributedDataParallel, NCCL on CUDA, gloo on the CPU); batch_size is then the global "
        "batch, split across the processes, and rank 0 alone writes the run directory.",
    )
    train.add_argument("--dataset")
    train.add_argument("--model", help="deepm3, sasrec, tisasrec, gru4rec, pop, last_item")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    train.add_argument("--data-dir")
    train.add_argument("--config", help="YAML file with data/eval/train/model sections")
    train.add_argument("--out", help="run directory (default runs/DATASET-MODEL)")
    train.add_argument(
        "--overwrite", action="store_true", help="replace a run already in the run directory"
    )
    train.add_argument("overrides", nargs="*", help="settings as key=value (epochs=3)")
    train.set_defaults(func=cmd_train)

    report = sub.add_parser("report", help="comparison table and plot from run directories")
    report.add_argument(
        "run_dirs", nargs="*", help="finished runs to add (copied to OUT/runs; name-sN = seed N)"
    )
    report.add_argument("--out", required=True, help="folder for table.md, the plot and runs/")
    report.add_argument("--title", default="Comparison")
    report.set_defaults(func=cmd_report)

    evaluate = sub.add_parser("evaluate", help="evaluate a finished run's best model on test")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--protocol", choices=["full", "sampled"], default="full")
    evaluate.set_defaults(func=cmd_evaluate)

    models = sub.add_parser("models", help="list models, their options and parameter counts")
    models.add_argument("--dataset", help="count parameters for this data set's items")
    models.add_argument("--data-dir")
    models.add_argument("--num-items", type=int, default=3706)
    models.add_argument("--max-len", type=int, default=200)
    models.set_defaults(func=cmd_models)

    add_serving_commands(sub)

    suite = sub.add_parser("suite", help="the experiment suite: search, seeds, analyses, report")
    suite.add_argument(
        "suite", choices=["ml1m", "amazon"], help="ml1m (MovieLens-1M) or amazon (5-core)"
    )
    suite.add_argument(
        "--dataset", help="data set (amazon: amazon-books by default, amazon-beauty, a .csv, ...)"
    )
    suite.add_argument("--budget", default="quick", help="smoke | quick | full")
    suite.add_argument("--device", default="auto", help=" | ".join(DEVICES))
    suite.add_argument("--jobs", default="auto", help="parallel runs (auto: one per core or 4/GPU)")
    suite.add_argument("--threads", type=int, default=1, help="torch threads per run")
    suite.add_argument(
        "--skip",
        help="comma-separated stages to skip: " + ", ".join(stages.STAGES),
    )
    suite.add_argument("--storage", help="Optuna storage URL shared by workers (default SQLite)")
    suite.add_argument("--data-dir", help="folder with the raw files (default: $DEEPM3_DATA_DIR)")
    suite.add_argument(
        "--out", help="results folder (default results/<suite>[/<dataset>], /full for full)"
    )
    suite.add_argument("--runs", help="working run folder (default runs/SUITE-DATASET-BUDGET)")
    suite.add_argument(
        "--plan", action="store_true", help="list the training runs and their status; run nothing"
    )
    suite.set_defaults(func=cmd_suite)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Overrides (key=value) may follow options; argparse leaves those as extras.
    args, extra = parser.parse_known_args(argv)
    unknown = [item for item in extra if item.startswith("-") or "=" not in item]
    if unknown or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    try:
        return args.func(args)
    except DeepM3Error as exc:
        print(f"deepm3: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("deepm3: interrupted", file=sys.stderr)
        return 130
