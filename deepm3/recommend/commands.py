"""``deepm3 recommend``, ``deepm3 export`` and ``deepm3 serve``: the subcommands that use a
trained run (added to the parser by :func:`add_serving_commands`; ``deepm3.cli`` holds the rest).
Heavy imports (torch; FastAPI and uvicorn, optional) happen inside the commands, so
``deepm3 --help`` stays fast and works without the optional ones."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from deepm3.errors import ConfigError


class FixedStepMethods:
    """``--solver``'s choices: the fixed-step ODE methods, asked of :mod:`deepm3.ode.solvers`
    only when the option is used or its help shown (that module imports torch)."""

    def _names(self) -> tuple[str, ...]:
        from deepm3.ode.solvers import fixed_step_methods

        return fixed_step_methods()

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())


def check_output_file(path: str, option: str) -> None:
    """Refuse an output file that cannot be written, before any slow work."""
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"{option} {path}: is a folder, expected a file")
    if not target.parent.is_dir():
        raise ConfigError(f"{option} {path}: its folder {target.parent} does not exist")


def cmd_recommend(args: argparse.Namespace) -> int:
    """JSON lines in, JSON lines out, answered in batches of ``--batch-size`` requests."""
    from deepm3.recommend import Recommender, RequestError, parse_request
    from deepm3.recommend.requests import decode_json

    if args.input != "-" and (not Path(args.input).exists() or Path(args.input).is_dir()):
        what = "is a folder" if Path(args.input).is_dir() else "no such file"
        raise ConfigError(f"--input {args.input}: {what}")
    if args.output != "-":
        check_output_file(args.output, "--output")
    recommender = Recommender.from_run(
        args.run_dir,
        data_dir=args.data_dir,
        device=args.device,
        unknown_items=args.unknown_items,
        batch_size=args.batch_size,
    )
    try:
        source = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise ConfigError(f"{args.input}: cannot read ({exc.strerror})") from None
    try:
        sink = sys.stdout if args.output == "-" else open(args.output, "w", encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        if source is not sys.stdin:
            source.close()
        raise ConfigError(f"{args.output}: cannot write ({exc.strerror})") from None
    answered = failed = 0

    def flush(block: list[tuple[int, object]]) -> None:
        nonlocal answered, failed
        requests, slots = [], []
        for line, parsed in block:
            if isinstance(parsed, RequestError):
                slots.append((line, parsed))
            else:
                slots.append((line, len(requests)))
                requests.append(parsed)
        answers = recommender.recommend_many(requests)
        for line, slot in slots:
            answer = answers[slot] if isinstance(slot, int) else slot
            if isinstance(answer, RequestError):
                failed += 1
                record = {"line": line, "error": str(answer), "status": answer.status}
            else:
                answered += 1
                record = answer.to_dict()
            sink.write(json.dumps(record) + "\n")

    with source, sink:
        block: list[tuple[int, object]] = []
        for line, text in enumerate(source, start=1):
            if not text.strip():
                continue
            try:
                block.append((line, parse_request(decode_json(text))))
            except RequestError as exc:  # malformed JSON (400) or a malformed request (422)
                block.append((line, exc))
            if len(block) == args.batch_size:
                flush(block)
                block = []
        if block:
            flush(block)
    print(f"deepm3 recommend: {answered} answered, {failed} failed", file=sys.stderr)
    return 1 if failed else 0


def cmd_export(args: argparse.Namespace) -> int:
    from deepm3.recommend.export import export_run, manifest_text

    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        raise ConfigError(f"--out {args.out}: exists and is not a folder")
    folder = export_run(
        args.run_dir, args.format, args.out, data_dir=args.data_dir, solver=args.solver
    )
    print(manifest_text(folder))
    print(f"written: {folder}/manifest.json, {folder}/items.txt")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from deepm3.recommend.server import serve

    if not 0 <= args.port <= 65_535:
        raise ConfigError(f"--port must be 0 to 65535, got {args.port}")
    if args.max_batch < 1 or args.max_wait_ms < 0 or args.cache_size < 1 or args.batch_size < 1:
        raise ConfigError("--max-batch, --batch-size and --cache-size >= 1; --max-wait-ms >= 0")
    serve(
        args.run_dir, args.host, args.port,
        data_dir=args.data_dir, device=args.device, unknown_items=args.unknown_items,
        batch_size=args.batch_size, cache_size=args.cache_size,
        max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
    )  # fmt: skip
    return 0


def add_serving_commands(sub: argparse._SubParsersAction) -> None:
    """Add recommend, export and serve to the ``deepm3`` subcommands."""
    recommend = sub.add_parser(
        "recommend", help="top-k items for JSON-lines requests, from a trained run"
    )
    recommend.add_argument("run_dir")
    recommend.add_argument("--input", default="-", help="JSON-lines requests (default stdin)")
    recommend.add_argument("--output", default="-", help="JSON-lines answers (default stdout)")
    recommend.add_argument("--data-dir", help="folder with the run's raw data files")
    recommend.add_argument("--device", help="cpu, cuda, mps (default: the run's setting)")
    recommend.add_argument("--batch-size", type=int, default=256, help="requests per forward")
    recommend.add_argument(
        "--unknown-items", default="ignore", choices=("ignore", "reject"),
        help="ignore unknown item ids (reported in notes) or reject the request",
    )  # fmt: skip
    recommend.set_defaults(func=cmd_recommend)

    export = sub.add_parser(
        "export", help="the scoring path (history -> scores) as TorchScript or ONNX"
    )
    export.add_argument("run_dir")
    export.add_argument("--format", default="torchscript", choices=("torchscript", "onnx"))
    export.add_argument("--out", help="folder for the export (default RUN_DIR/export-FORMAT)")
    export.add_argument("--data-dir", help="folder with the run's raw data files")
    solver = export.add_argument("--solver", help="DeepM3: re-solve the same weights with it")
    # set after add_argument, which would list the choices (importing torch) to check a metavar
    solver.choices = FixedStepMethods()
    export.set_defaults(func=cmd_export)

    serve = sub.add_parser("serve", help="an HTTP JSON API over a trained run (FastAPI)")
    serve.add_argument("run_dir")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--data-dir", help="folder with the run's raw data files")
    serve.add_argument("--device", help="cpu, cuda, mps (default: the run's setting)")
    serve.add_argument(
        "--unknown-items", default="ignore", choices=("ignore", "reject"),
        help="ignore unknown item ids (reported in notes) or answer 422",
    )  # fmt: skip
    serve.add_argument("--batch-size", type=int, default=256, help="requests per forward")
    serve.add_argument("--cache-size", type=int, default=100_000, help="users in the state cache")
    serve.add_argument("--max-batch", type=int, default=64, help="requests batched together")
    serve.add_argument(
        "--max-wait-ms", type=float, default=2.0, help="how long a batch waits to fill"
    )
    serve.set_defaults(func=cmd_serve)
