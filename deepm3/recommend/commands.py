"""``deepm3 recommend``, ``deepm3 export`` and ``deepm3 serve``: the subcommands that use a
trained run (:mod:`deepm3.cli` parses their arguments). The server's module, which needs the
optional FastAPI and uvicorn, is imported by ``serve`` alone."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from deepm3.errors import ConfigError
from deepm3.ode.solvers import fixed_step_methods
from deepm3.recommend import Recommender, RequestError, parse_request
from deepm3.recommend.export import export_run, manifest_text
from deepm3.recommend.requests import decode_json


def check_output_file(path: str, option: str) -> None:
    """Refuse an output file that cannot be written, before any slow work."""
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"{option} {path}: is a folder, expected a file")
    if not target.parent.is_dir():
        raise ConfigError(f"{option} {path}: its folder {target.parent} does not exist")


def replay_option(args: argparse.Namespace) -> dict[str, int]:
    """``--max-replay`` where given; otherwise the recommender's default applies."""
    return {} if args.max_replay is None else {"max_replay": args.max_replay}


def recommend(args: argparse.Namespace) -> int:
    """JSON lines in, JSON lines out, answered in batches of ``--batch-size`` requests."""
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
        **replay_option(args),
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


def export(args: argparse.Namespace) -> int:
    if args.solver is not None and args.solver not in fixed_step_methods():
        raise ConfigError(
            f"--solver {args.solver!r}: not a fixed-step method; valid: "
            + ", ".join(fixed_step_methods())
        )
    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        raise ConfigError(f"--out {args.out}: exists and is not a folder")
    folder = export_run(
        args.run_dir, args.format, args.out, data_dir=args.data_dir, solver=args.solver
    )
    print(manifest_text(folder))
    print(f"written: {folder}/manifest.json, {folder}/items.txt")
    return 0


def serve(args: argparse.Namespace) -> int:
    import deepm3.recommend.server as server  # needs the optional FastAPI and uvicorn

    if not 0 <= args.port <= 65_535:
        raise ConfigError(f"--port must be 0 to 65535, got {args.port}")
    if args.max_batch < 1 or args.max_wait_ms < 0 or args.cache_size < 1 or args.batch_size < 1:
        raise ConfigError("--max-batch, --batch-size and --cache-size >= 1; --max-wait-ms >= 0")
    server.serve(
        args.run_dir, args.host, args.port,
        data_dir=args.data_dir, device=args.device, unknown_items=args.unknown_items,
        batch_size=args.batch_size, cache_size=args.cache_size, **replay_option(args),
        max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, warm=args.warm,
    )  # fmt: skip
    return 0
