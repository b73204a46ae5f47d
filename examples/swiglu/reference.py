import torch
import torch.nn as nn
import torch.nn.functional as F

batch_size = 32
intermediate_size = 512


class Model(nn.Module):
    """SwiGLU gating as in Llama MLPs: silu(a) * b."""

    def __init__(self):
        super().__init__()

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return F.silu(a) * b


def get_inputs():
    a = torch.randn(batch_size, intermediate_size)
    b = torch.randn(batch_size, intermediate_size)
    return [a, b]


def get_init_inputs():
    return []
