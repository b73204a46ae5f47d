# Correct values with an extra leading dimension: (1, batch, dim). torch.allclose broadcasts it
# against the reference's (batch, dim) and says True, so the judge must compare shapes explicitly.
import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def add_mul_kernel(x_ptr, y_ptr, z_ptr, out_ptr, n_elements, BLOCK_SIZE: tl.constexpr):
    pid = tl.program_id(axis=0)
    offsets = pid * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offsets < n_elements
    x = tl.load(x_ptr + offsets, mask=mask)
    y = tl.load(y_ptr + offsets, mask=mask)
    z = tl.load(z_ptr + offsets, mask=mask)
    tl.store(out_ptr + offsets, (x + y) * z, mask=mask)


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        x, y, z = x.contiguous(), y.contiguous(), z.contiguous()
        out = torch.empty_like(x)
        n = out.numel()
        BLOCK_SIZE = 1024
        add_mul_kernel[(triton.cdiv(n, BLOCK_SIZE),)](x, y, z, out, n, BLOCK_SIZE=BLOCK_SIZE)
        return out.unsqueeze(0)  # BUG: shape (1, batch, dim); broadcasts against the reference
