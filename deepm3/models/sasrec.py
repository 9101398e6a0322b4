"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over the item sequence.

Blocks as in the original TensorFlow code (:mod:`deepm3.models.attention`, shared with TiSASRec):
query-normalised residual, no output projection, learned absolute positions added to the input.

Deviations from the original, each applied to TiSASRec too:

* positions are counted from the user's first event in the window, so left padding never changes
  an output (the original counts padded slots);
* the loss is this library's shared loss (full softmax cross-entropy by default), not the
  original's binary cross-entropy with one sampled negative (``loss=bpr loss_negatives=1`` is
  the closest option);
* item scores use the shared, tied item embeddings, as in the original.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from deepm3.models.attention import Block, attention_mask, check_heads
from deepm3.models.contract import positions_from_first_event, real_positions
from deepm3.settings import check_settings, setting


@dataclass(frozen=True)
class SASRecOptions:
    hidden_size: int = setting(128, low=1)
    num_layers: int = setting(2, low=1)
    num_heads: int = setting(2, low=1)
    dropout: float = setting(0.2, low=0, below=1)

    def __post_init__(self) -> None:
        check_settings(self, "model")
        check_heads(self.hidden_size, self.num_heads)


def attention_backbone(model: nn.Module, num_items: int, options, max_len: int) -> None:
    """Give ``model`` SASRec's layers: item table (N + 1, d), learned positions (max_len, d),
    input dropout, ``options.num_layers`` causal blocks and the final LayerNorm. ``options``
    has hidden_size, num_heads, num_layers and dropout (SASRec's and its time-aware kin's)."""
    size = options.hidden_size
    model.item_embedding = nn.Embedding(num_items + 1, size, padding_idx=0)
    model.position_embedding = nn.Embedding(max_len, size)
    nn.init.normal_(model.item_embedding.weight, std=size**-0.5)
    nn.init.normal_(model.position_embedding.weight, std=size**-0.5)
    model.dropout = nn.Dropout(options.dropout)
    model.blocks = nn.ModuleList(
        Block(size, options.num_heads, options.dropout) for _ in range(options.num_layers)
    )
    model.norm = nn.LayerNorm(size)


class SASRec(nn.Module):
    evolves_to_query_time = False  # no flow in time (the model contract's capability)
    absorbs_events = False  # no one-step update of a cached state: a server replays

    def __init__(self, num_items: int, options: SASRecOptions, max_len: int) -> None:
        super().__init__()
        self.max_len = max_len
        attention_backbone(self, num_items, options, max_len)

    def forward(
        self,
        items: torch.Tensor,
        timestamps: torch.Tensor,
        time_gaps: torch.Tensor,
        next_gaps: torch.Tensor | None = None,
        time_scale: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict]:
        """items (B, T) -> states (B, T, d); times are ignored (SASRec is order-only)."""
        real = real_positions(items)[..., None]
        positions = positions_from_first_event(items, self.max_len)
        x = self.item_embedding(items) * self.item_embedding.embedding_dim**0.5
        x = self.dropout(x + self.position_embedding(positions)) * real
        mask = attention_mask(items)
        for block in self.blocks:
            x = block(x, mask, real)
        return self.norm(x) * real, {}

    def readout(self, states: torch.Tensor) -> torch.Tensor:
        """The states as they are: forward ends in the final LayerNorm already."""
        return states
