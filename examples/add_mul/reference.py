import torch
import torch.nn as nn

batch_size = 16
dim = 1024


class Model(nn.Module):
    """Fused element-wise (x + y) * z."""

    def __init__(self):
        super().__init__()

    def forward(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return (x + y) * z


def get_inputs():
    x = torch.randn(batch_size, dim)
    y = torch.randn(batch_size, dim)
    z = torch.randn(batch_size, dim)
    return [x, y, z]


def get_init_inputs():
    return []
