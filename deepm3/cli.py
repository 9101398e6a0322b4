"""The ``deepm3`` command: argument parsing, then one library function per subcommand.

    deepm3 data prepare DATASET [--data-dir DIR] [--json] [key=value ...]
    deepm3 train --dataset D --model M [--data-dir DIR] [--config FILE] [--out DIR]
                 [--overwrite] [key=value ...]
    deepm3 train --resume RUN_DIR
    torchrun --nproc-per-node N -m deepm3 train ...   (N processes, DistributedDataParallel)
    deepm3 evaluate RUN_DIR [--protocol full|sampled]
    deepm3 report [RUN_DIR ...] --out FOLDER
    deepm3 calibration LADDER --dataset D --out FILE.md
    deepm3 models
    deepm3 recommend RUN_DIR [--input requests.jsonl] [--output answers.jsonl]
    deepm3 export RUN_DIR [--format torchscript|onnx] [--out DIR] [--solver euler|rk4]
    deepm3 serve RUN_DIR [--host 127.0.0.1] [--port 8000] [--max-batch 64] [--max-wait-ms 2]
                 [--warm] [--max-replay N]
    deepm3 suite ml1m|amazon [--budget smoke|quick|standard|full] [--dataset D] [--jobs N]

Bad input ends with one message on stderr and exit code 2.

Each subcommand names the module and function that do its work (:mod:`deepm3.commands`,
:mod:`deepm3.recommend.commands`); that module is imported when the command runs, the one
deferred import of the package, so that ``--help`` and a mistyped option answer without loading
torch (measured on 2 busy cores: 1.0 s instead of 5.3 s). Nothing imports this module.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from deepm3.errors import DeepM3Error
from deepm3.suite import STAGES

COMMANDS = "deepm3.commands"
# recommend and serve need the run directory alone; the data only for requests by user id
DATA_FOR_USERS = (
    "folder with the run's raw data, read for requests by user id (default: $DEEPM3_DATA_DIR, "
    "else where the run found it; never downloaded)"
)
MAX_REPLAY = (
    "replay at most this many of a history's most recent events (default 25, at most the run's "
    "max_len; fewer answer sooner: docs/serving.md has the measured trade-off)"
)


def _serving_commands(sub: argparse._SubParsersAction) -> None:
    """recommend, export and serve: the subcommands that use a trained run."""
    recommend = sub.add_parser(
        "recommend", help="top-k items for JSON-lines requests, from a trained run"
    )
    recommend.add_argument("run_dir")
    recommend.add_argument("--input", default="-", help="JSON-lines requests (default stdin)")
    recommend.add_argument("--output", default="-", help="JSON-lines answers (default stdout)")
    recommend.add_argument("--data-dir", help=DATA_FOR_USERS)
    recommend.add_argument("--device", help="cpu, cuda, mps (default: the run's setting)")
    recommend.add_argument("--batch-size", type=int, default=256, help="requests per forward")
    recommend.add_argument("--max-replay", type=int, help=MAX_REPLAY)
    recommend.add_argument(
        "--unknown-items", default="ignore", choices=("ignore", "reject"),
        help="ignore unknown item ids (reported in notes) or reject the request",
    )  # fmt: skip
    recommend.set_defaults(handler=("deepm3.recommend.commands", "recommend"))

    export = sub.add_parser(
        "export", help="the scoring path (history -> scores) as TorchScript or ONNX"
    )
    export.add_argument("run_dir")
    export.add_argument("--format", default="torchscript", choices=("torchscript", "onnx"))
    export.add_argument("--out", help="folder for the export (default RUN_DIR/export-FORMAT)")
    export.add_argument(
        "--data-dir", help="folder with the run's raw data (a run without serving.npz only)"
    )
    export.add_argument(
        "--solver", help="DeepM3: re-solve the same weights with a fixed-step method (euler, rk4)"
    )
    export.set_defaults(handler=("deepm3.recommend.commands", "export"))

    serve = sub.add_parser("serve", help="an HTTP JSON API over a trained run (FastAPI)")
    serve.add_argument("run_dir")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--data-dir", help=DATA_FOR_USERS)
    serve.add_argument("--device", help="cpu, cuda, mps (default: the run's setting)")
    serve.add_argument(
        "--unknown-items", default="ignore", choices=("ignore", "reject"),
        help="ignore unknown item ids (reported in notes) or answer 422",
    )  # fmt: skip
    serve.add_argument("--batch-size", type=int, default=256, help="requests per forward")
    serve.add_argument("--cache-size", type=int, default=100_000, help="users in the state cache")
    serve.add_argument("--max-replay", type=int, help=MAX_REPLAY)
    serve.add_argument(
        "--warm", action="store_true",
        help="before listening, cache the state of every known user (DeepM3 with the run's data)",
    )  # fmt: skip
    serve.add_argument("--max-batch", type=int, default=64, help="requests batched together")
    serve.add_argument(
        "--max-wait-ms", type=float, default=2.0, help="how long a batch waits to fill"
    )
    serve.set_defaults(handler=("deepm3.recommend.commands", "serve"))


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
    prep.set_defaults(handler=(COMMANDS, "data_prepare"))

    train = sub.add_parser(
        "train",
        help="train (or fit) a model and evaluate it",
        description="Train (or fit) a model and evaluate it. The same command runs on several "
        "processes under torchrun (torchrun --nproc-per-node N -m deepm3 train ...: "
        "DistributedDataParallel, NCCL on CUDA, gloo on the CPU); batch_size is then the global "
        "batch, split across the processes, and rank 0 alone writes the run directory.",
    )
    train.add_argument("--dataset")
    train.add_argument(
        "--model", help="deepm3, sasrec, tisasrec, gru4rec, timeattn, pop, last_item"
    )
    train.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    train.add_argument("--data-dir")
    train.add_argument("--config", help="YAML file with data/eval/train/model sections")
    train.add_argument("--out", help="run directory (default runs/DATASET-MODEL)")
    train.add_argument(
        "--overwrite", action="store_true", help="replace a run already in the run directory"
    )
    train.add_argument(
        "--estimate",
        action="store_true",
        help="time a few training batches and one validation here, print how long the run "
        "would take; train nothing",
    )
    train.add_argument("overrides", nargs="*", help="settings as key=value (epochs=3)")
    train.set_defaults(handler=(COMMANDS, "train"))

    report = sub.add_parser("report", help="comparison table and plot from run directories")
    report.add_argument(
        "run_dirs", nargs="*", help="finished runs to add (copied to OUT/runs; name-sN = seed N)"
    )
    report.add_argument("--out", required=True, help="folder for table.md, the plot and runs/")
    report.add_argument("--title", default="Comparison")
    report.set_defaults(handler=(COMMANDS, "report"))

    calibration = sub.add_parser(
        "calibration", help="calibration ladder rungs against published numbers (markdown)"
    )
    calibration.add_argument("ladder", help="a ladder folder: <model>/<rung>/runs/<run>/")
    calibration.add_argument("--dataset", required=True, help="whose published numbers to show")
    calibration.add_argument("--out", required=True, help="the markdown file to write")
    calibration.set_defaults(handler=(COMMANDS, "calibration"))

    evaluate = sub.add_parser("evaluate", help="evaluate a finished run's best model on test")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--protocol", choices=["full", "sampled"], default="full")
    evaluate.set_defaults(handler=(COMMANDS, "evaluate"))

    models = sub.add_parser("models", help="list models, their options and parameter counts")
    models.add_argument("--dataset", help="count parameters for this data set's items")
    models.add_argument("--data-dir")
    models.add_argument("--num-items", type=int, default=3706)
    models.add_argument("--max-len", type=int, default=200)
    models.set_defaults(handler=(COMMANDS, "models"))

    _serving_commands(sub)

    suite = sub.add_parser("suite", help="the experiment suite: search, seeds, analyses, report")
    suite.add_argument(
        "suite", choices=["ml1m", "amazon"], help="ml1m (MovieLens-1M) or amazon (5-core)"
    )
    suite.add_argument(
        "--dataset", help="data set (amazon: amazon-books by default, amazon-beauty, a .csv, ...)"
    )
    suite.add_argument("--budget", default="quick", help="smoke | quick | standard | full")
    suite.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    suite.add_argument("--jobs", default="auto", help="parallel runs (auto: one per core or 4/GPU)")
    suite.add_argument("--threads", type=int, default=1, help="torch threads per run")
    suite.add_argument(
        "--skip",
        help="comma-separated stages to skip: " + ", ".join(STAGES),
    )
    suite.add_argument("--storage", help="Optuna storage URL shared by workers (default SQLite)")
    suite.add_argument("--data-dir", help="folder with the raw files (default: $DEEPM3_DATA_DIR)")
    suite.add_argument(
        "--out", help="results folder (default results/<suite>[/<dataset>], /full for full)"
    )
    suite.add_argument("--runs", help="working run folder (default runs/SUITE-DATASET-BUDGET)")
    suite.add_argument(
        "--plan",
        action="store_true",
        help="list the search progress per row and the training runs with their status; run "
        "nothing",
    )
    suite.set_defaults(handler=(COMMANDS, "suite"))
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
    module, function = args.handler
    try:
        return getattr(importlib.import_module(module), function)(args)
    except DeepM3Error as exc:
        print(f"deepm3: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("deepm3: interrupted", file=sys.stderr)
        return 130
