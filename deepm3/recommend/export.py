"""``deepm3 export``: a trained run's scoring path (history -> scores) as TorchScript or ONNX.

The exported graph takes raw tensors, so it runs without this package (``torch.jit.load`` or
onnxruntime)::

    items        (B, T) int64   item indices, left-padded with 0 to T = the run's max_len
    timestamps   (B, T) int64   unix seconds of each event (anything at padding)
    time_scale   (B,)   int64   the user's time unit in seconds (TiSASRec; 1 when unknown)
    query_times  (B,)   int64   the time to recommend for (DeepM3 evolves its state to it when
                                it is later than the last event; 0 or the last time: no evolution)
    -> scores    (B, N + 1) float32  a score per item index; column 0 is padding

Item index ``i`` is the raw id on line ``i + 1`` of ``items.txt`` (line 1, index 0, is the
padding ``<pad>``). ``manifest.json`` records the inputs, the run, the parity measured at export
against the eager model (max abs difference, at two batch sizes) and the versions used.

Only trained models with a fixed computation export: count baselines (pop, last_item) have no
network, and the adaptive solver (dopri5) chooses its steps from the data; both are refused.
The batch size is dynamic; the length is fixed at ``max_len`` (pad shorter histories).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import platform
import warnings
from pathlib import Path

import numpy as np
import torch

from deepm3.errors import ConfigError
from deepm3.recommend.recommender import Recommender
from deepm3.recommend.scoring_path import (
    INPUTS,
    PARITY_LIMIT,
    ScoringPath,
    example_inputs,
    parity,
    scoring_path,
    tensors,
)
from deepm3.train.rundir import git_commit, write_json

FORMATS = ("torchscript", "onnx")
FILES = {"torchscript": "model.pt", "onnx": "model.onnx"}


def _save(path: ScoringPath, fmt: str, target: Path, example: tuple[torch.Tensor, ...]) -> None:
    if fmt == "torchscript":
        with torch.no_grad():
            traced = torch.jit.trace(path, example, check_trace=False)
        traced.save(str(target))
        return
    batch = torch.export.Dim("batch", min=1, max=65_536)
    shapes = {"items": {0: batch}, "timestamps": {0: batch}, "time_scale": {0: batch},
              "query_times": {0: batch}}  # fmt: skip
    # optimize=False: onnxscript's graph optimiser took ~6 min on DeepM3's unrolled 200-step
    # loop (80 s without it) and onnxruntime's own optimisation gave the same latency (measured
    # on ML-1M: 7.8 vs 7.8 ms at B=1, 72 vs 68 ms at B=64).
    # the exporter's own chatter (torchvision not installed, deprecations) is not for our users
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            path, example, input_names=list(INPUTS), output_names=["scores"],
            dynamic_shapes=shapes, dynamo=True, verbose=False, optimize=False,
        )  # fmt: skip
    program.save(str(target))


def load_exported(target: Path):
    """A callable (items, timestamps, time_scale, query_times) -> scores (B, N + 1) float32
    numpy, whatever the format (onnxruntime for ONNX)."""
    if target.suffix == ".pt":
        module = torch.jit.load(str(target))

        def run_torchscript(*inputs: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return module(*(torch.as_tensor(x) for x in inputs)).numpy()

        return run_torchscript
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(str(target), options, providers=["CPUExecutionProvider"])

    def run_onnx(*inputs: np.ndarray) -> np.ndarray:
        feed = {name: np.asarray(x) for name, x in zip(INPUTS, inputs, strict=True)}
        return session.run(["scores"], feed)[0]

    return run_onnx


def export_run(
    run_dir: str | Path,
    fmt: str = "torchscript",
    out: str | Path | None = None,
    *,
    data_dir: str | None = None,
    solver: str | None = None,
) -> Path:
    """Export ``run_dir``'s best model to ``out`` (default RUN_DIR/export-FORMAT); returns the
    folder. Raises ConfigError when the exported graph differs from eager by more than 1e-5."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; valid: {', '.join(FORMATS)}")
    recommender = Recommender.from_run(run_dir, data_dir=data_dir, device="cpu")
    if solver is not None and solver not in recommender.solvers:
        raise ConfigError(f"--solver {solver}: {recommender.name} has no ODE solver to choose")
    path = scoring_path(recommender, solver)
    folder = Path(out) if out is not None else Path(run_dir) / f"export-{fmt}"
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder}: exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / FILES[fmt]
    _save(path, fmt, target, tensors(*example_inputs(recommender, 2)))
    measured = parity(load_exported(target), recommender, solver)
    worst = max(measured.values())
    if not worst < PARITY_LIMIT:
        target.unlink()
        raise ConfigError(
            f"the {fmt} export differs from the eager model by {worst:.2e} (limit "
            f"{PARITY_LIMIT:.0e}); nothing was written"
        )
    ids = recommender.item_ids.tolist()
    (folder / "items.txt").write_text("\n".join(["<pad>", *map(str, ids[1:])]) + "\n")
    manifest = {
        "format": fmt,
        "file": target.name,
        "model": recommender.name,
        "solver": path.model.solver if path.flows else None,
        "run_dir": str(run_dir),
        "max_len": recommender.max_len,
        "num_items": recommender.serving.num_items,
        "inputs": {
            "items": "(B, max_len) int64, left-padded with 0",
            "timestamps": "(B, max_len) int64 unix seconds",
            "time_scale": "(B,) int64 seconds (TiSASRec's time unit; 1 when unknown)",
            "query_times": "(B,) int64 unix seconds (DeepM3 evolves to it when later)",
        },
        "output": "scores (B, num_items + 1) float32; column 0 is padding",
        "vocabulary": "items.txt: line i + 1 is item index i",
        "parity_max_abs_diff": measured,
        "data_fingerprint": recommender.serving.fingerprint,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "git_commit": git_commit(),
    }
    write_json(folder / "manifest.json", manifest)
    return folder


def manifest_text(folder: Path) -> str:
    """A short summary of an export folder, for the CLI."""
    manifest = json.loads((folder / "manifest.json").read_text())
    diffs = ", ".join(f"{k} {v:.1e}" for k, v in manifest["parity_max_abs_diff"].items())
    return (
        f"{manifest['model']} -> {folder / manifest['file']} ({manifest['format']}); "
        f"parity vs eager (max abs diff): {diffs}"
    )
