"""What each ``deepm3`` subcommand does, over library functions (:mod:`deepm3.cli` parses the
arguments and calls these): data prepare, train, evaluate, models, report, suite. The serving
commands (recommend, export, serve) are in :mod:`deepm3.recommend.commands`."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import fields
from pathlib import Path

from deepm3.config import SECTIONS, DataConfig, did_you_mean, load_config
from deepm3.data.prepare import prepare
from deepm3.defaults import run_config
from deepm3.errors import ConfigError
from deepm3.models import (
    COUNT_BASELINES,
    MODELS,
    build_model,
    describe_options,
    model_options,
    option_ranges,
)
from deepm3.models.contract import count_parameters
from deepm3.portable import portable_path
from deepm3.reporting import calibration as calibration_table
from deepm3.reporting.comparison import write_report
from deepm3.reporting.records import collect
from deepm3.suite import stages
from deepm3.suite.budgets import SUITES
from deepm3.suite.layout import Layout
from deepm3.suite.pool import DEVICES, Execution, default_jobs
from deepm3.suite.training import Source
from deepm3.train.estimate import estimate_run
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


def data_prepare(args: argparse.Namespace) -> int:
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


def train(args: argparse.Namespace) -> int:
    if args.resume:
        options = ("dataset", "model", "data_dir", "config", "out", "overwrite", "estimate")
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
    if args.estimate:
        print(estimate_run(args.model, config).line())
        return 0
    out = Path(args.out or f"runs/{args.dataset}-{args.model}")
    _print_metrics(run(args.model, config, out, overwrite=args.overwrite), out)
    return 0


def evaluate(args: argparse.Namespace) -> int:
    payload = evaluate_run(args.run_dir, args.protocol)
    print(_table([(key, f"{value:.4f}") for key, value in payload["test"].items()]))
    return 0


def models(args: argparse.Namespace) -> int:
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


def report(args: argparse.Namespace) -> int:
    out = Path(args.out)
    collect([Path(d) for d in args.run_dirs], out)
    print(write_report(out, args.title))
    print(f"written: {out}/table.md, {out}/comparison.png, records in {out}/runs/")
    return 0


def calibration(args: argparse.Namespace) -> int:
    ladder = Path(args.ladder)
    if not ladder.is_dir():
        raise ConfigError(f"no ladder folder {ladder}")
    print(calibration_table.write(ladder, args.dataset, Path(args.out)))
    print(f"written: {args.out}")
    return 0


def suite(args: argparse.Namespace) -> int:
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
    # recorded in every run's config: relative to the checkout where it can be (deepm3.portable)
    folder = args.data_dir or os.environ.get("DEEPM3_DATA_DIR") or None
    source = Source(budget.dataset, portable_path(folder, openable=True) if folder else None)
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
