"""A run directory records everything needed to trust and repeat a result.

Files: ``config.json`` (resolved config), ``provenance.json`` (command, git commit, seed, data
fingerprint and statistics, library versions), ``metrics.json`` and per-user ranks
``per_user_<role>.csv.gz`` (user, target, rank, tied), the training log ``log.jsonl`` and the
checkpoints ``last.pt`` and ``best.pt``. JSON is written to a temporary file and renamed, so a
crash never leaves a half-written file.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

import deepm3

# Files a run writes into its directory; a new run refuses a directory that holds any of them.
RUN_FILES = (
    "config.json",
    "provenance.json",
    "log.jsonl",
    "last.pt",
    "best.pt",
    "metrics.json",
    "per_user_valid.csv.gz",
    "per_user_test.csv.gz",
)


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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(handle, "w") as out:
        json.dump(payload, out, indent=2, sort_keys=False, default=str)
        out.write("\n")
    os.replace(temporary, path)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def provenance(data_stats: dict, seed: int | None, device: str, processes: int = 1) -> dict:
    """What produced a run; ``processes`` counts the torchrun processes that trained it."""
    return {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
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
