"""The pieces of `drkernel extract`: cutting a class out of its file, constructor capture,
choosing the units, the traced fallback, bad targets, and the Amdahl estimate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from server.batch import find_problems
from server.cli import main
from server.models.apply import amdahl
from server.models.capture import recording
from server.models.extract import extract, units
from server.models.source_cut import CutError, cut_class
from server.models.target import Target, TargetError, load

MODELS = Path(__file__).resolve().parents[1] / "examples" / "models"

FILE = '''\
import math
import os.path
import numpy as np
import torch
from torch import nn

SCALE = 2.0
UNUSED = 3


def helper(x):
    return x * SCALE


class Base(nn.Module):
    pass


class Thing(Base):
    def __init__(self, n):
        super().__init__()
        self.w = nn.Parameter(torch.ones(n))

    def forward(self, x):
        return helper(x) * self.w + math.pi


class Other(nn.Module):
    def forward(self, x):
        return np.sum(x)
'''


def test_a_cut_class_keeps_what_it_needs_and_nothing_else() -> None:
    cut = cut_class(FILE, "Thing")
    assert cut.kept == ["math", "torch", "nn", "SCALE", "helper", "Base", "Thing"]
    assert "UNUSED" not in cut.source and "numpy" not in cut.source and "Other" not in cut.source
    namespace: dict[str, object] = {}
    exec(cut.source, namespace)
    assert namespace["Thing"](2)(torch.zeros(2)).tolist() == pytest.approx([math_pi(), math_pi()])


def math_pi() -> float:
    import math

    return math.pi


@pytest.mark.parametrize(("source", "message"), [
    ("from .layers import act\nclass A:\n    def f(self):\n        return act\n",
     "relative import"),
    ("import mypkg\nclass A:\n    x = mypkg.y\n", "not the standard library or torch"),
    ("class A:\n    def f(self):\n        return missing_name\n", "'missing_name'"),
    ("def A():\n    pass\n", "not defined at the top level"),
])
def test_a_class_that_is_not_self_contained_is_refused(source: str, message: str) -> None:
    with pytest.raises(CutError, match=message):
        cut_class(source, "A")


def test_constructor_arguments_are_recorded_as_called() -> None:
    class Norm(torch.nn.Module):
        def __init__(self, dim: int, *, eps: float = 1e-5, **extra: object):
            super().__init__()
            dim = dim * 2  # changed after entry: the record keeps the caller's value
            self.weight = torch.nn.Parameter(torch.ones(dim))

    with recording() as recorder:
        norm = Norm(4, eps=0.1, affine=False)
        linear = torch.nn.Linear(3, 5, bias=False)
    call = recorder.of(norm)
    assert call is not None
    assert call.positional == [("dim", 4)] and call.keywords == {"eps": 0.1, "affine": False}
    linear_call = recorder.of(linear)
    assert linear_call is not None
    assert linear_call.positional[:3] == [("in_features", 3), ("out_features", 5),
                                          ("bias", False)]


def test_units_descend_through_blocks_and_stop_at_layers() -> None:
    loaded = load(Target(f"{MODELS / 'gpt.py'}:TinyGPT", "", "example_inputs"),
                  torch.device("cpu"))
    found = units(loaded.model)
    assert "blocks.0.attn" in found and "blocks.1.mlp" in found and "norm" in found
    assert "blocks.0" not in found and "blocks.0.attn.qkv" not in found
    assert found[0] == "embed" and found[-1] == "head"


TRACED = '''\
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Config:
    dim: int
    hidden: int


class Gated(nn.Module):
    """A config object as constructor argument: only its traced graph can be written."""

    def __init__(self, config):
        super().__init__()
        self.up = nn.Linear(config.dim, config.hidden)
        self.down = nn.Linear(config.hidden, config.dim)
        self.gate = nn.Parameter(torch.randn(config.hidden))

    def forward(self, x):
        return self.down(F.gelu(self.up(x)) * torch.sigmoid(self.gate))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(Gated(Config(32, 64)) for _ in range(3))

    def forward(self, x):
        for layer in self.layers:
            x = x + layer(x)
        return x
'''


def test_a_module_without_a_literal_constructor_is_written_from_its_traced_graph(
        tmp_path: Path) -> None:
    user = tmp_path / "user_model.py"
    user.write_text(TRACED)
    result = extract(Target(f"{user}:Net", "", "[[4, 32]]"), tmp_path / "out",
                     device=torch.device("cpu"))
    (problem,) = result.manifest.problems
    assert (problem.how, problem.instances, problem.init_args) == ("fx_trace", 3, "[]")
    assert "gate drawn from a normal" in problem.note
    source = (tmp_path / "out" / problem.file).read_text()
    code = source.split('"""', 2)[2]
    assert "user_model" not in code and "Config" not in code
    assert "_place(self, 'up', nn.Linear(32, 64, True, None, None))" in source
    assert find_problems([str(tmp_path / "out")])[0].name == "problems/gated"


def test_bad_targets_get_a_clear_error(capsys: pytest.CaptureFixture[str],
                                       tmp_path: Path) -> None:
    user = tmp_path / "user_model.py"
    user.write_text("import torch\nN = 3\ndef make():\n    return 5\n")
    cases = [
        (f"{user}:N", "", "[[2]]", "is a int, not a class or function"),
        (f"{user}:make", "", "[[2]]", "not an nn.Module class nor a function returning one"),
        (f"{user}:Nope", "", "[[2]]", "defines no 'Nope'"),
        (f"{tmp_path / 'absent.py'}:X", "", "[[2]]", "no such file"),
        (f"{MODELS / 'gpt.py'}:SwiGLU", "[64, 192]", "[[2, 32]]",
         "does not run on these inputs"),
        (f"{MODELS / 'gpt.py'}:RMSNorm", "[8]", "[{\"shape\": [2], \"dtype\": \"complex\"}]",
         "unknown dtype"),
        (f"{MODELS / 'gpt.py'}:RMSNorm", "[8, 1, 2, 3]", "[[2, 8]]", "takes from 2 to 3"),
    ]
    for spec, init, inputs, message in cases:
        code = main(["extract", spec, "--init", init, "--inputs", inputs,
                     "--out", str(tmp_path / "out"), "--device", "cpu"])
        assert code == 2, spec
        assert message in capsys.readouterr().err, spec


def test_a_target_may_be_a_module_path_with_keyword_arguments(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="cannot import"):
        load(Target("no_such_package.models:X", "", "[[2]]"), torch.device("cpu"))
    loaded = load(Target("torch.nn:Linear", json.dumps({"in_features": 4, "out_features": 2}),
                         "[[3, 4]]"), torch.device("cpu"))
    assert loaded.model(*loaded.inputs).shape == (3, 2)


def test_amdahl() -> None:
    assert amdahl([(0.5, 2.0), (0.25, 4.0)]) == pytest.approx(1 / (0.25 + 0.25 + 0.0625))
    assert amdahl([(0.5, 2.0), (0.2, None)]) is None
    assert amdahl([]) is None
