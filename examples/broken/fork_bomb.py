# problem: examples/relu/reference.py
# expect: timeout
# Forks up to 200 children that sleep forever, then the parent spins forever. Bounded (at most
# 200 processes) so it is safe to run, but forward never returns, and the children outlive the
# evaluation unless the judge kills the whole process group / session (or sets RLIMIT_NPROC).
# After the verdict, no child of this candidate may still be alive.
import os
import time

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
        for _ in range(200):
            try:
                pid = os.fork()
            except OSError:
                break
            if pid == 0:  # child: sleep forever, never return into the harness
                while True:
                    time.sleep(60)
        while True:  # parent: never finishes
            time.sleep(0.1)
        return out
