"""The fast path of the DeepM3 recurrence: the same mathematics as the eager reference
(:class:`~deepm3.models.deepm3.DeepM3` with ``implementation=eager``), with less work per event.

What it saves, measured by ``benchmarks/speed.py``:

* the GRU's input projections of all events in one matrix product, not one per event;
* the field's first layer split into its ``h`` part and a time part; the context term of
  every event is computed once for the whole sequence, not re-concatenated per step;
* fused ``addmm`` calls and the GRU gates written out (no ``torch.cat`` of ``[h, time]`` per
  evaluation, no second input matmul per event);
* a time step at which every row's gap is zero (ties: half of MovieLens' gaps; always so for a
  single user) skips the field entirely. Rows with a zero gap inside a mixed step are computed
  and multiplied by zero: gathering the moving rows cost more than it saved (measured on CPU).

Only the fixed-step solvers (euler, rk4) have a fast path; dopri5 is the adaptive reference.
"""

from __future__ import annotations

import torch

from deepm3.ode.field import FieldWeights


def _drift(
    field: FieldWeights,
    h: torch.Tensor,
    w_h: torch.Tensor,
    constant: torch.Tensor,
    w_elapsed: torch.Tensor,
    elapsed: torch.Tensor | None,
) -> torch.Tensor:
    """f(h) for h (B, d); ``constant`` (B, W) holds the context term and bias of layer 1."""
    pre = torch.addmm(constant, h, w_h.T)
    if elapsed is not None:
        pre = pre + elapsed[:, None] * w_elapsed
    out = torch.addmm(field.b_out, torch.tanh(pre), field.w_out.T)
    if field.mode == "spectral":
        return field.constant * out
    if field.mode == "bounded":
        return field.constant * torch.tanh(out)
    return out


def _evolve_fixed(
    field: FieldWeights,
    h: torch.Tensor,
    gap: torch.Tensor,
    constant: torch.Tensor,
    w_h: torch.Tensor,
    w_elapsed: torch.Tensor,
    method: str,
    steps: int,
) -> torch.Tensor:
    step = 1.0 / steps
    scale = gap[:, None] * step  # (B, 1)
    for index in range(steps):
        start = index * step
        # elapsed = 0 at the first Euler evaluation: the time term vanishes, skip it.
        elapsed = None if start == 0.0 else gap * start
        k1 = _drift(field, h, w_h, constant, w_elapsed, elapsed)
        if method == "euler":
            h = h + scale * k1
            continue
        middle = gap * (start + 0.5 * step)
        k2 = _drift(field, h + 0.5 * scale * k1, w_h, constant, w_elapsed, middle)
        k3 = _drift(field, h + 0.5 * scale * k2, w_h, constant, w_elapsed, middle)
        k4 = _drift(field, h + scale * k3, w_h, constant, w_elapsed, gap * (start + step))
        h = h + scale * (k1 + 2.0 * k2 + 2.0 * k3 + k4) / 6.0
    return h


def ode_rnn(
    gate_inputs: torch.Tensor,
    time_gaps: torch.Tensor,
    context: torch.Tensor,
    present: torch.Tensor,
    w_hh: torch.Tensor,
    b_hh: torch.Tensor,
    field: FieldWeights | None,
    method: str,
    steps: int,
) -> tuple[torch.Tensor, int]:
    """Run the ODE-RNN over a sequence.

    gate_inputs: (B, T, 3d) = x_t W_ih^T + b_ih for every event (PyTorch GRU gate order r, z, n);
    time_gaps, context: (B, T) float; present: (B, T) bool; w_hh (3d, d), b_hh (3d,).
    Returns states (B, T, d) and the number of field evaluations (a time step at which every
    row's gap is zero skips the field: those evaluations are not made, nor counted).
    """
    batch, length, three_d = gate_inputs.shape
    size = three_d // 3
    h = gate_inputs.new_zeros(batch, size)
    evaluations, states = 0, []
    per_step = {"euler": 1, "rk4": 4}[method] * steps
    if field is not None:
        # contiguous copies once per call: a strided slice would be re-copied by every addmm
        w_h = field.w_in[:, :size].contiguous()
        w_elapsed, w_context = field.w_in[:, size].contiguous(), field.w_in[:, size + 1]
        # time-major and contiguous: each step then reads one dense (B, W) block
        constants = torch.addcmul(field.b_in, context.T[..., None], w_context).unbind(0)
        any_gap = (time_gaps != 0).any(dim=0).tolist()  # one sync, not one per step
    gate_inputs = gate_inputs.transpose(0, 1).contiguous()  # (T, B, 3d)
    for t, (gates_x, gap, keep) in enumerate(
        zip(
            gate_inputs.unbind(0),
            time_gaps.T.contiguous().unbind(0),
            present.T[..., None].contiguous().unbind(0),
            strict=True,
        )
    ):
        if field is not None and any_gap[t]:
            h = _evolve_fixed(field, h, gap, constants[t], w_h, w_elapsed, method, steps)
            evaluations += per_step
        gates_h = torch.addmm(b_hh, h, w_hh.T)
        x_r, x_z, x_n = gates_x.chunk(3, dim=1)
        h_r, h_z, h_n = gates_h.chunk(3, dim=1)
        reset = torch.sigmoid(x_r + h_r)
        update = torch.sigmoid(x_z + h_z)
        candidate = torch.tanh(x_n + reset * h_n)
        h = torch.where(keep, candidate + update * (h - candidate), h)
        states.append(h)
    return torch.stack(states, dim=1), evaluations
