"""A run directory records everything needed to trust and repeat a result.

Files: ``config.json`` (resolved config), ``provenance.json`` (command, git commit, seed, data
fingerprint and statistics, library versions), ``metrics.json`` and per-user ranks
``per_user_<role>.csv.gz`` (user, target, rank, tied), the training log ``log.jsonl``, the
checkpoints ``last.pt`` and ``best.pt``, and ``serving.npz`` (the item vocabulary and what else
recommending needs without the training data: :mod:`deepm3.train.serving`); ``failed.json``
(the reason) marks a run whose training failed after its first checkpoint. JSON is written to a
temporary file and renamed, so a crash never leaves a half-written file; files read back are
checked, and a damaged one is a :class:`~deepm3.errors.DataError` that names it and says what is
wrong.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

import deepm3
from deepm3.errors import ConfigError, DataError, DeepM3Error
from deepm3.portable import portable_command

# Files a run writes into its directory; a new run refuses a directory that holds any of them.
RUN_FILES = (
    "config.json",
    "provenance.json",
    "log.jsonl",
    "serving.npz",
    "last.pt",
    "best.pt",
    "metrics.json",
    "per_user_valid.csv.gz",
    "per_user_test.csv.gz",
)
SERVING = "serving.npz"  # what recommending needs without the training data (train.serving)
FAILED = "failed.json"  # {"error": ...}: training failed after a checkpoint was written


def git_commit() -> str:
    """The checkout's commit (with ``-dirty`` when files differ), or ``unknown``."""
    root = Path(deepm3.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def write_json(path: Path, payload: Any) -> None:
    """Write ``payload`` to ``path`` atomically; a ConfigError naming it when that fails."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(handle, "w") as out:
            json.dump(payload, out, indent=2, sort_keys=False, default=str)
            out.write("\n")
        os.replace(temporary, path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write ({exc.strerror or exc})") from None


def read_bytes(path: Path) -> bytes:
    """The contents of ``path``; a DataError naming it when it cannot be read."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: missing") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None


def decode(data: bytes, where: str) -> str:
    """``data`` as UTF-8 text; a DataError naming ``where`` when it is not."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{where}: damaged (not UTF-8 text)") from None


def parse_json(text: str, where: str) -> Any:
    """``text`` parsed as JSON; a DataError naming ``where`` (a file, or a file and line)."""
    if not text.strip():
        raise DataError(f"{where}: empty, expected JSON")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{where}: damaged, not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    except RecursionError:
        raise DataError(f"{where}: damaged, JSON nested too deeply") from None


def read_json(path: Path) -> Any:
    """The JSON value stored in ``path``; a DataError naming it when it is unreadable."""
    return parse_json(decode(read_bytes(path), str(path)), str(path))


def read_record(path: Path, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """A JSON object stored in ``path`` that holds every key in ``required``."""
    value = read_json(path)
    if not isinstance(value, dict):
        raise DataError(f"{path}: damaged, expected a JSON object, found {_kind(value)}")
    missing = [key for key in required if key not in value]
    if missing:
        raise DataError(f"{path}: damaged, no {', '.join(map(repr, missing))} key")
    return value


def read_log(path: Path, epochs_kept: int | None = None) -> list[tuple[int, dict[str, Any]]]:
    """The records of ``log.jsonl`` with their line numbers, each with an integer ``epoch``;
    blank (or whitespace-only) lines are skipped. Every reader of a log goes through here.

    A final line without its newline that does not parse was cut off when a process died while
    writing it; it is dropped (its epoch never reached a checkpoint: the log line comes first).
    ``epochs_kept`` (a resume: the epochs ``last.pt`` holds) must each have their line, so a
    damaged log is refused rather than read as one cut off by a crash.
    """
    lines = read_bytes(path).split(b"\n")
    records = []
    cut_off = None
    for number, raw in enumerate(lines, start=1):
        where = f"{path}, line {number}"
        try:
            line = decode(raw, where)
            if not line.strip():
                continue
            record = parse_json(line, where)
        except DataError as error:
            if number == len(lines):  # unterminated last line: cut off mid-write
                cut_off = error
                break
            raise
        epoch = record.get("epoch") if isinstance(record, dict) else None
        if type(epoch) is not int:
            raise DataError(f"{path}, line {number}: damaged, no integer 'epoch' in {line[:60]!r}")
        records.append((number, record))
    if epochs_kept is not None:
        _check_epochs(path, {record["epoch"] for _, record in records}, epochs_kept, cut_off)
    return records


def _check_epochs(
    path: Path, logged: set[int], epochs_kept: int, cut_off: DataError | None
) -> None:
    """Every epoch up to ``epochs_kept`` has its line in the log at ``path``."""
    missing = [epoch for epoch in range(1, epochs_kept + 1) if epoch not in logged]
    if not missing:
        return
    lacking = f"no line for epoch(s) {_spans(missing)} that last.pt holds"
    if cut_off is not None:
        raise DataError(f"{cut_off}; {lacking}, so it is not a line cut off by a crash")
    raise DataError(f"{path}: damaged, {lacking}")


def _spans(numbers: list[int]) -> str:
    """``[1, 2, 3, 7]`` as ``1-3, 7``: a short list of missing epochs."""
    spans: list[list[int]] = []
    for number in numbers:
        if spans and number == spans[-1][1] + 1:
            spans[-1][1] = number
        else:
            spans.append([number, number])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def _kind(value: Any) -> str:
    """``value``'s JSON type in words, for messages."""
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def provenance(data_stats: dict, seed: int | None, device: str, processes: int = 1) -> dict:
    """What produced a run; ``processes`` counts the torchrun processes that trained it."""
    return {
        "command": portable_command([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "git_commit": git_commit(),
        "seed": seed,
        "data_fingerprint": data_stats.get("fingerprint"),
        "data": data_stats,
        "device": device,
        "processes": processes,
        "torch_threads": torch.get_num_threads(),
        "versions": {
            "deepm3": deepm3.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "host": {"platform": platform.platform(), "cpus": os.cpu_count()},
    }


def failure(run_dir: Path) -> str | None:
    """Why the run in ``run_dir`` failed (from ``failed.json``), or None when it did not."""
    path = Path(run_dir) / FAILED
    if not path.exists():
        return None
    return str(read_record(path, ("error",))["error"])


def after_failure(run_dir: Path, error: BaseException, created: bool, resumed: bool) -> None:
    """Leave ``run_dir`` clear after ``error`` stopped a run.

    Without a checkpoint, a new run leaves nothing behind: the folder goes when this command
    created it, else the files it wrote. With one (or on a resume), the run stays resumable and
    ``failed.json`` records the reason for ``report`` and ``--resume``; an interruption
    (Ctrl-C) is not a failure and leaves no mark.
    """
    run_dir = Path(run_dir)
    checkpoints = any((run_dir / name).exists() for name in ("last.pt", "best.pt"))
    if not checkpoints and not resumed:
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            for name in RUN_FILES:
                (run_dir / name).unlink(missing_ok=True)
        return
    if isinstance(error, Exception) and run_dir.is_dir():
        reason = str(error)
        if not isinstance(error, DeepM3Error):  # an unexpected error: its type says what it was
            reason = f"{type(error).__name__}: {reason}"
        write_json(run_dir / FAILED, {"error": " ".join(reason.split())[:500]})
