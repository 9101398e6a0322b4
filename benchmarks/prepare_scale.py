"""Wall time and peak memory of ``deepm3 data prepare`` on an Amazon Books-sized file.

    python benchmarks/prepare_scale.py [--data-dir /tmp/deepm3-books-synth] [--lines 9000000]

Writes the synthetic ``reviews_Books_5.json.gz`` with ``books_synth.py`` when the folder lacks
it, then runs ``python -m deepm3 data prepare amazon-books --data-dir DIR --no-cache --json``
in a subprocess (its cache in a temporary folder) and records that process's wall time, CPU
time and peak resident memory (``os.wait4``: this child only), the machine (cores, CPU model,
load average before and after: the figures are only comparable on an idle machine) and the
data statistics it printed, in ``benchmarks/results/prepare_books_synth.json``.

The goal: at most 3 minutes and 4 GB on 2 cores for ~9M reviews.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from deepm3.portable import portable_command, portable_path  # noqa: E402

FILE_NAME = "reviews_Books_5.json.gz"
GOAL_SECONDS = 180
GOAL_BYTES = 4 * 10**9


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def run_measured(command: list[str], env: dict[str, str]) -> dict:
    """Run ``command``; its exit code, output, wall and CPU seconds and peak RSS in bytes."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=REPO)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own resource usage
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return {
            "returncode": process.returncode,
            "stdout": out.read().decode(),
            "stderr": err.read().decode()[-4000:],
            "wall_seconds": round(wall, 2),
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_bytes": usage.ru_maxrss * 1024,  # Linux reports KiB
        }


def generate(data_dir: Path, args: argparse.Namespace, env: dict[str, str]) -> dict:
    command = [
        sys.executable,
        str(HERE / "books_synth.py"),
        "--out",
        str(data_dir),
        "--lines",
        str(args.lines),
        "--seed",
        str(args.seed),
    ]
    result = run_measured(command, env)
    if result["returncode"] != 0:
        raise SystemExit(f"generator failed:\n{result['stderr']}")
    print(result["stdout"].strip())
    return {key: result[key] for key in ("wall_seconds", "cpu_seconds", "peak_rss_bytes")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/deepm3-books-synth"))
    parser.add_argument("--lines", type=int, default=9_000_000, help="when generating")
    parser.add_argument("--seed", type=int, default=0, help="when generating")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "prepare_books_synth.json")
    args = parser.parse_args(argv)
    path = args.data_dir / FILE_NAME
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    generated = None if path.is_file() else generate(args.data_dir, args, env)
    with tempfile.TemporaryDirectory(prefix="deepm3-cache-") as cache:
        env["DEEPM3_CACHE"] = cache
        command = [sys.executable, "-m", "deepm3", "data", "prepare", "amazon-books"]
        command += ["--data-dir", str(args.data_dir), "--no-cache", "--json"]
        load_before = os.getloadavg()
        result = run_measured(command, env)
        load_after = os.getloadavg()
    if result["returncode"] != 0:
        raise SystemExit(f"prepare failed:\n{result['stderr']}")
    stats = json.loads(result["stdout"])
    record = {
        "command": portable_command(command, REPO),
        "file": {
            "path": portable_path(str(path.absolute()), REPO),
            "bytes": path.stat().st_size,
            "generated": generated,
        },
        "wall_seconds": result["wall_seconds"],
        "cpu_seconds": result["cpu_seconds"],
        "peak_rss_bytes": result["peak_rss_bytes"],
        "goal": {"wall_seconds": GOAL_SECONDS, "peak_rss_bytes": GOAL_BYTES},
        "met": result["wall_seconds"] <= GOAL_SECONDS and result["peak_rss_bytes"] <= GOAL_BYTES,
        "machine": {**machine(), "load_average": {"before": load_before, "after": load_after}},
        "stats": stats,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    raw, kept = stats["raw"], stats["filtered"]
    print(
        f"prepare amazon-books ({raw['interactions']:,} reviews, {raw['users']:,} users, "
        f"{raw['items']:,} items -> {kept['interactions']:,} kept): "
        f"{result['wall_seconds']:.0f} s wall, {result['cpu_seconds']:.0f} s CPU, "
        f"{result['peak_rss_bytes'] / 2**30:.2f} GiB peak RSS on {os.cpu_count()} cores "
        f"(load {load_before[0]:.1f}); goal <= {GOAL_SECONDS} s and <= 4 GB: "
        f"{'met' if record['met'] else 'missed'} -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
