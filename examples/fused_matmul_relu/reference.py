import torch
import torch.nn as nn

M = 64
K = 64
N = 64


class Model(nn.Module):
    """Matrix multiplication followed by ReLU: relu(A @ B)."""

    def __init__(self):
        super().__init__()

    def forward(self, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
        return torch.relu(torch.matmul(A, B))


def get_inputs():
    A = torch.randn(M, K)
    B = torch.randn(K, N)
    return [A, B]


def get_init_inputs():
    return []
