import torch
import torch.nn as nn
import torch.nn.functional as F

batch_size = 32
dim = 256
eps = 1e-5


class Model(nn.Module):
    """Layer normalisation over the last dimension with a given affine weight and bias."""

    def __init__(self, eps: float):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (x.shape[-1],), weight, bias, self.eps)


def get_inputs():
    x = torch.randn(batch_size, dim)
    weight = torch.randn(dim)
    bias = torch.randn(dim)
    return [x, weight, bias]


def get_init_inputs():
    return [eps]
