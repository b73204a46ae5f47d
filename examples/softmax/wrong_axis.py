# Reduces over the wrong axis: one program per column (softmax over dim 0 instead of dim 1).
import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def softmax_kernel(out_ptr, in_ptr, row_stride, n_rows, BLOCK_SIZE: tl.constexpr):
    col = tl.program_id(0)
    rows = tl.arange(0, BLOCK_SIZE)
    mask = rows < n_rows
    x = tl.load(in_ptr + rows * row_stride + col, mask=mask, other=-float("inf"))
    x = x - tl.max(x, axis=0)
    num = tl.exp(x)
    tl.store(out_ptr + rows * row_stride + col, num / tl.sum(num, axis=0), mask=mask)


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        n_rows, n_cols = x.shape
        out = torch.empty_like(x)
        softmax_kernel[(n_cols,)](out, x, x.stride(0), n_rows, BLOCK_SIZE=triton.next_power_of_2(n_rows))
        return out
