"""The fast path of the DeepM3 recurrence (``implementation=fast``): the same mathematics as the
eager reference (:func:`deepm3.models.loops.eager`), with less work per event.

It supplies only fused pieces and steps with :func:`deepm3.ode.solvers.evolve`, like the
reference, so every ODE method works here too. What it saves, measured by
``benchmarks/speed.py``:

* the GRU's input projections of all events in one matrix product, not one per event, and the
  GRU gates written out (no second input matmul per event);
* a fused drift: the field's first layer split into its ``h`` part and its time parts, the
  context term of every event computed once for the whole sequence, and ``addmm`` calls (no
  ``torch.cat`` of ``[h, time]`` per evaluation);
* a time step at which every row's gap is zero (ties: half of MovieLens' gaps; always so for a
  single user) skips the flow entirely. Rows with a zero gap inside a mixed step are computed
  and multiplied by zero: gathering the moving rows cost more than it saved (measured on CPU).

The closed-form flow (``ode=decay``, :func:`deepm3.ode.decay.decay_flow`) takes the same loop:
one coefficient product and the exact relaxation per gap, no solver.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch

from deepm3.ode.decay import DecayWeights, decay_flow
from deepm3.ode.field import FieldWeights, field_head, first_layer_columns
from deepm3.ode.solvers import Drift

FlowWeights = FieldWeights | DecayWeights  # the weights of either flow, for one model call


def is_onnx_exporting() -> bool:
    """True while ``torch.onnx.export`` runs (the exported graph must not depend on the data)."""
    return bool(getattr(torch.onnx, "is_in_onnx_export", lambda: False)())


def _building_a_graph(time_gaps: torch.Tensor) -> bool:
    """True while the recurrence is traced, compiled, exported to ONNX or captured in a CUDA
    graph: what runs then must not depend on the data (nor read it back to the host)."""
    return (
        torch.jit.is_tracing()
        or torch.compiler.is_compiling()
        or is_onnx_exporting()
        # checked on CUDA tensors only: a CPU-only build has no capture to ask about
        or (time_gaps.is_cuda and torch.cuda.is_current_stream_capturing())
    )


# flow(drift, h (B, d), gaps (B,)) -> (h (B, d), evaluations): evolve with the model's solver
Flow = Callable[[Drift, torch.Tensor, torch.Tensor], tuple[torch.Tensor, int]]
# between(h (B, d), gap (B,), constant (B, W) | None) -> (h (B, d), evaluations): one gap's flow
Between = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, int]]


def _fused_drift(
    field: FieldWeights, w_h: torch.Tensor, w_elapsed: torch.Tensor, constant: torch.Tensor
) -> Drift:
    """The field at one time step; ``constant`` (B, W) holds its context term and layer-1 bias."""

    def drift(h: torch.Tensor, elapsed: torch.Tensor | None) -> torch.Tensor:
        pre = torch.addmm(constant, h, w_h.T)  # (B, W)
        if elapsed is not None:  # None at the start of a gap: the time term is zero
            # a rank-one update, in place on addmm's fresh output (its backward does not need
            # it): the cheapest form measured, forward and backward
            pre.addr_(elapsed, w_elapsed)
        return field_head(field, pre)

    return drift


def _gru_update(
    gates_x: torch.Tensor, h: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor
) -> torch.Tensor:
    """One GRU cell update (PyTorch's gate order r, z, n): gates_x (B, 3d), h (B, d) -> (B, d).

    ``h' = (1 - z) * n + z * h`` as one ``lerp`` (the fastest form measured on CPU).
    """
    x_r, x_z, x_n = gates_x.chunk(3, dim=1)
    h_r, h_z, h_n = torch.addmm(b_hh, h, w_hh.T).chunk(3, dim=1)
    reset = torch.sigmoid(x_r + h_r)
    update = torch.sigmoid(x_z + h_z)
    candidate = torch.tanh(x_n + reset * h_n)
    return torch.lerp(candidate, h, update)


def time_major(
    gate_inputs: torch.Tensor,
    time_gaps: torch.Tensor,
    context: torch.Tensor,
    present: torch.Tensor,
    field: FlowWeights | None,
) -> tuple[Iterator[tuple], tuple[torch.Tensor, torch.Tensor] | None]:
    """What each event's step reads, in time order: (gates_x (B, 3d), gap (B,), keep (B, 1),
    constant (B, W) the field's context term and first-layer bias, or None without a field),
    each a dense time-major block; and the field's h and elapsed columns (None without one).
    Shared by :func:`ode_rnn` and the static loops of :mod:`deepm3.models.accelerated`."""
    constants: Sequence[torch.Tensor | None] = [None] * gate_inputs.shape[1]
    columns = None
    if isinstance(field, FieldWeights):
        w_h, w_elapsed, w_context = first_layer_columns(field)
        columns = (w_h, w_elapsed)
        constants = torch.addcmul(field.b_in, context.T[..., None], w_context).unbind(0)
    events = zip(
        gate_inputs.transpose(0, 1).contiguous().unbind(0),  # (B, 3d) per event
        time_gaps.T.contiguous().unbind(0),
        present.T[..., None].contiguous().unbind(0),
        constants,
        strict=True,
    )
    return events, columns


def _between_events(
    field: FlowWeights, columns: tuple[torch.Tensor, torch.Tensor] | None, flow: Flow
) -> Between:
    """One gap's flow: the closed form of ``decay``, or the fused field stepped by ``flow``."""
    if isinstance(field, DecayWeights):
        return lambda h, gap, constant: (decay_flow(field, h, gap), 0)
    return lambda h, gap, constant: flow(_fused_drift(field, *columns, constant), h, gap)


def ode_rnn(
    gate_inputs: torch.Tensor,
    time_gaps: torch.Tensor,
    context: torch.Tensor,
    present: torch.Tensor,
    w_hh: torch.Tensor,
    b_hh: torch.Tensor,
    field: FlowWeights | None,
    flow: Flow,
) -> tuple[torch.Tensor, int]:
    """Run the ODE-RNN over a sequence.

    gate_inputs: (B, T, 3d) = x_t W_ih^T + b_ih for every event (PyTorch GRU gate order r, z, n);
    time_gaps, context: (B, T) float; present: (B, T) bool; w_hh (3d, d), b_hh (3d,); ``field``:
    the ODE field's weights (``flow`` steps its drift over the gaps: the model's solver settings
    bound to ``evolve``), the closed-form decay's, or None (no flow).
    Returns states (B, T, d) and the number of field evaluations (a time step at which every
    row's gap is zero skips the flow: those evaluations are not made, nor counted).
    """
    batch, length, three_d = gate_inputs.shape
    h = gate_inputs.new_zeros(batch, three_d // 3)
    evaluations, states = 0, []
    events, columns = time_major(gate_inputs, time_gaps, context, present, field)
    if field is not None:
        between = _between_events(field, columns, flow)
        if _building_a_graph(time_gaps):
            any_gap = [True] * length  # a graph for any data: a zero gap then changes nothing
        else:
            any_gap = (time_gaps != 0).any(dim=0).tolist()  # one sync, not one per step
    for t, (gates_x, gap, keep, constant) in enumerate(events):
        if field is not None and any_gap[t]:
            h, calls = between(h, gap, constant)
            evaluations += calls
        h = torch.where(keep, _gru_update(gates_x, h, w_hh, b_hh), h)
        states.append(h)
    return torch.stack(states, dim=1), evaluations
