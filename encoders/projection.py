"""MS-CLAP's projection head, which the compact model shares: it lives apart from both model
files so that loading the compact model does not import MS-CLAP's (and transformers' audio
models: seconds of imports on every query)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Projection(nn.Module):
    """linear1, GELU, linear2, dropout, residual, LayerNorm: a tower's features into the shared space."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float):
        super().__init__()
        self.linear1 = nn.Linear(in_dim, out_dim, bias=False)
        self.linear2 = nn.Linear(out_dim, out_dim, bias=False)
        self.drop = nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(out_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        embedded = self.linear1(features)
        return self.layer_norm(embedded + self.drop(self.linear2(F.gelu(embedded))))
