"""One shared encoding of the gap before each event, for every model that reads time.

``model.gap_encoding=shared`` (DeepM3, timeattn, TiSASRec: the models that read time; default
``none``, the models as they were) adds to each event's item embedding a learned linear
projection of :data:`NUM_FEATURES` features of the gap to the previous event:

* ``log1p(hours)``, the transformed gap the models already receive (``time_gaps``);
* ``sin`` and ``cos`` of ``2 pi gap / P`` for each period ``P`` of :data:`PERIODS_SECONDS`
  (an hour, a day, a week): where in an hour, a day or a week the gap ends;
* ``1.0`` when the gap is under :data:`SAME_SITTING_SECONDS` (30 minutes of real time: the
  same sitting), else ``0.0``. The first event of a sequence has gap 0, so it reads as 1.

The raw seconds are recovered from ``time_gaps`` by inverting their documented transform
(``seconds = expm1(time_gaps) * 3600``, :func:`deepm3.data.sequences.gap_features`), not from
the timestamps: ``time_gaps`` are already the causal gap to the previous event only (0 for a
first event and padding), and a model's one-event step (``absorb``) receives the same
transformed gap, so the batch and the step encode identically. The inversion is exact to float32
rounding (about 1e-6 relative: under a millisecond at the threshold, a tenth of a second at three
days, tens of seconds at a year, where the hour's phase is noise).

Projected and added rather than concatenated to the GRU input: the GRU cell keeps its input size,
so every loop of :mod:`deepm3.models.loops` runs unchanged, and the projection of all events is
one (B*T, F) x (F, d) product.
"""

from __future__ import annotations

import math

import torch
from torch import nn

GAP_ENCODINGS = ("none", "shared")  # model.gap_encoding
SECONDS_PER_HOUR = 3600.0
PERIODS_SECONDS = (3600.0, 86400.0, 604800.0)  # an hour, a day, a week
SAME_SITTING_SECONDS = 1800.0  # a gap under 30 minutes: the same sitting
NUM_FEATURES = 1 + 2 * len(PERIODS_SECONDS) + 1


def gap_seconds(time_gaps: torch.Tensor) -> torch.Tensor:
    """(...) transformed gaps ``log1p(hours)`` -> (...) float64 seconds (the inverse)."""
    return torch.expm1(time_gaps.double()) * SECONDS_PER_HOUR


def encode_gaps(seconds: torch.Tensor) -> torch.Tensor:
    """(...) gaps in seconds (>= 0, any dtype), e.g. (B, T) -> (..., NUM_FEATURES) float64:
    ``[log1p(hours), sin_1, cos_1, ..., sin_P, cos_P, same_sitting]`` (module docstring)."""
    seconds = seconds.double().clamp_min(0)
    columns = [torch.log1p(seconds / SECONDS_PER_HOUR)]
    for period in PERIODS_SECONDS:
        # the phase first (fmod is exact in float64), then the angle: a runtime that computes
        # sin in float32 (onnxruntime) then sees an angle under 2 pi, not one of thousands of
        # radians whose float32 rounding moves the result by 1e-4
        angle = torch.fmod(seconds, period) * (2 * math.pi / period)
        columns += [torch.sin(angle), torch.cos(angle)]
    columns.append((seconds < SAME_SITTING_SECONDS).double())
    return torch.stack(columns, dim=-1)


class GapEncoding(nn.Module):
    """The learned part: transformed gaps (...) -> (..., d), a linear map of
    :func:`encode_gaps` added to the item embedding (same dtype as ``time_gaps``)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.project = nn.Linear(NUM_FEATURES, size)

    def forward(self, time_gaps: torch.Tensor) -> torch.Tensor:
        features = encode_gaps(gap_seconds(time_gaps)).to(time_gaps.dtype)
        return self.project(features)


def gap_encoding(name: str, size: int) -> GapEncoding | None:
    """The module ``model.gap_encoding=name`` adds, or None for ``none`` (no parameters, so a
    model without it draws the same initial weights as before the option existed)."""
    return GapEncoding(size) if name == "shared" else None
