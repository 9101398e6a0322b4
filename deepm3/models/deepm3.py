"""DeepM3: an ODE-RNN for irregularly timed interactions.

Between two events the user state follows a flow over the real (transformed) gap; at each event
a GRU cell reads the item embedding and the gap. Padding leaves the state unchanged, and there
are no virtual zero-padded events in between. The flow is one of :data:`FLOWS`
(``model.ode``): ``ode``, the learned ODE ``dh/dt = f(h, t)`` solved by ``model.solver``;
``decay``, a closed-form relaxation toward an equilibrium read from the state after the last
event (:mod:`deepm3.ode.decay`: no solver, rates bounded by ``lipschitz_constant``); ``none``,
a plain GRU (the ablation).

By default the prediction for the next item uses the state right after the last event, with
no knowledge of when the next event happens. ``predict_at=target_time`` instead evolves that
state up to the target's timestamp (a different protocol, recorded as such in results).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from deepm3.errors import ConfigError
from deepm3.models.accelerated import BATCH_BUCKETS, BucketedRecurrence
from deepm3.models.contract import absolute_time_feature, real_positions
from deepm3.models.gap_encoding import GAP_ENCODINGS, gap_encoding
from deepm3.models.loops import LOOPS, field_drift
from deepm3.models.readout import OUTPUT_NORMS, Readout
from deepm3.ode.decay import DecayFlow, DecayWeights, decay_flow
from deepm3.ode.field import LIPSCHITZ_MODES, FieldWeights, VectorField
from deepm3.ode.solvers import METHODS, Drift, evolve, fixed_step_methods, is_adaptive
from deepm3.settings import check_choice, check_settings, setting

PREDICT_AT = ("last_event", "target_time")
# model.ode: the flow between events. ode: the learned field, solved by model.solver | decay: the
# closed form of deepm3.ode.decay | none: no flow (a plain GRU of the same sizes)
FLOWS = ("ode", "decay", "none")


def previous_event_time(timestamps: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """(B, T) absolute time feature of the event before each position: the field's context over
    the gap that ends there. 0 where there is none (position 0, or padding before), with no
    wrap-around from the end of the window."""
    time = absolute_time_feature(timestamps) * real  # (B, T); padding gives 0
    return torch.cat([time.new_zeros(time.shape[0], 1), time[:, :-1]], dim=1)


@dataclass(frozen=True)
class DeepM3Options:
    hidden_size: int = setting(128, low=1)
    field_width: int = setting(128, low=1)  # hidden units of the vector field's MLP
    ode: str = "ode"  # a name in FLOWS: ode | decay (closed form) | none (ablation: plain GRU)
    # solver, steps, lipschitz, rtol, atol: the ode flow's; decay solves exactly (none of them)
    solver: str = "euler"  # a name in deepm3.ode.solvers.METHODS: euler | rk4 | dopri5 (adaptive)
    steps: int = setting(1, low=1)  # steps per gap of a fixed-step solver
    # spectral: f is L-Lipschitz in h | bounded: |f_i| < L, bounds the drift's size, not its
    # Lipschitz constant | none
    lipschitz: str = "spectral"
    # L: the ode field's constant; with ode=decay the rates' bound (the field is L-Lipschitz)
    lipschitz_constant: float = setting(1.0, above=0)
    predict_at: str = "last_event"  # last_event | target_time
    dropout: float = setting(0.2, low=0, below=1)  # on the input item embeddings
    # the scored state, after the recurrence (deepm3.models.readout): dropout on it, and
    # output_norm none | layer (a LayerNorm); the flow and the GRU read the raw state
    hidden_dropout: float = setting(0.0, low=0, below=1)
    output_norm: str = "none"
    rtol: float = setting(1e-5, above=0)  # an adaptive solver only
    atol: float = setting(1e-6, above=0)
    # the loop over events, a name in deepm3.models.loops.LOOPS: fast (fused, any solver) |
    # eager (the reference) | compile | cuda_graph | compiled_cuda_graph (static loops for GPUs,
    # fixed-step solvers only; the graph ones on CUDA). Runs recorded with train.accelerate=X
    # read as implementation=X (deepm3.setting_changes.MOVED).
    implementation: str = "fast"
    # none | shared: deepm3.models.gap_encoding's features of the gap (log1p, Fourier, same
    # sitting), projected and added to the item embedding the GRU reads
    gap_encoding: str = "none"

    def __post_init__(self) -> None:
        check_choice("model.gap_encoding", self.gap_encoding, GAP_ENCODINGS)
        check_choice("model.ode", self.ode, FLOWS)
        check_choice("model.solver", self.solver, tuple(METHODS))
        check_choice("model.lipschitz", self.lipschitz, tuple(LIPSCHITZ_MODES))
        check_choice("model.predict_at", self.predict_at, PREDICT_AT)
        check_choice("model.implementation", self.implementation, tuple(LOOPS))
        check_choice("model.output_norm", self.output_norm, OUTPUT_NORMS)
        check_settings(self, "model")
        if LOOPS[self.implementation].static and self.ode == "decay":
            raise ConfigError(
                f"model.implementation={self.implementation} steps the ODE field only: "
                "ode=decay runs with implementation=fast or eager"
            )
        if LOOPS[self.implementation].static and is_adaptive(self.solver):
            raise ConfigError(
                f"model.implementation={self.implementation} cannot run the adaptive solver "
                f"{self.solver} (its steps depend on the data): use solver="
                f"{' or '.join(fixed_step_methods())}, or implementation=fast"
            )


class DeepM3(nn.Module):
    def __init__(
        self,
        num_items: int,
        options: DeepM3Options,
        max_len: int,
        batch_buckets: Sequence[int] = BATCH_BUCKETS,
        length_buckets: Sequence[int] = (),
    ) -> None:
        """``batch_buckets``, ``length_buckets``: the shapes a static loop (``compile``,
        ``cuda_graph``, ``compiled_cuda_graph``) pads a batch up to, the smallest that holds it
        (beyond the largest, its own size): each is one compilation or capture, so few buckets
        bound them and their memory (training batches all have the same length)."""
        super().__init__()
        self.options = options
        self.buckets = (tuple(batch_buckets), tuple(length_buckets))
        self.static_loops: dict[tuple[bool, bool], BucketedRecurrence] = {}
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
        self.decay = DecayFlow(size, options.lipschitz_constant) if options.ode == "decay" else None
        self.head = Readout(size, options.hidden_dropout, options.output_norm)
        self.gap_encoding = gap_encoding(options.gap_encoding, size)  # None unless shared

    @property
    def evolves_to_query_time(self) -> bool:
        """The model contract's capability: True with a learned flow (``ode=ode`` or
        ``decay``), which :meth:`advance` and :meth:`absorb` follow; ``ode=none`` is a plain
        GRU."""
        return self.field is not None or self.decay is not None

    @property
    def absorbs_events(self) -> bool:
        """The model contract's capability: a flow's state summarises the past, and
        :meth:`absorb` takes one new event in one step (the plain GRU is not served so)."""
        return self.evolves_to_query_time

    @property
    def solver(self) -> str | None:
        """The ODE method this model solves its flow with (a name in ``ode.solvers.METHODS``);
        None without a flow to solve (``ode=decay`` is exact, ``ode=none`` has none)."""
        return self.options.solver if self.field is not None else None

    def with_solver(self, method: str) -> DeepM3:
        """A twin that solves the same flow with ``method``: it shares every parameter and
        submodule with this model (a shallow copy), only its options differ."""
        if self.field is None:
            raise ValueError(f"ode={self.options.ode} has no ODE to solve with {method}")
        twin = copy.copy(self)
        twin.options = replace(self.options, solver=method)
        return twin

    def flow(self, drift: Drift, h: torch.Tensor, gaps: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Evolve h (B, d) over gaps (B,) under ``drift`` with the configured solver."""
        options = self.options
        return evolve(drift, h, gaps, options.solver, options.steps, options.rtol, options.atol)

    def flow_weights(self) -> FieldWeights | DecayWeights | None:
        """The flow's effective weights for one model call (None without a flow)."""
        if self.field is not None:
            return self.field.weights()
        return self.decay.weights() if self.decay is not None else None

    def between(
        self,
        weights: FieldWeights | DecayWeights,
        h: torch.Tensor,
        gaps: torch.Tensor,
        context: torch.Tensor,
    ) -> tuple[torch.Tensor, int]:
        """Evolve h (B, d), right after each row's event, over gaps (B,) under the model's flow
        (``weights`` from :meth:`flow_weights`; context (B,) the field's, which decay does not
        read) -> (h (B, d), field evaluations: 0 for the closed form)."""
        if isinstance(weights, DecayWeights):
            return decay_flow(weights, h, gaps), 0
        return self.flow(field_drift(weights, context), h, gaps)

    def event_embedding(self, items: torch.Tensor, time_gaps: torch.Tensor) -> torch.Tensor:
        """items (...) int64, time_gaps (...) float, the transformed gap before each event ->
        (..., d): the item embedding after dropout, plus the gap encoding when there is one."""
        embedded = self.dropout(self.item_embedding(items))
        if self.gap_encoding is None:
            return embedded
        return embedded + self.gap_encoding(time_gaps)

    def forward(
        self,
        items: torch.Tensor,
        timestamps: torch.Tensor,
        time_gaps: torch.Tensor,
        next_gaps: torch.Tensor | None = None,
        time_scale: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict]:
        """items, timestamps (B, T) int64; time_gaps, next_gaps (B, T) float -> (B, T, d).

        ``time_scale`` (B,) int64, a per-user time unit of the model contract, is ignored:
        DeepM3 reads the gaps themselves. The loop over events is ``options.implementation``
        (:data:`~deepm3.models.loops.LOOPS`).
        """
        batch, length = items.shape
        real = real_positions(items)  # (B, T)
        inputs = torch.cat([self.event_embedding(items, time_gaps), time_gaps[..., None]], -1)
        previous_time = previous_event_time(timestamps, real)  # the context of the gap before t
        weights = self.flow_weights()
        loop = LOOPS[self.options.implementation].run
        out, evaluations = loop(self, inputs, time_gaps, previous_time, real, weights)
        if (
            self.options.predict_at == "target_time"
            and next_gaps is not None
            and weights is not None
        ):
            flat, calls = self.between(
                weights,
                out.reshape(batch * length, -1),
                next_gaps.reshape(-1),
                absolute_time_feature(timestamps).reshape(-1),
            )
            out, evaluations = flat.reshape(batch, length, -1), evaluations + calls
        return out, {"nfe": evaluations}

    def readout(self, states: torch.Tensor) -> torch.Tensor:
        """States (..., d), right after an event or evolved to a query time -> the vectors
        scored against the item table (..., d). The recurrence never reads them."""
        return self.head(states)

    def advance(
        self, h: torch.Tensor, gaps: torch.Tensor, last_times: torch.Tensor
    ) -> tuple[torch.Tensor, int]:
        """Evolve states h (B, d) over transformed gaps (B,) float after events at ``last_times``
        (B,) int64 seconds: the state at a later query time, as ``predict_at=target_time`` does
        after the last event. ``ode=none`` has no flow and returns h unchanged."""
        weights = self.flow_weights()
        if weights is None:
            return h, 0
        return self.between(weights, h, gaps, absolute_time_feature(last_times))

    def absorb(
        self,
        h: torch.Tensor,
        items: torch.Tensor,
        gaps: torch.Tensor,
        previous_times: torch.Tensor,
    ) -> torch.Tensor:
        """One new event per row, without replaying the history: states h (B, d) right after
        each row's previous event, items (B,) int64, gaps (B,) float transformed gap since that
        event, previous_times (B,) int64 its seconds (0 with gap 0 for a first event) ->
        states (B, d) right after the new event. The same step as :meth:`forward` takes."""
        weights = self.flow_weights()
        if weights is not None:
            context = absolute_time_feature(previous_times) * (previous_times != 0)
            h, _ = self.between(weights, h, gaps, context)
        step_input = torch.cat([self.event_embedding(items, gaps), gaps[:, None]], -1)
        return self.cell(step_input, h)

    @torch.no_grad()
    def field_inputs(
        self,
        items: torch.Tensor,
        timestamps: torch.Tensor,
        time_gaps: torch.Tensor,
        next_gaps: torch.Tensor,
        max_points: int = 256,
        seed: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Inputs at which the field really runs on a batch, to measure its Lipschitz constant.

        items, timestamps (B, T) int64; time_gaps, next_gaps (B, T) float. Takes the events
        followed by a non-zero gap (at most ``max_points``, a seeded random subset), draws an
        elapsed time uniformly inside each following gap, and evolves the state right after
        the event to that time, so each triple is a point of a real trajectory. Returns states
        (N, d), elapsed (N,) and context (N,) (the event's absolute time feature, as the field
        receives it), in eval mode (no dropout).
        """
        if self.field is None:
            raise ValueError(f"ode={self.options.ode} has no vector field")
        training = self.training
        self.eval()
        try:
            after_event, _ = self(items, timestamps, time_gaps)  # (B, T, d); predict_at unused
        finally:
            self.train(training)
        generator = torch.Generator().manual_seed(seed)
        rows, columns = (real_positions(items) & (next_gaps > 0)).nonzero(as_tuple=True)
        chosen = torch.randperm(rows.numel(), generator=generator)[:max_points].sort().values
        chosen = chosen.to(rows.device)
        rows, columns = rows[chosen], columns[chosen]
        fraction = torch.rand(rows.numel(), generator=generator).to(next_gaps)
        elapsed = fraction * next_gaps[rows, columns]
        context = absolute_time_feature(timestamps[rows, columns])
        states, _ = self.between(self.field.weights(), after_event[rows, columns], elapsed, context)
        return states, elapsed, context
