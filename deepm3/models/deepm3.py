"""DeepM3: an ODE-RNN for irregularly timed interactions.

Between two events the user state follows the learned ODE ``dh/dt = f(h, t)`` over the real
(transformed) gap; at each event a GRU cell reads the item embedding and the gap. Padding leaves
the state unchanged, and there are no virtual zero-padded events in between.

By default the prediction for the next item uses the state right after the last event, with
no knowledge of when the next event happens. ``predict_at=target_time`` instead evolves that
state up to the target's timestamp (a different protocol, recorded as such in results).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from deepm3.models.contract import absolute_time_feature, real_positions
from deepm3.models.recurrence import ode_rnn
from deepm3.ode.field import LIPSCHITZ_MODES, VectorField, apply_field
from deepm3.ode.solvers import METHODS, evolve

PREDICT_AT = ("last_event", "target_time")


@dataclass(frozen=True)
class DeepM3Options:
    hidden_size: int = 128
    field_width: int = 128  # hidden units of the vector field's MLP
    ode: str = "ode"  # ode | none (ablation: a plain GRU of the same sizes)
    solver: str = "euler"  # euler | rk4 | dopri5 (adaptive reference)
    steps: int = 1  # fixed steps per gap (euler, rk4)
    lipschitz: str = "spectral"  # spectral | bounded | none
    lipschitz_constant: float = 1.0
    predict_at: str = "last_event"  # last_event | target_time
    dropout: float = 0.2
    rtol: float = 1e-5  # dopri5 only
    atol: float = 1e-6
    implementation: str = "fast"  # fast (fused loop, euler/rk4) | eager (the reference)

    def __post_init__(self) -> None:
        checks = {
            "ode": ("ode", "none"),
            "solver": METHODS,
            "lipschitz": LIPSCHITZ_MODES,
            "predict_at": PREDICT_AT,
            "implementation": ("fast", "eager"),
        }
        for name, valid in checks.items():
            if getattr(self, name) not in valid:
                raise ValueError(f"{name} must be one of {', '.join(valid)}")


class DeepM3(nn.Module):
    def __init__(self, num_items: int, options: DeepM3Options, max_len: int) -> None:
        super().__init__()
        self.options = options
        size = options.hidden_size
        self.item_embedding = nn.Embedding(num_items + 1, size, padding_idx=0)
        nn.init.normal_(self.item_embedding.weight, std=size**-0.5)
        self.dropout = nn.Dropout(options.dropout)
        self.cell = nn.GRUCell(size + 1, size)  # input: item embedding and the gap
        self.field = (
            VectorField(size, options.field_width, options.lipschitz, options.lipschitz_constant)
            if options.ode == "ode"
            else None
        )

    def _flow(self, weights, h: torch.Tensor, gaps: torch.Tensor, context: torch.Tensor):
        """Evolve h (B, d) over gaps (B,) with the field; returns (h, evaluations)."""
        options = self.options
        return evolve(
            lambda state, elapsed: apply_field(weights, state, elapsed, context),
            h,
            gaps,
            options.solver,
            options.steps,
            options.rtol,
            options.atol,
        )

    def _eager(self, inputs, time_gaps, previous_time, real, weights):
        """The reference loop: one GRUCell and one :func:`evolve` call per event."""
        h = inputs.new_zeros(inputs.shape[0], self.options.hidden_size)
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
            if weights is not None:
                h, calls = self._flow(weights, h, gap, context)
                evaluations += calls
            h = torch.where(present, self.cell(step_input, h), h)
            states.append(h)
        return torch.stack(states, dim=1), evaluations  # (B, T, d)

    def forward(
        self,
        items: torch.Tensor,
        timestamps: torch.Tensor,
        time_gaps: torch.Tensor,
        next_gaps: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict]:
        """items, timestamps (B, T) int64; time_gaps, next_gaps (B, T) float -> (B, T, d)."""
        batch, length = items.shape
        real = real_positions(items)  # (B, T)
        inputs = torch.cat([self.dropout(self.item_embedding(items)), time_gaps[..., None]], -1)
        # The gap before event t starts at event t-1: its absolute time is the field's context.
        previous_time = absolute_time_feature(torch.roll(timestamps, 1, dims=1)) * torch.roll(
            real, 1, dims=1
        )
        weights = self.field.weights() if self.field is not None else None
        if self.options.implementation == "fast" and self.options.solver != "dopri5":
            gate_inputs = nn.functional.linear(inputs, self.cell.weight_ih, self.cell.bias_ih)
            out, evaluations = ode_rnn(
                gate_inputs,
                time_gaps,
                previous_time,
                real,
                self.cell.weight_hh,
                self.cell.bias_hh,
                weights,
                self.options.solver,
                self.options.steps,
            )
        else:
            out, evaluations = self._eager(inputs, time_gaps, previous_time, real, weights)
        if (
            self.options.predict_at == "target_time"
            and next_gaps is not None
            and weights is not None
        ):
            flat, calls = self._flow(
                weights,
                out.reshape(batch * length, -1),
                next_gaps.reshape(-1),
                absolute_time_feature(timestamps).reshape(-1),
            )
            out, evaluations = flat.reshape(batch, length, -1), evaluations + calls
        return out, {"nfe": evaluations}
