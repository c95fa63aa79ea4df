"""Modules the torch-backend tests build (a module, since the backend imports by name)."""

from __future__ import annotations

import torch
from torch import nn


class TinyNet(nn.Module):
    """Two layers, a tied pair of weights and a buffer: what packing must keep intact."""

    def __init__(self, width: int = 16, classes: int = 4) -> None:
        super().__init__()
        self.embed = nn.Linear(width, width)
        self.hidden = nn.Linear(width, width, bias=False)
        self.hidden.weight = self.embed.weight  # tied: one tensor, two names
        self.head = nn.Linear(width, classes)
        self.register_buffer("scale", torch.full((classes,), 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale: torch.Tensor = self.scale
        out: torch.Tensor = self.head(torch.relu(self.hidden(torch.relu(self.embed(x)))))
        return out * scale


def not_a_module() -> str:
    return "weights?"


class WithComputedBuffer(TinyNet):
    """A buffer computed at construction and not saved (like rotary tables): the file
    cannot describe it, so the backend must build the module for real."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("table", torch.arange(4.0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        table: torch.Tensor = self.table
        return super().forward(x) + table
