# problem: examples/relu/reference.py
# expect: crashed
# Allocates 1 GiB blocks forever and touches every page (b"\x01" * n is a real memset, not a
# lazy zero mapping). The judge must bound the child's memory (RLIMIT_AS / cgroup) and turn
# the MemoryError or the OOM kill into a verdict (crashed, or runtime_error for MemoryError).
import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def relu_kernel(x_ptr, out_ptr, n_elements, BLOCK_SIZE: tl.constexpr):
    pid = tl.program_id(axis=0)
    offsets = pid * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offsets < n_elements
    tl.store(out_ptr + offsets, tl.maximum(tl.load(x_ptr + offsets, mask=mask), 0.0), mask=mask)


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        out = torch.empty_like(x)
        relu_kernel[(triton.cdiv(x.numel(), 1024),)](x, out, x.numel(), BLOCK_SIZE=1024)
        hoard = []
        while True:
            hoard.append(b"\x01" * (1 << 30))
        return out
