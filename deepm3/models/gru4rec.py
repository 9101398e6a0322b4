"""GRU4Rec (Hidasi et al., 2016) as a sequence encoder: a GRU over item embeddings.

Options follow the official code's names where they meet: ``dropout`` acts on the input item
embeddings (its ``dropout_p_embed``), ``hidden_dropout`` on the state before it is scored (its
``dropout_p_hidden``); ``output_norm=layer`` normalises that state (:mod:`deepm3.models.readout`,
not in the original). Negatives with popularity sampling (its ``sample_alpha``) and the logQ
correction are training settings (``train.loss_sampling``, ``train.logq``).

Left-padded rows are shifted to the front before the GRU runs: the recurrence then reads every
real event from the zero initial state, and padding comes only after them, where it cannot
change an earlier output. (Packing gives the same numbers but its CPU backward is ~30x slower.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from deepm3.models.contract import real_positions
from deepm3.models.readout import OUTPUT_NORMS, Readout
from deepm3.settings import check_choice, check_settings, setting


@dataclass(frozen=True)
class GRU4RecOptions:
    hidden_size: int = setting(128, low=1)
    num_layers: int = setting(1, low=1)
    dropout: float = setting(0.2, low=0, below=1)  # on the input item embeddings
    hidden_dropout: float = setting(0.0, low=0, below=1)  # on the state before it is scored
    output_norm: str = "none"  # none | layer (a LayerNorm of the scored state)

    def __post_init__(self) -> None:
        check_choice("model.output_norm", self.output_norm, OUTPUT_NORMS)
        check_settings(self, "model")


def shift_left_padding(x: torch.Tensor, lengths: torch.Tensor, to_front: bool) -> torch.Tensor:
    """Move each row's last ``lengths`` steps of x (B, T, ...) to the front, or back again."""
    batch, length = x.shape[:2]
    offset = (length - lengths)[:, None]  # (B, 1)
    steps = torch.arange(length, device=x.device)[None, :]
    source = (steps + offset) if to_front else (steps - offset)
    valid = (source >= 0) & (source < length)
    index = source.clamp(0, length - 1)
    index = index.view(batch, length, *([1] * (x.dim() - 2))).expand_as(x)
    mask = valid.view(batch, length, *([1] * (x.dim() - 2)))
    return x.gather(1, index) * mask


class GRU4Rec(nn.Module):
    evolves_to_query_time = False  # no flow in time (the model contract's capability)
    absorbs_events = False  # no one-step update of a cached state: a server replays

    def __init__(self, num_items: int, options: GRU4RecOptions, max_len: int) -> None:
        super().__init__()
        size = options.hidden_size
        self.item_embedding = nn.Embedding(num_items + 1, size, padding_idx=0)
        nn.init.normal_(self.item_embedding.weight, std=size**-0.5)
        self.dropout = nn.Dropout(options.dropout)
        self.gru = nn.GRU(size, size, num_layers=options.num_layers, batch_first=True)
        self.head = Readout(size, options.hidden_dropout, options.output_norm)

    def forward(
        self,
        items: torch.Tensor,
        timestamps: torch.Tensor,
        time_gaps: torch.Tensor,
        next_gaps: torch.Tensor | None = None,
        time_scale: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict]:
        """items (B, T) -> states (B, T, d); times are ignored."""
        lengths = real_positions(items).sum(dim=1)
        x = shift_left_padding(self.dropout(self.item_embedding(items)), lengths, to_front=True)
        out, _ = self.gru(x)
        states = shift_left_padding(out, lengths, to_front=False)
        return states * real_positions(items)[..., None], {}

    def readout(self, states: torch.Tensor) -> torch.Tensor:
        """States (..., d) -> the vectors scored against the item table (..., d)."""
        return self.head(states)
