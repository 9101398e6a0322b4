"""DeepM3's static loops over events: the same work for any data, at bucketed shapes, for GPUs.

On a GPU the ODE-RNN is launch-bound: every event runs a GRU cell and, per solver stage, one
evaluation of the field, a dozen small kernels each, so one (B=256, T=200) step issues thousands
of launches whose CPU cost dwarfs the arithmetic. :class:`BucketedRecurrence` runs the loop over
events without that overhead, in one of the ways that :data:`deepm3.models.loops.LOOPS` names
(the setting ``model.implementation``):

* ``cuda_graph``: the whole loop is captured once per static shape (the batch and the length
  padded up to buckets) as CUDA graphs, forward and backward for training
  (:func:`torch.cuda.make_graphed_callables`), forward only for inference; a call copies its
  inputs into the graph's buffers and replays it.
* ``compile``: the per-event step (the flow over the gap, then the GRU update) is compiled with
  :func:`torch.compile` at the same bucketed shapes (its pointwise work fused), and Python loops
  over it. It runs on CPUs too, which is how the tests check it without a GPU.
* ``compiled_cuda_graph``: the compiled step captured in CUDA graphs: fewer kernels per event,
  and one replay for all of them.

Which is fastest is a measurement of ``benchmarks/gpu.sh`` on the GPU at hand.

Every static loop steps through :func:`deepm3.ode.solvers.evolve` with the fused pieces of
:mod:`deepm3.models.recurrence`, the loop of its ``ode_rnn`` without the skip of all-zero gaps (a
graph cannot depend on the data, and a zero gap changes nothing: ``h + 0 * f = h``), so every
field evaluation is made and counted. An adaptive solver chooses its steps from the data, so no
static loop can run it: :class:`~deepm3.models.deepm3.DeepM3Options` refuses the pair.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch

from deepm3.models.recurrence import _fused_drift, _gru_update, time_major
from deepm3.ode.field import FieldWeights
from deepm3.ode.solvers import METHODS, evolve

# The default batch buckets: powers of two up to 64, then multiples of 128 up to 8192 (padding
# wastes less than half a small batch, and at most 127 rows of a large one)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, *range(128, 8193, 128))


def bucket(size: int, buckets: Sequence[int]) -> int:
    """The smallest bucket >= ``size``; ``size`` itself above every bucket (or without any)."""
    return min((value for value in buckets if value >= size), default=size)


def event_step(
    h: torch.Tensor,
    gates_x: torch.Tensor,
    gap: torch.Tensor,
    constant: torch.Tensor | None,
    keep: torch.Tensor,
    w_hh: torch.Tensor,
    b_hh: torch.Tensor,
    drift: tuple[FieldWeights, torch.Tensor, torch.Tensor] | None,
    solver: str,
    steps: int,
) -> torch.Tensor:
    """One event: flow h (B, d) over gap (B,) under the field, then the GRU update (gates_x
    (B, 3d)) where keep (B, 1) -> (B, d). ``drift``: the field and its first layer's h and
    elapsed columns (:func:`first_layer_columns`); ``constant`` (B, W): its context term and bias.
    """
    if drift is not None:
        h, _ = evolve(_fused_drift(*drift, constant), h, gap, solver, steps)
    return torch.where(keep, _gru_update(gates_x, h, w_hh, b_hh), h)


Step = Callable[..., torch.Tensor]  # event_step, or its compiled form


def static_recurrence(
    step: Step,
    solver: str,
    steps: int,
    gate_inputs: torch.Tensor,
    time_gaps: torch.Tensor,
    context: torch.Tensor,
    present: torch.Tensor,
    w_hh: torch.Tensor,
    b_hh: torch.Tensor,
    field: FieldWeights | None,
) -> torch.Tensor:
    """``ode_rnn``'s loop, one ``step`` per event and none skipped: the same work for any data.

    gate_inputs (B, T, 3d); time_gaps, context (B, T) float; present (B, T) bool -> (B, T, d).
    """
    batch, _, three_d = gate_inputs.shape
    # requiring grad like every later state, so that a compiled step is compiled once, not twice
    h = gate_inputs.new_zeros(batch, three_d // 3).requires_grad_(gate_inputs.requires_grad)
    events, columns = time_major(gate_inputs, time_gaps, context, present, field)
    drift = None if field is None else (field, *columns)
    states = []
    for gates_x, gap, keep, constant in events:
        h = step(h, gates_x, gap, constant, keep, w_hh, b_hh, drift, solver, steps)
        states.append(h)
    return torch.stack(states, dim=1)


def _pad(tensor: torch.Tensor, batch: int, length: int) -> torch.Tensor:
    """(B, T, ...) -> (batch, length, ...): zero rows after the batch, zero steps before the
    history (sequences are left-padded, so padding in front leaves every state as it was)."""
    rows, steps = tensor.shape[:2]
    if (rows, steps) == (batch, length):
        return tensor
    out = tensor.new_zeros(batch, length, *tensor.shape[2:])
    out[:rows, length - steps :] = tensor
    return out


def _capture_inference(function: Callable, args: tuple[torch.Tensor, ...]) -> Callable:
    """A forward-only CUDA graph of ``function`` at the shapes of ``args``; call it with new
    tensors of those shapes (copied into its buffers) -> its output buffer."""
    buffers = tuple(arg.detach().clone() for arg in args)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        function(*buffers)  # lazy initialisation (and compilation) outside the capture
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        output = function(*buffers)

    def replay(*inputs: torch.Tensor) -> torch.Tensor:
        for buffer, value in zip(buffers, inputs, strict=True):
            buffer.copy_(value)
        graph.replay()
        return output

    return replay


@functools.cache
def compiled_step() -> Step:
    """:func:`event_step` compiled at static shapes: one compilation per bucket, grad mode and
    solver setting (beyond Dynamo's recompile_limit, default 8, it runs uncompiled, with a
    warning). Made once, on first use."""
    return torch.compile(event_step, dynamic=False)


class BucketedRecurrence:
    """:func:`static_recurrence` at static shapes: the batch and the length padded up to
    buckets, the states sliced back; its step compiled with ``compiled``. With ``graphs`` each
    (batch bucket, length bucket, grad mode, solver setting) is captured once as CUDA graphs and
    replayed; a training graph holds its activations until its backward, so run the backward of
    one call before the next training call of the same shape (as a training step does)."""

    def __init__(
        self,
        compiled: bool,
        graphs: bool,
        batch_buckets: Sequence[int] = BATCH_BUCKETS,
        length_buckets: Sequence[int] = (),
    ) -> None:
        self.step = compiled_step() if compiled else event_step
        self.batch_buckets, self.length_buckets = tuple(batch_buckets), tuple(length_buckets)
        self.graphs: dict[tuple, Callable] | None = {} if graphs else None

    def _function(self, field: FieldWeights | None, solver: str, steps: int) -> Callable:
        """The recurrence over tensors only (what a graph's inputs must be)."""

        def run(*tensors: torch.Tensor) -> torch.Tensor:
            weights = (
                None if field is None else FieldWeights(*tensors[6:], field.mode, field.constant)
            )
            return static_recurrence(self.step, solver, steps, *tensors[:6], weights)

        return run

    def _graph(
        self, field: FieldWeights | None, solver: str, steps: int, args: tuple[torch.Tensor, ...]
    ) -> Callable:
        """The graphed recurrence for the shapes and grad mode of ``args``, captured once."""
        if not args[0].is_cuda:
            raise ValueError(f"a CUDA graph loop needs a CUDA device, not {args[0].device}")
        training = torch.is_grad_enabled()
        key = (args[0].device, args[0].shape, training, tuple(a.requires_grad for a in args))
        key += (solver, steps)  # models sharing this loop may differ in their solver only
        if key not in self.graphs:
            function = self._function(field, solver, steps)
            if training:
                sample = tuple(
                    arg.detach().clone().requires_grad_(arg.requires_grad) for arg in args
                )
                graph = torch.cuda.make_graphed_callables(function, sample)
            else:
                graph = _capture_inference(function, args)
            self.graphs[key] = graph
        return self.graphs[key]

    def __call__(
        self,
        gate_inputs: torch.Tensor,
        time_gaps: torch.Tensor,
        context: torch.Tensor,
        present: torch.Tensor,
        w_hh: torch.Tensor,
        b_hh: torch.Tensor,
        field: FieldWeights | None,
        solver: str,
        steps: int,
    ) -> tuple[torch.Tensor, int]:
        """As :func:`static_recurrence` with ``solver`` taking ``steps`` steps per gap -> states
        (B, T, d) and the number of field evaluations per row, as ``ode_rnn`` returns them
        (every step of the padded length is taken)."""
        rows, events = time_gaps.shape
        batch, length = bucket(rows, self.batch_buckets), bucket(events, self.length_buckets)
        padded = (_pad(tensor, batch, length) for tensor in (gate_inputs, time_gaps, context))
        args = (*padded, _pad(present, batch, length), w_hh, b_hh)
        if field is not None:
            args += (field.w_in, field.b_in, field.w_out, field.b_out)
        per_step = 0 if field is None else METHODS[solver].evaluations_per_step * steps
        if self.graphs is None:
            states = self._function(field, solver, steps)(*args)[:rows, length - events :]
        else:  # a copy: the next replay overwrites the graph's output buffer
            graph = self._graph(field, solver, steps, args)
            states = graph(*args)[:rows, length - events :].clone()
        return states, length * per_step
