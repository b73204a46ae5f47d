# Normalises over the wrong axis: statistics per column (over the batch) instead of per row.
import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def layernorm_kernel(x_ptr, w_ptr, b_ptr, y_ptr, stride, M, eps, BLOCK_SIZE: tl.constexpr):
    col = tl.program_id(0)
    rows = tl.arange(0, BLOCK_SIZE)
    mask = rows < M
    x = tl.load(x_ptr + rows * stride + col, mask=mask, other=0.0)
    mean = tl.sum(x, axis=0) / M
    xc = tl.where(mask, x - mean, 0.0)
    var = tl.sum(xc * xc, axis=0) / M
    rstd = 1.0 / tl.sqrt(var + eps)
    w = tl.load(w_ptr + col)
    b = tl.load(b_ptr + col)
    tl.store(y_ptr + rows * stride + col, xc * rstd * w + b, mask=mask)


class ModelNew(nn.Module):
    def __init__(self, eps: float):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        M, N = x.shape
        y = torch.empty_like(x)
        layernorm_kernel[(N,)](x, weight, bias, y, x.stride(0), M, self.eps,
                               BLOCK_SIZE=triton.next_power_of_2(M))
        return y
