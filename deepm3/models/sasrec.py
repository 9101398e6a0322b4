"""SASRec (Kang & McAuley, 2018): causal self-attention over the item sequence.

Pre-norm transformer blocks with learned positions. Positions are counted from the first event
in the window, so left padding never changes an output (the original counts padded slots).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from deepm3.models.contract import positions_from_first_event, real_positions


@dataclass(frozen=True)
class SASRecOptions:
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 2
    dropout: float = 0.2


def attention_mask(items: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, T) bool, True where query t may attend to key s: s <= t and s is an event.

    A padded query may attend to itself only, which keeps softmax finite; its output is
    discarded anyway.
    """
    length = items.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=items.device).tril()
    allowed = causal & real_positions(items)[:, None, :]
    return (allowed | torch.eye(length, dtype=torch.bool, device=items.device))[:, None]


class FeedForward(nn.Module):
    def __init__(self, size: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(size, size),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(size, size),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CausalBlock(nn.Module):
    def __init__(self, size: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm_attention = nn.LayerNorm(size)
        self.qkv = nn.Linear(size, 3 * size)
        self.project = nn.Linear(size, size)
        self.norm_feed = nn.LayerNorm(size)
        self.feed = FeedForward(size, dropout)
        self.dropout = nn.Dropout(dropout)
        self.attention_dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, length, size = x.shape
        q, k, v = self.qkv(self.norm_attention(x)).chunk(3, dim=-1)
        # (B, T, d) -> (B, heads, T, d / heads)
        q, k, v = (t.view(batch, length, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        attended = nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.attention_dropout if self.training else 0.0
        )
        x = x + self.dropout(self.project(attended.transpose(1, 2).reshape(batch, length, size)))
        return x + self.feed(self.norm_feed(x))


class SASRec(nn.Module):
    def __init__(self, num_items: int, options: SASRecOptions, max_len: int) -> None:
        super().__init__()
        size = options.hidden_size
        self.max_len = max_len
        self.item_embedding = nn.Embedding(num_items + 1, size, padding_idx=0)
        self.position_embedding = nn.Embedding(max_len, size)
        nn.init.normal_(self.item_embedding.weight, std=size**-0.5)
        nn.init.normal_(self.position_embedding.weight, std=size**-0.5)
        self.dropout = nn.Dropout(options.dropout)
        self.blocks = nn.ModuleList(
            CausalBlock(size, options.num_heads, options.dropout) for _ in range(options.num_layers)
        )
        self.norm = nn.LayerNorm(size)

    def forward(
        self,
        items: torch.Tensor,
        timestamps: torch.Tensor,
        time_gaps: torch.Tensor,
        next_gaps: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict]:
        """items (B, T) -> states (B, T, d); times are ignored (SASRec is order-only)."""
        real = real_positions(items)[..., None]
        positions = positions_from_first_event(items, self.max_len)
        x = self.item_embedding(items) * self.item_embedding.embedding_dim**0.5
        x = self.dropout(x + self.position_embedding(positions)) * real
        mask = attention_mask(items)
        for block in self.blocks:
            x = block(x, mask) * real
        return self.norm(x) * real, {}
