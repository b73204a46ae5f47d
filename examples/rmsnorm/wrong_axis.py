# Mean of squares taken over the wrong axis (over the batch, per column) instead of per row.
import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def rmsnorm_kernel(x_ptr, w_ptr, y_ptr, stride, M, eps, BLOCK_SIZE: tl.constexpr):
    col = tl.program_id(0)
    rows = tl.arange(0, BLOCK_SIZE)
    mask = rows < M
    x = tl.load(x_ptr + rows * stride + col, mask=mask, other=0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / M + eps)
    w = tl.load(w_ptr + col)
    tl.store(y_ptr + rows * stride + col, x * rstd * w, mask=mask)


class ModelNew(nn.Module):
    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(1.0 + 0.1 * torch.randn(hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        M, N = x.shape
        y = torch.empty_like(x)
        rmsnorm_kernel[(N,)](x, self.weight, y, x.stride(0), M, self.eps, BLOCK_SIZE=triton.next_power_of_2(M))
        return y
