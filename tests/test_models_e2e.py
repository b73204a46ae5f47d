"""The user's own model, end to end on CPU: extract the GPT-style example's hot modules,
have the judge accept them as references, batch them with a scripted backend that answers two
problems with our own Triton kernels, apply, and check the optimised model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from batch_support import answer
from transformers import AutoTokenizer

from evaluator import EvalConfig, Evaluator
from evaluator.api import ProblemError
from refine import LoopConfig
from refine.backends import Generation
from refine.backends.scripted import ScriptedBackend
from refine.chat import Prompt
from refine.config import SamplingConfig
from server.batch import (
    BatchProgress,
    BatchSettings,
    LocalSolver,
    ResultStore,
    TurnBudget,
    find_problems,
    loop_config_for,
    run_batch,
)
from server.cli import main

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "examples" / "models"
KERNELS = {"rms_norm": MODELS / "kernels" / "rms_norm.py",
           "swi_glu": MODELS / "kernels" / "swi_glu.py"}


class ScriptedByReference:
    """Answers each problem from its own script, recognised by the reference the first
    prompt quotes; a problem with no script gets an answer with no code (format error)."""

    name = "scripted"
    dead = False

    def __init__(self, tokenizer: Any, scripts: dict[str, list[str]]):
        self.tokenizer = tokenizer
        self.scripts = {ref.strip(): ScriptedBackend(tokenizer, r) for ref, r in scripts.items()}
        self.other = ScriptedBackend(tokenizer, ["I cannot help with this one."] * 20)

    async def generate(self, prompt: Prompt, sampling: SamplingConfig) -> Generation:
        first = prompt.messages[0]["content"]
        for reference, backend in self.scripts.items():
            if reference in first:
                return await backend.generate(prompt, sampling)
        return await self.other.generate(prompt, sampling)

    async def close(self) -> None:
        return None


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gpt-problems")
    assert main(["extract", f"{MODELS / 'gpt.py'}:TinyGPT", "--inputs", "example_inputs",
                 "--out", str(out), "--top", "5", "--device", "cpu"]) == 0
    return out


def _manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "manifest.json").read_text())


def test_identical_submodules_are_one_problem_with_their_paths(extracted: Path) -> None:
    manifest = _manifest(extracted)
    problems = {p["name"]: p for p in manifest["problems"]}
    assert {"attention", "swi_glu", "rms_norm"} <= problems.keys()
    norm = problems["rms_norm"]
    assert norm["instances"] == 5 and norm["how"] == "source"
    assert norm["paths"] == ["blocks.0.norm1", "blocks.0.norm2", "blocks.1.norm1",
                             "blocks.1.norm2", "norm"]
    assert problems["attention"]["paths"] == ["blocks.0.attn", "blocks.1.attn"]
    assert problems["swi_glu"]["init_args"] == "[64, 192]"
    assert problems["swi_glu"]["flop_share"] > 0.5
    shares = [p["time_share"] for p in manifest["problems"]]
    assert all(0 < share <= 1 for share in shares) and sum(shares) <= 1.0  # measured: noisy
    source = (extracted / problems["attention"]["file"]).read_text()
    assert "def apply_rotary" in source and "ROPE_BASE = 10000.0" in source
    assert "gpt" not in source.split('"""')[2], "a problem must not import the user's file"


@pytest.mark.asyncio
async def test_the_judge_accepts_every_problem_as_a_reference(extracted: Path) -> None:
    """A reference that fails to load or run raises ProblemError; a candidate that is only a
    copy of it gets a verdict (it launches no Triton kernel) instead."""
    config = EvalConfig(device="cpu", trial_seed=7, correct_trials=1, timeout_s=60)
    async with Evaluator(workers=2, config=config) as ev:
        for problem in find_problems([str(extracted)]):
            copy = problem.source.replace("class Model(", "class ModelNew(")
            try:
                result = await ev.evaluate(problem.source, copy)
            except ProblemError as exc:
                pytest.fail(f"{problem.name} is not a usable reference: {exc}")
            assert result.status.value == "hacked", problem.name


