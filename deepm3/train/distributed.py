"""Multi-process training under ``torchrun``: the process group, ranks and collective helpers.

``torchrun --nproc-per-node N -m deepm3 train ...`` starts N copies of the same command and sets
``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` (plus the rendezvous address). :func:`process_group`
joins them for the duration of a run: NCCL with one GPU per process (``cuda:LOCAL_RANK``) on
CUDA, gloo on the CPU. Every process trains on its share of each global batch, the model is
wrapped in ``DistributedDataParallel`` (:func:`wrap`), and rank 0 alone validates and writes the
run directory (:func:`is_main`).

Without ``torchrun`` (or with ``WORLD_SIZE=1``) no process group is made and every helper here is
the single-process identity: rank 0 of 1, sums and broadcasts return their input, a run is
bit-for-bit what it always was.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from deepm3.errors import ConfigError

T = TypeVar("T")

# Rank 0 validates and writes checkpoints while the other ranks wait in a collective; the
# default (10 minutes with NCCL) would kill a run whose validation over many items takes longer.
TIMEOUT = timedelta(hours=1)


@dataclass(frozen=True)
class Launch:
    """Where this process sits among those ``torchrun`` started (0, 0, 1 without torchrun)."""

    rank: int = 0  # among all processes of all nodes
    local_rank: int = 0  # among the processes of this node: picks the GPU
    world_size: int = 1


def launch() -> Launch:
    """This process's place, read from the variables ``torchrun`` sets."""
    return Launch(
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("LOCAL_RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
    )


def launched() -> bool:
    """True when ``torchrun`` started this process as one of several."""
    return launch().world_size > 1


def active() -> bool:
    """True while a process group is joined (inside :func:`process_group` under torchrun)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """True on the one process that writes files and prints results (rank 0, or the only one)."""
    return rank() == 0


def backend(device: torch.device) -> str:
    """The collective backend for ``device``: NCCL for CUDA, gloo for the CPU."""
    if device.type == "cuda":
        return "nccl"
    if device.type == "cpu":
        return "gloo"
    raise ConfigError(
        f"multi-process training runs on CUDA (NCCL) or the CPU (gloo), not on {device.type}; "
        "set train.device=cuda or train.device=cpu"
    )


@contextmanager
def process_group(device: torch.device) -> Iterator[None]:
    """Join the torchrun process group for the ``with`` block; leave it together on a normal exit
    (a barrier first), alone on an error.

    Does nothing without torchrun, or when a group is already joined (the caller owns it).
    """
    if not launched() or active():
        yield
        return
    name = backend(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # object broadcasts use the current device
    dist.init_process_group(
        name, timeout=TIMEOUT, device_id=device if device.type == "cuda" else None
    )
    try:
        yield
    except BaseException:
        dist.destroy_process_group()  # the others may be gone: no collective on the way out
        raise
    # A rank that tears gloo down while another still reads its socket aborts that one
    # ("connection closed by peer", SIGABRT): leave together.
    dist.barrier()
    dist.destroy_process_group()


def describe() -> str:
    """The process layout, e.g. ``4 processes (2 nodes x 2, nccl)``; ``1 process`` alone."""
    if not active():
        return "1 process"
    world = world_size()
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", world))  # set by torchrun
    return f"{world} processes ({world // per_node} nodes x {per_node}, {dist.get_backend()})"


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in ``DistributedDataParallel`` under torchrun (gradients averaged over ranks in
    the backward pass), else ``model`` itself.

    Every parameter of every registered model receives a gradient from every loss (measured for
    each model and loss), so ``find_unused_parameters`` stays off: it would walk the autograd
    graph after each forward for nothing.
    """
    if not active():
        return model
    devices = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=devices)


def shard_rows(rows: np.ndarray, rank: int, world: int) -> tuple[np.ndarray, bool]:
    """Rank ``rank``'s contiguous share of a global batch's ``rows`` and whether it is real.

    Shares differ in size by at most one row. A batch with fewer rows than processes leaves
    some ranks without a row: they get ``rows[:1]`` and ``False`` (weigh its loss by zero), so
    every rank still runs the forward and backward that ``DistributedDataParallel`` synchronises.
    """
    share = np.array_split(rows, world)[rank]
    return (share, True) if len(share) else (rows[:1], False)


def loss_weight(positions: int, global_positions: int, world: int) -> float:
    """Factor for one rank's mean loss so that the gradient averaged over ranks is the gradient
    of the mean loss over the global batch.

    Rank r's loss is a mean over its ``n_r`` positions; the global mean is
    ``sum_r n_r loss_r / N``. ``DistributedDataParallel`` averages gradients, dividing by
    ``world``, hence ``loss_r * n_r * world / N``. Exactly 1.0 for a single process.
    """
    return positions * world / global_positions


def rank_seed(seed: int) -> int:
    """``seed`` on rank 0 (so a single process is unchanged), an independent seed on the others:
    dropout masks and sampled negatives then differ between the shards of one batch."""
    current = rank()
    if current == 0:
        return seed
    return int(np.random.SeedSequence([seed, current]).generate_state(1)[0])


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def sum_across(values: list[float]) -> list[float]:
    """Element-wise sums over all ranks (float64); the values themselves without torchrun."""
    if not active():
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=_collective_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def all_ranks(flag: bool) -> bool:
    """True only if ``flag`` is True on every rank: a decision all ranks then share."""
    if not active():
        return flag
    tensor = torch.tensor([int(flag)], device=_collective_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return bool(tensor.item())


def from_main(value: T) -> T:
    """Rank 0's ``value`` on every rank (any picklable object); ``value`` without torchrun."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0, device=_collective_device())
    return box[0]


def leader_first(work: Callable[[], T]) -> T:
    """Run ``work`` on every rank in three turns: rank 0, then the first process of every other
    node, then all the others.

    For work that downloads a file or fills a cache: whether or not the nodes share a file
    system, the later turns read what an earlier one wrote instead of racing to write it. If a
    rank fails, every rank fails at the end of that turn instead of waiting for it.
    """
    if not active():
        return work()
    place = launch()
    turn = 0 if place.rank == 0 else 1 if place.local_rank == 0 else 2
    result, error = None, None
    for current in range(3):
        if current == turn:
            try:
                result = work()
            except Exception as exc:  # told to every rank below, then raised here
                error = exc
        if not all_ranks(error is None):
            if error is not None:
                raise error
            raise ConfigError(f"rank {rank()}: another process failed first; see its message")
    return result
