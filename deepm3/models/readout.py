"""The readout of a recurrent model: what its state becomes before it is scored.

A GRU's state is a convex mix of ``tanh`` outputs, so each of its ``d`` coordinates lies in
(-1, 1) and a score ``h . e_j`` is at most ``||e_j||_1``: the logits' scale is capped by the
item table's, and the softmax can sharpen only by growing the embeddings (DeepM3's flow moves
the state between events, but each event's GRU update pulls it back toward that range).
GRU4Rec and DeepM3 offer two options between the state and the item table, both off by
default (the state is scored as it is):

* ``hidden_dropout``: dropout on the scored state (GRU4Rec's ``dropout_p_hidden``; the models'
  ``dropout`` acts on the input item embeddings, GRU4Rec's ``dropout_p_embed``);
* ``output_norm=layer``: a LayerNorm with a learned gain and bias, which frees the scale, as
  SASRec's final LayerNorm does for its attention output.

The readout acts on scored states only, never on the recurrence: DeepM3 keeps evolving and
updating the raw state (``predict_at=target_time``, ``advance``, ``absorb``), and the readout
comes after (:func:`deepm3.models.contract.item_scores`).
"""

from __future__ import annotations

import torch
from torch import nn

OUTPUT_NORMS = ("none", "layer")  # model.output_norm


class Readout(nn.Module):
    """states (..., d) -> the states scored against the item table (..., d): dropout (training
    only), then the output normalisation. With ``hidden_dropout=0`` and ``output_norm=none``
    it is the identity and holds no parameters (a checkpoint without it loads unchanged)."""

    def __init__(self, size: int, hidden_dropout: float, output_norm: str) -> None:
        super().__init__()
        if output_norm not in OUTPUT_NORMS:
            raise ValueError(f"output_norm must be one of {', '.join(OUTPUT_NORMS)}")
        # nn.Identity at 0: no dropout call, so the global random stream is untouched
        self.dropout = nn.Dropout(hidden_dropout) if hidden_dropout > 0 else nn.Identity()
        self.norm = nn.LayerNorm(size) if output_norm == "layer" else nn.Identity()

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.norm(self.dropout(states))