@pytest.mark.asyncio
async def test_batch_then_apply_swaps_in_the_triton_modules(
        extracted: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    problems = find_problems([str(extracted)])
    by_name = {p.path.stem: p for p in problems}
    scripts = {by_name[n].source: [answer(k.read_text())] for n, k in KERNELS.items()}
    results = tmp_path / "results"
    settings = BatchSettings(out=results, concurrency=2, turns=1, max_turns=1)
    config = EvalConfig(device="cpu", trial_seed=7, correct_trials=2, timeout_s=120)
    async with Evaluator(workers=2, config=config) as ev:
        solver = LocalSolver(ScriptedByReference(tokenizer, scripts), ev,
                             loop_config_for(LoopConfig(), settings),
                             TurnBudget([p.name for p in problems], 1, 1), None)
        records = await run_batch(problems, solver, ResultStore(results), settings,
                                  BatchProgress(enabled=False))
    outcome = {Path(r.path).stem: r.outcome for r in records}
    assert outcome["rms_norm"] == outcome["swi_glu"] == "solved", records
    assert outcome["attention"] == "failed"

    out = tmp_path / "optimized.py"
    applied = _drkernel("apply", extracted / "manifest.json", results, "--out", out)
    assert applied.returncode == 0, applied.stderr
    assert "outputs match" in applied.stdout and "kept as it is" in applied.stdout
    assert "not measured" in applied.stdout
    check = json.loads(_python(CHECK, out).stdout)
    assert check["max_abs_diff"] < 1e-2
    assert check["swapped"] == ["ModelNew"] * 5 + ["ModelNew"] * 2
    assert check["attention"] == "Attention", "no kernel: kept as it is"
    for name in ("norm", "mlp"):
        assert check["original_ops"][name], "the probe sees torch's compute ops"
        assert check["optimized_ops"][name] == [], "the swapped module computes with Triton"


def test_apply_refuses_a_kernel_whose_parameters_differ(extracted: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    renamed = KERNELS["rms_norm"].read_text().replace("self.weight", "self.scale")
    _record(results, extracted / "problems" / "rms_norm.py", renamed)
    out = tmp_path / "optimized.py"
    applied = _drkernel("apply", extracted / "manifest.json", results, "--out", out)
    assert applied.returncode == 1
    assert "parameter names differ" in applied.stderr and "'scale'" in applied.stderr
    assert not out.exists()


def test_apply_refuses_a_model_that_computes_something_else(extracted: Path,
                                                            tmp_path: Path) -> None:
    results = tmp_path / "results"
    wrong = KERNELS["rms_norm"].read_text().replace("x * rstd * w", "x * w")
    _record(results, extracted / "problems" / "rms_norm.py", wrong)
    out = tmp_path / "optimized.py"
    applied = _drkernel("apply", extracted / "manifest.json", results, "--out", out)
    assert applied.returncode == 1
    assert "does not compute the original's outputs" in applied.stderr
    assert not out.exists() and not list(tmp_path.glob(".optimized*"))


def test_a_hot_module_that_cannot_be_written_is_skipped_with_its_reason(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["extract", f"{MODELS / 'cnn.py'}:SmallCNN", "--inputs", "[[2, 3, 32, 32]]",
                 "--out", str(tmp_path), "--top", "8", "--device", "cpu"]) == 0
    manifest = _manifest(tmp_path)
    (skipped,) = manifest["skipped"]
    assert skipped["module_class"] == "DataGate" and skipped["paths"] == ["gate"]
    assert "GateConfig, not a literal" in skipped["reason"]
    assert "control flow" in skipped["reason"]
    convs = [p for p in manifest["problems"] if p["module_class"] == "ConvBNAct"]
    assert sorted(p["instances"] for p in convs) == [1, 1, 2, 2]
    assert "skipped DataGate" in capsys.readouterr().out


def _record(results: Path, problem: Path, kernel: str) -> None:
    from server.batch import ProblemRecord

    store = ResultStore(results)
    relative = store.save_kernel("rms_norm", kernel)
    store.append(ProblemRecord(name="rms_norm", path=str(problem), outcome="solved",
                               kernel=relative, best_turn=1))


def _drkernel(*args: object) -> subprocess.CompletedProcess[str]:
    """The CLI in a fresh process: without CUDA, Triton must be imported after
    TRITON_INTERPRET=1 is set, which this test process (the judge's tests) may already have
    done the other way."""
    return subprocess.run([sys.executable, "-m", "server.cli", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=False)


def _python(script: str, *args: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-c", script, *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, "TRITON_INTERPRET": "1"})
    assert done.returncode == 0, done.stderr
    return done


CHECK = """
import copy, importlib.util, json, sys
import torch
from torch.utils._python_dispatch import TorchDispatchMode

COMPUTE = {"mm", "addmm", "bmm", "matmul", "mul", "rsqrt", "pow", "mean", "silu", "sigmoid"}


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Ops(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(func._schema.name.split("::")[-1])
        return func(*args, **(kwargs or {}))


def compute_ops(module, x):
    with torch.no_grad(), Ops() as ops:
        module(x)
    return sorted(ops.names & COMPUTE)


gpt = load("examples/models/gpt.py", "gpt_user")
torch.manual_seed(7)
model = gpt.TinyGPT().eval()
for p in model.parameters():  # trained-looking weights, not the constructor's
    p.data.add_(0.1 * torch.randn_like(p))
optimized = load(sys.argv[1], "gpt_optimized").optimize(copy.deepcopy(model))
tokens = torch.randint(0, gpt.VOCAB, (3, 24))
with torch.no_grad():
    diff = (optimized(tokens) - model(tokens)).abs().max().item()
norms = [optimized.get_submodule(p) for p in
         ("blocks.0.norm1", "blocks.0.norm2", "blocks.1.norm1", "blocks.1.norm2", "norm")]
mlps = [b.mlp for b in optimized.blocks]
x = torch.randn(3, 24, 64)
print(json.dumps({
    "max_abs_diff": diff,
    "swapped": [type(m).__name__ for m in norms + mlps],
    "attention": type(optimized.blocks[0].attn).__name__,
    "original_ops": {"norm": compute_ops(model.norm, x),
                     "mlp": compute_ops(model.blocks[0].mlp, x)},
    "optimized_ops": {"norm": compute_ops(optimized.norm, x), "mlp": compute_ops(mlps[0], x)},
}))
"""
