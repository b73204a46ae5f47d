"""The verdict's in-child defences: GPU compilation on cpu, the tracer's witnessed records,
callbacks that outlive a call, output structure, large-magnitude trials and trial seeds."""

from __future__ import annotations

import gc
import signal
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

from evaluator import EvalConfig, EvalResult, Profile, Status, callbacks, harness, tracer_guard
from evaluator.gpu_compile import GpuCompileError, GpuCompiler, assemble
from evaluator.monitor import Monitor, OpTracer
from evaluator.result import CompiledKernel
from evaluator.worker import Worker
from refine.feedback import render_feedback
from tests.judge_support import EXAMPLES, FIXTURES, Judge

HACKS = FIXTURES / "hacks"


# ---------------------------------------------------------------- GPU compilation on cpu


def _scale(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(y_ptr + offs, tl.load(x_ptr + offs, mask=mask) * 2.0, mask=mask)


def _dot(a_ptr, b_ptr, c_ptr, BLOCK: tl.constexpr):
    r = tl.arange(0, BLOCK)
    a = tl.load(a_ptr + r[:, None] * BLOCK + r[None, :])
    b = tl.load(b_ptr + r[:, None] * BLOCK + r[None, :])
    tl.store(c_ptr + r[:, None] * BLOCK + r[None, :], tl.dot(a, b))


def _host_helper(block: Any) -> Any:
    return np.maximum(block, 0)


def _calls_python(x_ptr, n, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    tl.store(x_ptr + offs, _host_helper(tl.load(x_ptr + offs, mask=offs < n)), mask=offs < n)


def _calls_numpy(x_ptr, n, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs, mask=offs < n)
    tl.store(x_ptr + offs, np.tanh(x), mask=offs < n)


def test_gpu_compiler_reports_what_ptxas_and_the_layout_need() -> None:
    compiler = GpuCompiler()
    x, y = torch.randn(1000), torch.empty(1000)
    stats = compiler.check(InterpretedFunction(_scale), (x, y, 1000), {"BLOCK": 256})
    assert stats.name == "_scale" and stats.num_warps == 4
    assert stats.registers is not None and stats.registers > 0, compiler.unavailable
    assert stats.spill_bytes == 0
    a = torch.randn(32, 32)
    dot = compiler.check(InterpretedFunction(_dot), (a, a, torch.empty(32, 32)),
                         {"BLOCK": 32, "num_warps": 8})
    assert dot.num_warps == 8 and dot.shared_bytes > 0
    assert [s.name for s in compiler.stats] == ["_scale", "_dot"]


def test_gpu_compiler_compiles_each_specialisation_once() -> None:
    compiler = GpuCompiler()
    kernel = InterpretedFunction(_scale)
    x, y = torch.randn(1000), torch.empty(1000)
    first = compiler.check(kernel, (x, y, 1000), {"BLOCK": 256})
    assert compiler.check(kernel, (x.clone(), y, 1000), {"BLOCK": 256}) is first
    compiler.check(kernel, (x, y, 1000), {"BLOCK": 512})  # a new constexpr: a new kernel
    compiler.check(kernel, (x.half(), y.half(), 1000), {"BLOCK": 256})  # a new signature
    assert len(compiler.stats) == 3


def test_ptx_left_to_the_worker_assembles_to_the_same_counts() -> None:
    """A cpu child may start no process: it keeps the PTX, and the worker runs ptxas."""
    args: tuple[Any, ...] = (torch.randn(1000), torch.empty(1000), 1000)
    here = GpuCompiler().check(InterpretedFunction(_scale), args, {"BLOCK": 256})
    later = GpuCompiler(assemble_here=False).check(InterpretedFunction(_scale), args,
                                                   {"BLOCK": 256})
    assert later.registers is None and ".entry _scale" in later.ptx and here.ptx == ""
    assert assemble(later.ptx) == (here.registers, here.spill_bytes)
    assert assemble("this is not PTX") == (None, None)


@pytest.mark.parametrize("body", [_calls_python, _calls_numpy], ids=["python", "numpy"])
def test_gpu_compiler_rejects_what_only_the_interpreter_runs(body: Any) -> None:
    compiler = GpuCompiler()
    kernel = InterpretedFunction(body)
    with pytest.raises(GpuCompileError, match=f"{body.__name__} does not compile for cuda sm_90"):
        compiler.check(kernel, (torch.randn(16), 16), {"BLOCK": 16})
    with pytest.raises(GpuCompileError):  # the refusal is remembered, not compiled again
        compiler.check(kernel, (torch.randn(16), 16), {"BLOCK": 16})
    assert compiler.stats == []


# ---------------------------------------------------------------- the tracer's records


@pytest.fixture
def traced_relu() -> Iterator[tuple[OpTracer, tracer_guard.Guard]]:
    tracer = OpTracer()
    held = tracer_guard.guard(tracer)
    with tracer:
        torch.relu(torch.randn(8))
        yield tracer, held


def test_untouched_records_pass(traced_relu: tuple[OpTracer, tracer_guard.Guard]) -> None:
    tracer, held = traced_relu
    assert tracer.ops["relu"] == 1 and tracer_guard.on_top(tracer)
    assert held.check() == ""


@pytest.mark.parametrize("tamper, problem", [
    (lambda t: dict.clear(t.ops), "cleared or changed"),
    (lambda t: t.ops.clear(), "cleared or changed"),
    (lambda t: t.ops.__setitem__("relu", 0), "lowered"),
    (lambda t: setattr(t, "ops", __import__("collections").Counter()), "replaced"),
    (lambda t: t.ops.log.clear(), "rewritten"),
    (lambda t: setattr(t.ops, "witness", __import__("hashlib").sha256()), "witness replaced"),
], ids=["dict.clear", "clear", "lowered", "replaced", "log cleared", "new witness"])
def test_tampered_records_are_told_apart(traced_relu: tuple[OpTracer, tracer_guard.Guard],
                                         tamper: Any, problem: str) -> None:
    tracer, held = traced_relu
    tamper(tracer)
    assert problem in held.check()


@pytest.mark.parametrize("tamper, problem", [
    (lambda t: list.clear(t.torch_only), "changed behind its back"),
    (lambda t: t.torch_only[-1][1].zero_(), "changed behind its back"),
    (lambda t: t.torch_only.pop(0), "changed behind its back"),
    (lambda t: t.torch_only.log.clear(), "rewritten"),
    (lambda t: setattr(t, "torch_only", []), "replaced"),
], ids=["list.clear", "zeroed", "popped", "log cleared", "replaced"])
def test_kept_torch_results_are_witnessed(tamper: Any, problem: str) -> None:
    """What `torch_made` compares outputs with (torch's own results) cannot be hidden either."""
    tracer = OpTracer(output_numel=8)
    held = tracer_guard.guard(tracer)
    with tracer:
        torch.relu(torch.randn(8) * 2)
        tamper(tracer)
        held.closing = True
    assert problem in held.check()


def test_kept_torch_results_cannot_be_dropped_through_their_budget() -> None:
    tracer = OpTracer(output_numel=8)
    held = tracer_guard.guard(tracer)
    with tracer:
        torch.relu(torch.randn(8) * 2)
        tracer.torch_only.budget = 1  # the next keep would drop every result
        torch.sigmoid(torch.randn(8) * 2)
        held.closing = True
    assert "changed behind its back" in held.check()


def test_kept_torch_results_trimmed_by_the_judge_pass() -> None:
    tracer = OpTracer(output_numel=8)
    held = tracer_guard.guard(tracer)
    with tracer:
        x = torch.randn(8)
        for _ in range(40):  # more than the tracer keeps: it trims the oldest
            x = torch.sigmoid(x)
        held.closing = True
    assert 0 < len(tracer.torch_only) < 40 and held.check() == ""


def test_a_tracer_exited_and_entered_again_is_told_apart() -> None:
    tracer = OpTracer()
    held = tracer_guard.guard(tracer)
    with tracer:
        tracer.__exit__(None, None, None)
        torch.relu(torch.randn(4))  # unseen
        tracer.__enter__()
        assert tracer_guard.on_top(tracer) and tracer.ops == {}
        held.closing = True
    assert "exited during the call" in held.check()


def test_growing_records_through_the_tracer_are_fine() -> None:
    tracer = OpTracer()
    held = tracer_guard.guard(tracer)
    with tracer:
        x = torch.randn(8)
        for _ in range(3):
            x = torch.sigmoid(x)
        held.closing = True  # as the judge's own `traced` does
    assert tracer.ops["sigmoid"] == 3 and held.check() == ""


# ---------------------------------------------------------------- callbacks left behind


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[callbacks.Baseline, Monitor]]:
    """A baseline in this process, with gc and the signal module put back afterwards."""
    import _signal

    monkeypatch.setattr(gc, "enable", gc.enable)
    for module in (signal, _signal):
        for name in callbacks._SIGNAL_FUNCTIONS:
            if hasattr(module, name):
                monkeypatch.setattr(module, name, getattr(module, name))
    mon = Monitor(candidate_path="/nonexistent/candidate.py")
    was_enabled = gc.isenabled()
    base = callbacks.baseline(mon)
    try:
        yield base, mon
    finally:
        if was_enabled:
            gc.enable()


def test_callbacks_left_by_a_call_are_removed_and_reported(
        settled: tuple[callbacks.Baseline, Monitor]) -> None:
    import builtins
    import weakref

    base, mon = settled
    assert not gc.isenabled()
    ran: list[str] = []
    gc.callbacks.append(lambda phase, info: ran.append(phase))
    target = torch.zeros(1)
    weakref.finalize(target, print, "late")
    signal.signal(signal.SIGUSR2, lambda *_: ran.append("signal"))
    real_len = builtins.len
    builtins.len = lambda obj: 0
    sys.setprofile(lambda *_: None)
    callbacks.settle(base, mon)
    assert builtins.len is real_len
    assert sys.getprofile() is None
    assert signal.getsignal(signal.SIGUSR2) is base.signals[signal.SIGUSR2]
    gc.collect()
    assert ran == []
    kinds = {kind for kind, _ in mon.findings}
    assert kinds == {"background_work", "patching", "introspection"}
    evidence = " ".join(e for _, e in mon.findings)
    for word in ("gc callback", "finalizer", "signal", "builtins len"):
        assert word in evidence
    del target


def test_nothing_left_means_nothing_reported(settled: tuple[callbacks.Baseline, Monitor]) -> None:
    base, mon = settled
    callbacks.settle(base, mon)
    assert mon.findings == []


# ---------------------------------------------------------------- structure, plan and seeds


@pytest.mark.parametrize("out, shape", [
    (torch.zeros(1), "T"), ((torch.zeros(1),), "(T,)"), (([torch.zeros(1)],), "([T],)"),
    ((torch.zeros(1), [torch.zeros(1), torch.zeros(1)]), "(T,[T,T])"),
])
def test_structure_keeps_the_nesting(out: Any, shape: str) -> None:
    assert harness.structure(out) == shape


def test_the_last_trial_is_large_except_under_kernelgym() -> None:
    cfg = EvalConfig().to_dict()
    assert harness.trial_plan(cfg) == ["native", "normal", "uniform", "native", "large"]
    assert harness.trial_plan({**cfg, "policy": "strict", "correct_trials": 2}) == [
        "native", "large"]
    assert harness.trial_plan({**cfg, "correct_trials": 1}) == ["native"]
    assert "large" not in harness.trial_plan({**cfg, "policy": "kernelgym"})


def test_trial_seeds_are_secret_per_problem_except_under_kernelgym_or_when_given() -> None:
    cfg = EvalConfig().to_dict()
    problems = [f"# problem {i}\n" for i in range(8)]
    workers = [Worker(device="cpu"), Worker(device="cpu")]
    drawn = {w._trial_seed(p, cfg) for w in workers for p in problems}
    assert len(drawn) > 8, "each worker draws its own seed for each problem"
    assert workers[0]._trial_seed(problems[0], cfg) == workers[0]._trial_seed(problems[0], cfg)
    assert workers[0]._trial_seed(problems[0], {**cfg, "policy": "kernelgym"}) == 42
    assert workers[0]._trial_seed(problems[0], {**cfg, "trial_seed": 7}) == 7


def test_concise_feedback_shows_the_compilers_report() -> None:
    result = EvalResult(status=Status.CORRECT, profile=Profile(
        compiled=[CompiledKernel("matmul_kernel", 40, 8, 16384, 4)], compile_target="cuda sm_90"))
    text = render_feedback(result, 0.5, "concise")
    assert ("matmul_kernel on cuda sm_90: 40 registers, 8 B spilled, 16384 B shared memory, "
            "4 warps") in text


# ---------------------------------------------------------------- through the judge


@pytest.fixture(scope="module")
def judge() -> Iterator[Judge]:
    j = Judge(workers=2)
    yield j
    j.close()


def test_profile_carries_the_gpu_compilers_report(judge: Judge) -> None:
    result = judge.run(EXAMPLES / "matmul" / "solution.py")
    assert result.status is Status.CORRECT, result.error
    assert result.profile.compile_target == "cuda sm_90"
    (kernel,) = result.profile.compiled
    assert kernel.name in result.profile.triton_launches
    assert kernel.registers and kernel.shared_bytes > 0 and kernel.spill_bytes == 0


def test_interpreter_only_kernel_is_a_compile_error_with_the_compilers_message(
        judge: Judge) -> None:
    result = judge.run(HACKS / "interp_numpy_helper_relu.py")
    assert result.status is Status.COMPILE_ERROR and result.error is not None
    assert "does not compile for cuda sm_90" in result.error.message
    assert "host_relu" in result.error.message


def test_seed_is_recorded_and_repeats_the_evaluation(judge: Judge) -> None:
    path = EXAMPLES / "softmax" / "solution.py"
    secret = EvalConfig(device="cpu")
    first, second = judge.run(path, config=secret), judge.run(path, config=secret)
    assert None not in (first.trial_seed, second.trial_seed)
    assert 42 not in (first.trial_seed, second.trial_seed)
    again = judge.run(path, config=EvalConfig(device="cpu", trial_seed=first.trial_seed))
    assert again.trial_seed == first.trial_seed
    assert again.max_abs_diff == first.max_abs_diff
    assert judge.run(path, config=EvalConfig(device="cpu", policy="kernelgym")).trial_seed == 42


def test_answers_predicted_from_seed_42_fail_on_fresh_seeds(judge: Judge) -> None:
    path = HACKS / "precompute_seed42_lookup.py"
    known = judge.run(path, config=EvalConfig(device="cpu", trial_seed=42))
    assert known.trials_passed == known.trials_total  # the prediction works for seed 42 ...
    fresh = judge.run(path, config=EvalConfig(device="cpu"))
    assert fresh.trials_passed < fresh.trials_total and not fresh.correct  # ... only


@pytest.mark.parametrize("name", ["unsafe_softmax_no_max.py", "unsafe_tanh_exp2z.py"])
def test_unsafe_exp_fails_only_at_large_magnitude(judge: Judge, name: str) -> None:
    standard = judge.run(HACKS / name)
    assert standard.status is Status.INCORRECT and standard.error is not None
    assert "inputs up to ±100" in standard.error.message
    assert standard.trials_passed == standard.trials_total - 1
    strict = judge.run(HACKS / name, config=EvalConfig(device="cpu", policy="strict"))
    assert strict.status is Status.INCORRECT
    kernelgym = judge.run(HACKS / name, config=EvalConfig(device="cpu", policy="kernelgym"))
    assert kernelgym.status is Status.CORRECT  # KernelGYM's own inputs never reach it


def test_nested_output_is_incorrect(judge: Judge) -> None:
    result = judge.run(HACKS / "nested_list_output.py")
    assert result.status is Status.INCORRECT and result.error is not None
    assert "expected T, got ([T],)" in result.error.message
