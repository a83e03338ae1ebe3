"""Stub networks with known outputs for the predictor's tests."""

import torch


class Offset(torch.nn.Module):
    """Stub network: a constant relative dose, its one parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.level = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x[:, :1]) + self.level
