"""The loops over events that DeepM3's recurrence can run, by name: one literal table,
:data:`LOOPS`, chosen by one setting, ``model.implementation``.

* ``fast`` (the default): the fused recurrence (:func:`~deepm3.models.recurrence.ode_rnn`), the
  same mathematics as the reference with less work per event; a time step at which every gap
  is zero skips the field.
* ``eager``: the reference: ``nn.GRUCell`` and one :func:`~deepm3.ode.solvers.evolve` call per
  event, written as plainly as possible.
* ``compile``, ``cuda_graph``, ``compiled_cuda_graph``: static loops for GPUs
  (:mod:`deepm3.models.accelerated`): every step taken at bucketed shapes, the per-event step
  compiled and/or the whole loop captured in CUDA graphs; the recurrence runs in float32,
  autocast off. ``benchmarks/gpu.sh`` measures which is fastest.

Every loop steps through :func:`~deepm3.ode.solvers.evolve` with the model's solver, so a method
added to the solver table runs in each; the tests check each loop against ``eager`` in outputs
and every parameter gradient. A static loop cannot run an adaptive solver (its steps depend on
the data), nor the closed-form flow (``ode=decay`` runs in ``fast`` and ``eager``):
:class:`~deepm3.models.deepm3.DeepM3Options` refuses either pair when it is built.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from deepm3.models.accelerated import BucketedRecurrence
from deepm3.models.recurrence import FlowWeights, ode_rnn
from deepm3.ode.field import FieldWeights, apply_field
from deepm3.ode.solvers import Drift


class Recurrent(Protocol):
    """What a loop reads from its model (:class:`~deepm3.models.deepm3.DeepM3`)."""

    options: Any  # hidden_size, solver, steps
    cell: nn.GRUCell  # input: the item embedding and the gap
    buckets: tuple[Sequence[int], Sequence[int]]  # a static loop's batch and length buckets
    static_loops: dict[tuple[bool, bool], BucketedRecurrence]  # made on first use

    def flow(
        self, drift: Drift, h: torch.Tensor, gaps: torch.Tensor
    ) -> tuple[torch.Tensor, int]: ...

    def between(
        self, weights: FlowWeights, h: torch.Tensor, gaps: torch.Tensor, context: torch.Tensor
    ) -> tuple[torch.Tensor, int]: ...


# loop(model, inputs (B, T, d + 1) the GRU's inputs, time_gaps (B, T), previous_time (B, T) the
# field's context over the gap before each event, real (B, T) bool, the flow's weights | None)
# -> (states (B, T, d) right after each event, field evaluations)
LoopFunction = Callable[
    [Recurrent, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, FlowWeights | None],
    tuple[torch.Tensor, int],
]


def field_drift(field: FieldWeights, context: torch.Tensor) -> Drift:
    """The field with context (B,) as a drift of (h (B, d), elapsed (B,) | None) -> (B, d)."""
    return lambda state, elapsed: apply_field(field, state, elapsed, context)


def eager(
    model: Recurrent,
    inputs: torch.Tensor,
    time_gaps: torch.Tensor,
    previous_time: torch.Tensor,
    real: torch.Tensor,
    field: FlowWeights | None,
) -> tuple[torch.Tensor, int]:
    """The reference loop: one GRUCell and one flow per event (an :func:`evolve` call for the
    ODE field, the closed form for decay) -> (B, T, d)."""
    h = inputs.new_zeros(inputs.shape[0], model.options.hidden_size)
    states, evaluations = [], 0
    # unbind once: indexing [:, t] inside the loop would make backward O(T^2) (each slice's
    # gradient is a zero tensor of the full (B, T, ...) shape).
    steps = zip(
        inputs.unbind(1),
        time_gaps.unbind(1),
        previous_time.unbind(1),
        real[..., None].unbind(1),
        strict=True,
    )
    for step_input, gap, context, present in steps:
        if field is not None:
            h, calls = model.between(field, h, gap, context)
            evaluations += calls
        h = torch.where(present, model.cell(step_input, h), h)
        states.append(h)
    return torch.stack(states, dim=1), evaluations


def fused(
    model: Recurrent,
    inputs: torch.Tensor,
    time_gaps: torch.Tensor,
    previous_time: torch.Tensor,
    real: torch.Tensor,
    field: FlowWeights | None,
) -> tuple[torch.Tensor, int]:
    """The fused recurrence (:func:`ode_rnn`), stepping with the same solver -> (B, T, d)."""
    cell = model.cell
    gate_inputs = nn.functional.linear(inputs, cell.weight_ih, cell.bias_ih)
    return ode_rnn(
        gate_inputs, time_gaps, previous_time, real, cell.weight_hh, cell.bias_hh, field, model.flow
    )


def static(compiled: bool, graphs: bool) -> LoopFunction:
    """A static loop (:class:`BucketedRecurrence`, its step compiled with ``compiled``, captured
    in CUDA graphs with ``graphs``), made once per model on first use."""

    def run(
        model: Recurrent,
        inputs: torch.Tensor,
        time_gaps: torch.Tensor,
        previous_time: torch.Tensor,
        real: torch.Tensor,
        field: FieldWeights | None,
    ) -> tuple[torch.Tensor, int]:
        key = (compiled, graphs)
        if key not in model.static_loops:
            model.static_loops[key] = BucketedRecurrence(compiled, graphs, *model.buckets)
        cell, options = model.cell, model.options
        gate_inputs = nn.functional.linear(inputs, cell.weight_ih, cell.bias_ih)
        with torch.autocast(inputs.device.type, enabled=False):  # the recurrence in float32
            return model.static_loops[key](
                gate_inputs.float(), time_gaps.float(), previous_time, real,
                cell.weight_hh, cell.bias_hh, field, options.solver, options.steps,
            )  # fmt: skip

    return run


@dataclass(frozen=True)
class Loop:
    """A loop over events (``run``); ``static``: the same work for any data (so no adaptive
    solver); ``needs_cuda``: it captures CUDA graphs, so it runs on a CUDA device only."""

    run: LoopFunction
    static: bool = False
    needs_cuda: bool = False


LOOPS: dict[str, Loop] = {
    "fast": Loop(fused),
    "eager": Loop(eager),
    "compile": Loop(static(compiled=True, graphs=False), static=True),
    "cuda_graph": Loop(static(compiled=False, graphs=True), static=True, needs_cuda=True),
    "compiled_cuda_graph": Loop(static(compiled=True, graphs=True), static=True, needs_cuda=True),
}
