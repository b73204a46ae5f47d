import torch
import torch.nn as nn

batch_size = 16
dim = 1024


class Model(nn.Module):
    """Simple model that performs a ReLU activation."""

    def __init__(self):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)


def get_inputs():
    # torch.rand (non-negative) on purpose, as in KernelBench L1/19: on these inputs ReLU is the
    # identity, so a plain copy passes a check that only uses the native inputs.
    x = torch.rand(batch_size, dim)
    return [x]


def get_init_inputs():
    return []
