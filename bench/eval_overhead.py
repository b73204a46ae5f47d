"""Cost of the judge's isolation: per-evaluation wall time vs a fresh `import torch, triton`.

Prints, from one run: the cost of each kernel protection (a warm process that imported torch
and Triton forks a child that reports once: plain fork, then with namespaces, a private
/proc, seccomp), the isolation cost of one evaluation (two confined children) against a
fresh interpreter importing torch and triton (target <= 0.1), the median wall time of
evaluating a trivial problem through the evaluator (warm pool, reference cached after the
first call; taken in turns with the fresh imports) and its ratio (target <= 0.1), and
evaluations per minute with 1 and 2 workers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch  # the warm process the children are forked from
import triton  # noqa: F401
from triton.runtime.interpreter import InterpretedFunction

from evaluator import EvalConfig, Evaluator, Problem, Status, confine
from evaluator.gpu_compile import GpuCompiler
from evaluator.sandbox import Channel, Limits, spawn

RELU = Path(__file__).resolve().parent.parent / "examples" / "relu"
CONFIG = EvalConfig(device="cpu")


def fresh_import_s() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, triton"], check=True)
    return time.perf_counter() - start


def _solution() -> Any:
    spec = importlib.util.spec_from_file_location("relu_solution", RELU / "solution.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compile_check_s(runs: int = 5) -> float:
    """Median time of the sm_90 compile check of the example's kernel (TTIR to PTX, as a
    cpu child does it; ptxas runs in the worker and is cached per PTX)."""
    kernel = InterpretedFunction(_solution().relu_kernel.fn)
    x = torch.rand(16, 1024)
    args, times = (x, torch.empty_like(x), x.numel()), []
    for _ in range(runs + 1):
        start = time.perf_counter()
        GpuCompiler(assemble_here=False).check(kernel, args, {"BLOCK_SIZE": 1024})
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def forward_ms() -> tuple[float, float]:
    """`bench/forward_cost.py` in a fresh interpreter (the monitor's audit hook cannot be
    removed from a process)."""
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("forward_cost.py"))],
                          check=True, capture_output=True, text=True,
                          env={**os.environ, "TRITON_INTERPRET": "1"})
    plain, watched = done.stdout.split()[-2:]
    return float(plain), float(watched)


def _report(chan: Channel, job: dict[str, Any]) -> None:
    chan.report({"ok": True})


def spawn_s(boundary: confine.Boundary | None, runs: int = 20) -> float:
    """Median time to fork one child with these layers, read its report, reap it."""
    limits = Limits(timeout_s=30, memory_mb=1024, max_processes=64, max_file_bytes=1 << 20)
    reachable = confine.python_paths()
    times = []
    for _ in range(runs):
        scratch = tempfile.mkdtemp(prefix="drkernel-bench-")
        plan = confine.Plan(boundary, scratch, "cpu", reachable) if boundary else None
        start = time.perf_counter()
        child = spawn(_report, {}, limits, scratch, plan, 1 << 20)
        assert child.report() is not None
        child.finish()
        times.append(time.perf_counter() - start)
        shutil.rmtree(scratch, ignore_errors=True)
    return statistics.median(times)


def layer_costs() -> list[tuple[str, float]]:
    full = confine.probe("cpu")
    steps: list[tuple[str, confine.Boundary | None]] = [("fork only", None)]
    if full.kernel_layers:
        namespaces = dataclasses.replace(full, private_proc=False, seccomp=False)
        steps += [("+ user, pid, mount, net, ipc namespaces", namespaces),
                  ("+ private /proc", dataclasses.replace(namespaces,
                                                          private_proc=full.private_proc)),
                  ("+ seccomp (the full boundary)", full)]
    return [(name, spawn_s(b)) for name, b in steps]


async def evaluation_and_fresh_s(problem: Problem, candidate: str,
                                 rounds: int = 7) -> tuple[float, float]:
    """Median evaluation and median fresh import, taken in turns (one import, then three
    evaluations) so that both see the same load on a noisy machine."""
    async with Evaluator(workers=1, config=CONFIG) as ev:
        await ev.evaluate(problem, candidate)  # fills the reference cache
        evaluations, imports = [], []
        for _ in range(rounds):
            imports.append(fresh_import_s())
            for _ in range(3):
                start = time.perf_counter()
                result = await ev.evaluate(problem, candidate)
                evaluations.append(time.perf_counter() - start)
                assert result.status is Status.CORRECT, result.error
    return statistics.median(evaluations), statistics.median(imports)


async def per_minute(problem: Problem, candidate: str, workers: int, jobs: int = 24) -> float:
    async with Evaluator(workers=workers, config=CONFIG) as ev:
        await asyncio.gather(*(ev.evaluate(problem, candidate) for _ in range(workers)))
        start = time.perf_counter()
        await asyncio.gather(*(ev.evaluate(problem, candidate) for _ in range(jobs)))
        return jobs / (time.perf_counter() - start) * 60


async def main() -> None:
    problem = Problem((RELU / "reference.py").read_text(), name="relu")
    candidate = (RELU / "solution.py").read_text()
    evaluation, fresh = await evaluation_and_fresh_s(problem, candidate)
    costs = layer_costs()
    base = costs[0][1]
    print(f"median fresh import torch+triton: {fresh * 1000:8.1f} ms")
    for name, cost in costs:
        print(f"child, {name:40s} {cost * 1000:7.1f} ms  (+{(cost - base) * 1000:6.1f} ms)")
    isolation = 2 * costs[-1][1]  # a reference and a candidate child
    print(f"isolation per evaluation (2 children): {isolation * 1000:8.1f} ms; ratio to a "
          f"fresh import {isolation / fresh:6.3f}   (target <= 0.1)")
    print(f"median evaluation (warm pool):   {evaluation * 1000:8.1f} ms "
          f"(5 trials, probes and the sm_90 compile check included)")
    print(f"ratio evaluation / fresh import:  {evaluation / fresh:8.3f}   (target <= 0.1)")
    print(f"of which the sm_90 compile check of its kernel: {compile_check_s() * 1000:6.1f} ms")
    for workers in (1, 2):
        rate = await per_minute(problem, candidate, workers)
        print(f"evaluations per minute, {workers} worker(s): {rate:8.0f}")
    plain, watched = forward_ms()
    print(f"one forward under the interpreter: {plain:6.1f} ms plain, {watched:6.1f} ms under "
          "the monitor, CUDA emulation and op tracer")


if __name__ == "__main__":
    asyncio.run(main())
