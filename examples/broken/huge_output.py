# problem: examples/relu/reference.py
# expect: crashed
# Prints ~300 MB to stdout, then returns a correct result computed by its own kernel. Not a
# cheat: the judge must survive it (drain or discard the child's stdout, cap what it keeps,
# never buffer it all in the server) and still reach the verdict. A judge that treats the
# flood as an error (runtime_error) is defensible too; a hung or dead judge is not.
import sys

import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def relu_kernel(x_ptr, out_ptr, n_elements, BLOCK_SIZE: tl.constexpr):
    pid = tl.program_id(axis=0)
    offsets = pid * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offsets < n_elements
    x = tl.load(x_ptr + offsets, mask=mask, other=0.0)
    tl.store(out_ptr + offsets, tl.maximum(x, 0.0), mask=mask)


_LINE = "x" * (1 << 20)  # 1 MiB


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        for _ in range(300):
            print(_LINE)
        sys.stdout.flush()
        x = x.contiguous()
        out = torch.empty_like(x)
        n = x.numel()
        relu_kernel[(triton.cdiv(n, 1024),)](x, out, n, BLOCK_SIZE=1024)
        return out
