"""Sizing KernelBench problems down for the cpu judge: reading, rewriting, choosing, measuring."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from evaluator import scaling
from evaluator.scaling import Budget, Cost

KERNELBENCH = Path(__file__).resolve().parents[2] / "shared" / "kernelbench"

RELU_19 = '''import torch
import torch.nn as nn

class Model(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)

batch_size = 4096
dim = 393216

def get_inputs():
    x = torch.rand(batch_size, dim)
    return [x]

def get_init_inputs():
    return []
'''

CONV = '''import torch
import torch.nn as nn

class Model(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, bias_shape):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size)
        self.bias = nn.Parameter(torch.randn(bias_shape))

    def forward(self, x):
        return torch.relu(self.conv(x)) + self.bias

batch_size = 128
in_channels  = 64
out_channels = 128
height = width = 128
kernel_size = 3
bias_shape = (out_channels, 1, 1)

def get_inputs():
    return [torch.rand(batch_size, in_channels, height, width)]

def get_init_inputs():
    return [in_channels, out_channels, kernel_size, bias_shape]
'''

ATTENTION = '''import torch
import torch.nn as nn

class Model(nn.Module):
    def __init__(self, n_embd, n_head):
        super().__init__()
        assert n_embd % n_head == 0
        self.attn = nn.MultiheadAttention(n_embd, n_head, batch_first=True)

    def forward(self, x):
        return self.attn(x, x, x, need_weights=False)[0]

batch_size = 128
seq_len = 512
n_embd = 768
n_head = 8

def get_inputs():
    return [torch.rand(batch_size, seq_len, n_embd)]

def get_init_inputs():
    return [n_embd, n_head]
'''


def load(source: str) -> ModuleType:
    module = ModuleType("problem_under_test")
    exec(compile(source, "<problem>", "exec"), module.__dict__)
    return module


BUDGET = Budget()


def measure(source: str, budget: Budget = BUDGET) -> Cost | None:
    try:
        module = load(source)
    except Exception:
        return None
    return scaling.measure_on_meta(module, budget)


def test_slots_read_kernelbench_constant_forms() -> None:
    source = ("N = 2048 * 2\nheight = width = 128\ndepth, h, w = 16, 32, 32\n"
              "input_shape = (32768,)\nbias_shape = (out_channels, 1, 1)\nrate = 0.5\n"
              "flag = True\n")
    found = {s.key: s.value for s in scaling.slots(source)}
    assert found == {"N": 4096, "height": 128, "width": 128, "depth": 16, "h": 32, "w": 32,
                     "input_shape[0]": 32768, "bias_shape[1]": 1, "bias_shape[2]": 1}


def test_structural_and_small_constants_are_left_alone() -> None:
    found = {s.key: scaling.scalable(s) for s in scaling.slots(
        "kernel_size = 32\nstride = 16\nn_head = 32\nnum_groups = 32\nin_channels = 3\n"
        "batch_size = 2\ndim = 4096\n")}
    assert found == {"kernel_size": False, "stride": False, "n_head": False,
                     "num_groups": False, "in_channels": False, "batch_size": True, "dim": True}


def test_apply_changes_values_only_and_keeps_lines() -> None:
    source = "N = 2048 * 2  # square\nheight = width = 128\nx = N + 1\n"
    out = scaling.apply(source, {"N": (4096, 100), "height": (128, 9), "width": (128, 9)})
    assert out == "N = 100  # square\nheight = width = 9\nx = N + 1\n"


def test_apply_leaves_a_candidates_own_values() -> None:
    candidate = "dim = 1000\nbatch_size = 4096\n"
    out = scaling.apply(candidate, {"dim": (393216, 9001), "batch_size": (4096, 95)})
    assert out == "dim = 1000\nbatch_size = 95\n"


def test_unaligned_sizes_avoid_block_multiples() -> None:
    for value in (4096, 393216, 128, 1000, 17, 64, 16, 24):
        for factor in (0.99, 0.5, 0.1, 0.013):
            used = scaling.resized(value, factor, "unaligned")
            assert used % 8 != 0 and 2 <= used <= value
    assert scaling.resized(768, 0.06, "aligned") == 48  # 768 / 16 keeps the factor 3
    assert scaling.resized(1000, 0.3, "aligned") == 250


def test_a_problem_that_fits_is_not_scaled() -> None:
    small = RELU_19.replace("4096", "16").replace("393216", "1024")
    assert scaling.fit(small, measure) is None


def test_relu_19_is_scaled_into_the_budget_with_unaligned_sizes() -> None:
    budget = Budget()
    plan = scaling.fit(RELU_19, measure, budget)
    assert plan is not None
    assert set(plan.constants) == {"batch_size", "dim"}
    assert all(used % 8 and used < written for written, used in plan.constants.values())
    cost = measure(plan.source)
    assert cost is not None and cost.ratio(budget) <= 1.0
    assert plan.input_shapes == [[plan.constants["batch_size"][1], plan.constants["dim"][1]]]


def test_derived_shapes_follow_the_scaled_constants() -> None:
    plan = scaling.fit(CONV, measure)
    assert plan is not None
    module = load(plan.source)
    assert module.bias_shape == (module.out_channels, 1, 1)
    assert module.kernel_size == 3 and "kernel_size" not in plan.constants


def test_shape_rules_fall_back_to_aligned_sizes() -> None:
    plan = scaling.fit(ATTENTION, measure)
    assert plan is not None
    module = load(plan.source)
    assert module.n_embd % module.n_head == 0 and module.n_head == 8
    assert module.n_embd < 768


def test_sizes_the_forward_rejects_are_not_used() -> None:
    """Layer norm over the last axis, whose size the problem ties to the channel count: no
    common scaling keeps 65 == 64 + 1, so only the batch size shrinks."""
    source = CONV.replace("torch.relu(self.conv(x)) + self.bias",
                          "torch.nn.functional.layer_norm(x, (self.conv.in_channels + 1,))")
    source = source.replace("height = width = 128", "height = 128\nwidth = 65")
    plan = scaling.fit(source, measure)
    assert plan is not None and set(plan.constants) == {"batch_size"}
    module = load(plan.source)
    assert (module.width, module.in_channels) == (65, 64) and module.batch_size < 128


def test_flops_count_toward_the_budget() -> None:
    matmul = RELU_19.replace("torch.relu(x)", "x @ x.T").replace("393216", "64")
    cost = measure(matmul)
    assert cost is not None and cost.flops == 2 * 4096 * 4096 * 64


def test_an_unbuildable_problem_runs_as_written() -> None:
    assert scaling.fit(RELU_19.replace("return [x]", "raise ValueError('no')"), measure) is None


@pytest.mark.skipif(not KERNELBENCH.is_dir(), reason="KernelBench problems not present")
@pytest.mark.parametrize("name", ["level1/19_ReLU.py", "level2/1_Conv2D_ReLU_BiasAdd.py",
                                  "level3/1_MLP.py"])
def test_real_kernelbench_problems_fit(name: str) -> None:
    source = (KERNELBENCH / name).read_text()
    plan = scaling.fit(source, measure)
    assert plan is not None
    cost = measure(plan.source)
    assert cost is not None and cost.ratio(Budget()) <= 1.0
