import torch
import torch.nn as nn

batch_size = 32
hidden_size = 256
eps = 1e-6


class Model(nn.Module):
    """RMSNorm over the last dimension with a learned weight (Llama style)."""

    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        # Random around 1 so that a kernel ignoring the weight is caught.
        self.weight = nn.Parameter(1.0 + 0.1 * torch.randn(hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rms = torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return x * rms * self.weight


def get_inputs():
    x = torch.randn(batch_size, hidden_size)
    return [x]


def get_init_inputs():
    return [hidden_size, eps]
