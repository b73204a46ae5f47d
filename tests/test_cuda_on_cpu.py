"""Code written for CUDA on the cpu judge; KernelBench-sized problems scaled down to fit it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from evaluator import EvalConfig, EvalResult, Problem, Status
from evaluator.api import ProblemError
from tests.judge_support import FIXTURES, ROOT, Judge, header

GPU_CODE = sorted((FIXTURES / "gpu_code").glob("*.py"))

BIG_RELU = '''import torch
import torch.nn as nn

class Model(nn.Module):
    def forward(self, x):
        return torch.relu(x)

batch_size = 4096
dim = 393216

def get_inputs():
    return [torch.randn(batch_size, dim)]

def get_init_inputs():
    return []
'''

RELU_KERNEL = '''import torch
import torch.nn as nn
import triton
import triton.language as tl
{constants}

@triton.jit
def relu_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(out_ptr + offs, tl.maximum(tl.load(x_ptr + offs, mask=mask), 0.0), mask=mask)


class ModelNew(nn.Module):
    def forward(self, x):
        out = torch.empty({shape}, device="cuda")
        n = out.numel()
        relu_kernel[(triton.cdiv(n, 4096),)](x, out, n, BLOCK=4096)
        return out
'''


@pytest.fixture(scope="module")
def judge() -> Iterator[Judge]:
    j = Judge(workers=2)
    yield j
    j.close()


@pytest.mark.parametrize("path", GPU_CODE, ids=lambda p: p.stem)
def test_cuda_code_gets_its_gpu_verdict_on_cpu(judge: Judge, path: Path) -> None:
    result = judge.run(path)
    assert result.status.value == header(path, "expect"), (result.status, result.error,
                                                           result.hacks)
    assert not result.hacks
    if result.status is Status.RUNTIME_ERROR:
        assert result.error is not None and "needs a GPU" in result.error.message


def test_missing_libdevice_function_is_named(judge: Judge) -> None:
    result = judge.run(FIXTURES / "gpu_code" / "gelu_libdevice_gpu_only.py")
    assert result.error is not None and "libdevice.j0" in result.error.message


def _judge_source(judge: Judge, reference: str, candidate: str,
                  config: EvalConfig | None = None) -> EvalResult:
    return judge.call(judge.evaluator.evaluate(Problem(reference, name="big"), candidate,
                                               config))


def test_kernelbench_sized_problem_is_scaled_and_reported(judge: Judge) -> None:
    candidate = RELU_KERNEL.format(constants="", shape="x.shape")
    result = _judge_source(judge, BIG_RELU, candidate)
    assert result.status is Status.CORRECT, (result.status, result.error)
    assert result.scaling is not None
    used = {k: v[1] for k, v in result.scaling.constants.items()}
    assert set(used) == {"batch_size", "dim"} and all(v % 8 for v in used.values())
    assert result.scaling.input_shapes == [[used["batch_size"], used["dim"]]]


def test_a_candidate_redefining_the_constants_sees_the_same_sizes(judge: Judge) -> None:
    candidate = RELU_KERNEL.format(constants="batch_size = 4096\ndim = 393216\n",
                                   shape="(batch_size, dim)")
    result = _judge_source(judge, BIG_RELU, candidate)
    assert result.status is Status.CORRECT, (result.status, result.error)


def test_a_candidate_with_its_own_sizes_keeps_them(judge: Judge) -> None:
    candidate = RELU_KERNEL.format(constants="batch_size = 4096\ndim = 1000\n",
                                   shape="(batch_size, dim)")
    result = _judge_source(judge, BIG_RELU, candidate)
    assert result.status is not Status.CORRECT and result.status is not Status.HACKED


def test_no_scale_runs_the_problem_as_written(judge: Judge) -> None:
    small = BIG_RELU.replace("4096", "16").replace("393216", "1000")
    candidate = RELU_KERNEL.format(constants="", shape="x.shape")
    for scale in (True, False):
        config = EvalConfig(device="cpu", trial_seed=7, scale=scale)
        result = _judge_source(judge, small, candidate, config)
        assert result.status is Status.CORRECT and result.scaling is None
    with pytest.raises(ProblemError):  # 6 GB per input: over the child's memory limit
        _judge_source(judge, BIG_RELU, candidate,
                      EvalConfig(device="cpu", trial_seed=7, scale=False, timeout_s=30))


def test_the_judge_itself_still_sees_the_host() -> None:
    """The emulation answers the problem's and candidate's frames only: torch's own code
    (here `Tensor.__repr__`) and the judge see a cpu tensor."""
    script = (
        "import torch\n"
        "from evaluator import cuda_on_cpu\n"
        "cuda_on_cpu.install()\n"
        "x = torch.ones(2, device='cuda')\n"
        "assert x.is_cuda and x.device.type == 'cuda' and x.get_device() == 0\n"
        "assert \"device='cuda\" not in repr(x)\n"
        "assert torch.cuda.is_available() and torch.cuda.device_count() == 1\n"
        "assert x.cuda() is x and x.to('cuda:0').data_ptr() == x.data_ptr()\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={"TRITON_INTERPRET": "1",
                                                       "PYTHONPATH": str(ROOT)})
    assert done.stdout.strip() == "ok", done.stderr[-2000:]


def test_side_stream_work_counts_as_joined_only_once_something_waits_for_it() -> None:
    """As on a GPU: a stream, an event or the host must wait for a side stream's work before
    its output is read; waiting through another side stream hands the duty on."""
    from evaluator import cuda_on_cpu

    side, other = cuda_on_cpu.Stream(), cuda_on_cpu.Stream()
    with side:
        pass
    assert cuda_on_cpu.unjoined() and not cuda_on_cpu.unjoined()  # reported once
    with side:
        done = side.record_event()
    cuda_on_cpu._default.wait_event(done)
    assert not cuda_on_cpu.unjoined()
    with side:
        pass
    other.wait_stream(side)  # now `other` holds work the default stream never waited for
    assert cuda_on_cpu.unjoined()
    with side:
        pass
    other.wait_stream(side)
    cuda_on_cpu._synchronize()
    assert not cuda_on_cpu.unjoined()
    cuda_on_cpu._set_stream(side)
    cuda_on_cpu._set_stream(cuda_on_cpu._default)
    assert cuda_on_cpu.unjoined()
