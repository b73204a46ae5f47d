# problem: examples/softmax/reference.py
# expect: compile_error
# The kernel calls tl.fast_softmax, which does not exist in triton.language. On a GPU this is a
# CompilationError at the first launch; under TRITON_INTERPRET=1 it surfaces as an error raised
# from inside the kernel at launch time (an AttributeError wrapped by the interpreter).
import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def softmax_kernel(out_ptr, in_ptr, row_stride, n_cols, BLOCK_SIZE: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_SIZE)
    mask = cols < n_cols
    x = tl.load(in_ptr + row * row_stride + cols, mask=mask, other=-float("inf"))
    y = tl.fast_softmax(x, axis=0)  # no such function
    tl.store(out_ptr + row * row_stride + cols, y, mask=mask)


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        x = x.contiguous()
        out = torch.empty_like(x)
        softmax_kernel[(x.shape[0],)](out, x, x.stride(0), x.shape[1], BLOCK_SIZE=triton.next_power_of_2(x.shape[1]))
        return out
