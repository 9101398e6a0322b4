"""One setting (B, T) of ``speed.py``: every model built and called once, then timed
interleaved (``interleave.py``), and a row of measurements per model (times over the rounds,
memory, the field's weights, parameters)."""

from __future__ import annotations

import functools
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from interleave import interleaved_times  # noqa: E402
from variants import build_variant  # noqa: E402

from deepm3.models.contract import count_parameters, item_scores  # noqa: E402
from deepm3.ode.field import VectorField  # noqa: E402
from deepm3.train.losses import sequence_loss  # noqa: E402

NUM_ITEMS = 3706  # MovieLens-1M


def synthetic_batch(batch: int, length: int, device: torch.device, seed: int = 0):
    """Full-length rows with ML-1M-like gaps: half of them zero (ties), the rest hours to days."""
    generator = torch.Generator().manual_seed(seed)
    items = torch.randint(1, NUM_ITEMS + 1, (batch, length), generator=generator)
    seconds = torch.randint(0, 2 * 86_400, (batch, length), generator=generator)
    seconds[torch.rand(batch, length, generator=generator) < 0.5] = 0
    timestamps = 978_300_000 + seconds.cumsum(1)
    gaps = torch.log1p(seconds.double() / 3600).float()
    gaps[:, 0] = 0
    targets = torch.randint(1, NUM_ITEMS + 1, (batch, length), generator=generator)
    return [t.to(device) for t in (items, timestamps, gaps, gaps.roll(-1, 1), targets)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(function, repeats: int, warmup: int, device: torch.device) -> list[float]:
    for _ in range(warmup):
        function()
    _sync(device)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        _sync(device)
        times.append(time.perf_counter() - started)
    return times


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def saved_activation_bytes(model, inputs, targets) -> int:
    """Bytes of the tensors autograd saves for backward in one training step."""
    total = 0

    def pack(tensor):
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        states, _ = model(*inputs)
        sequence_loss("ce", model.readout(states), model.item_embedding.weight, targets, 1)
    return total


def field_weights_ms(model, device: torch.device, repeats: int) -> float:
    """Milliseconds to build the field's effective weights and backpropagate through them, as
    every training step does (the spectral norms are SVDs, which synchronise a GPU with the
    host); 0 for a model without a field."""
    fields = [module for module in model.modules() if isinstance(module, VectorField)]
    if not fields:
        return 0.0

    def once():
        weights = fields[0].weights()
        (weights.w_in.sum() + weights.w_out.sum()).backward()

    return 1e3 * statistics.median(_timed(once, repeats, 1, device))


@dataclass
class Bench:
    """One variant at one setting, built and called once (which compiles or captures an
    accelerated recurrence), ready to be timed."""

    variant: str
    model: nn.Module
    inputs: tuple
    targets: torch.Tensor
    train_step: Callable[[], None]
    infer: Callable[[], None]
    nfe: dict
    setup_s: float


def prepare(variant: str, batch: int, length: int, device: torch.device) -> Bench:
    model = build_variant(variant, NUM_ITEMS, length, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    items, timestamps, gaps, next_gaps, targets = synthetic_batch(batch, length, device)
    time_scale = torch.full((batch,), 3600, dtype=torch.int64, device=device)  # TiSASRec's unit
    inputs = (items, timestamps, gaps, next_gaps, time_scale)
    nfe = {}

    def train_step():
        model.train()
        states, aux = model(*inputs)
        loss = sequence_loss("ce", model.readout(states), model.item_embedding.weight, targets, 1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        nfe["train"] = aux.get("nfe", 0)

    @torch.no_grad()
    def infer():
        model.eval()
        states, aux = model(*inputs)
        item_scores(model, states[:, -1])
        nfe["infer"] = aux.get("nfe", 0)

    started = time.perf_counter()
    train_step()  # the first calls compile or capture an accelerated recurrence
    infer()
    _sync(device)
    setup = time.perf_counter() - started
    return Bench(variant, model, inputs, targets, train_step, infer, nfe, setup)


def finish(bench: Bench, train_times: list[float], infer_times: list[float], device) -> dict:
    """The row of a timed ``bench``: times over its rounds (kept, for the ratios), memory,
    the field's weights, parameters."""
    batch, length = bench.inputs[0].shape
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        bench.train_step()
        memory = torch.cuda.max_memory_allocated(device)
    else:
        memory = saved_activation_bytes(bench.model, bench.inputs, bench.targets)
    bench.model.train()
    return {
        "model": bench.variant,
        "batch": batch,
        "length": length,
        "train_ms": 1e3 * statistics.median(train_times),
        "train_p95_ms": 1e3 * _percentile(train_times, 0.95),
        "infer_ms": 1e3 * statistics.median(infer_times),
        "infer_p95_ms": 1e3 * _percentile(infer_times, 0.95),
        "train_events_per_s": batch * length / statistics.median(train_times),
        "memory_mb": memory / 2**20,
        "nfe_infer": bench.nfe.get("infer", 0),
        "parameters": count_parameters(bench.model)["total"],
        "train_rounds_ms": [round(1e3 * t, 3) for t in train_times],
        "infer_rounds_ms": [round(1e3 * t, 4) for t in infer_times],
        "setup_s": bench.setup_s,
        "field_weights_ms": field_weights_ms(bench.model, device, len(infer_times)),
    }


def rounds_for(repeats: int, batch: int, length: int, device: torch.device) -> tuple[int, int]:
    """Timed rounds of training and of inference at a setting: ``repeats`` of each, fewer
    training rounds at the heaviest setting on a CPU (seconds per step), more inference rounds
    for one user (milliseconds per call)."""
    heavy = device.type == "cpu" and batch * length >= 256 * 200
    return (max(4, repeats // 2) if heavy else repeats), repeats * (3 if batch == 1 else 1)


def measure_setting(variants, batch, length, device, repeats, warmup, failures) -> list[dict]:
    """Rows of ``variants`` at (``batch``, ``length``), timed in one interleaved schedule; a
    variant that fails to build or run its first calls is added to ``failures`` and left out."""
    benches = []
    for variant in variants:
        try:
            benches.append(prepare(variant, batch, length, device))
        except Exception as exc:  # noqa: BLE001 (one failed variant must not end the run)
            failures.append({"model": variant, "batch": batch, "length": length})
            failures[-1]["error"] = f"{type(exc).__name__}: {exc}"[:1000]
            print(f"  FAILED {variant} B={batch} T={length}:", file=sys.stderr)
            traceback.print_exc()
    train_rounds, infer_rounds = rounds_for(repeats, batch, length, device)
    sync = functools.partial(_sync, device)
    train = {b.variant: b.train_step for b in benches}
    train_times = interleaved_times(train, train_rounds, warmup, sync=sync)
    infer = {b.variant: b.infer for b in benches}
    infer_times = interleaved_times(infer, infer_rounds, warmup, sync=sync)
    return [finish(b, train_times[b.variant], infer_times[b.variant], device) for b in benches]
