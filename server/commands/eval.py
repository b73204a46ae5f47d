"""`drkernel eval REFERENCE.py CANDIDATE.py`: judge one candidate, no model involved."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from evaluator import Boundary, EvalConfig, EvalResult, Evaluator, Problem
from evaluator.api import ProblemError
from evaluator.config import POLICIES


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "eval", help="judge a Triton ModelNew against a KernelBench Model")
    p.add_argument("reference", help="KernelBench-format source defining Model")
    p.add_argument("candidate", help="source defining ModelNew")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    p.add_argument("--policy", choices=POLICIES, default="standard",
                   help="what fails: standard (honest partial work passes), strict (any torch "
                        "work beyond glue fails), kernelgym (only KernelGYM's decoy rule fails)")
    p.add_argument("--trials", type=int, default=5, help="correctness trials")
    p.add_argument("--perf-trials", type=int, default=100, help="timed calls (cuda)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per child process")
    p.add_argument("--no-scale", dest="scale", action="store_false",
                   help="on cpu, run the problem at its own sizes even when they exceed the "
                        "judge's budget (by default they are scaled down and reported)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    return p


def run(args: argparse.Namespace) -> int:
    try:
        reference = _read(args.reference)
        candidate = _read(args.candidate)
        config = EvalConfig(device=args.device, policy=args.policy, correct_trials=args.trials,
                            perf_trials=args.perf_trials, timeout_s=args.timeout,
                            scale=args.scale)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        print(f"drkernel eval: {exc}", file=sys.stderr)
        return 2
    try:
        outcome = asyncio.run(_evaluate(Problem(reference, name=args.reference), candidate,
                                        config))
    except ProblemError as exc:
        print(f"drkernel eval: the reference is not a usable problem: {exc}", file=sys.stderr)
        return 2
    result, boundary = outcome
    if args.json:
        print(json.dumps({**result.to_dict(), "sandbox": boundary.to_dict()},
                         ensure_ascii=False))
    else:
        print(summary(result) + f"\nsandbox: {_describe(boundary)}")
    return 0


async def _evaluate(problem: Problem, candidate: str,
                    config: EvalConfig) -> tuple[EvalResult, Boundary]:
    async with Evaluator(workers=1, config=config) as ev:
        return await ev.evaluate(problem, candidate), ev.boundary


def _describe(boundary: Boundary) -> str:
    layers = ", ".join(boundary.kernel_layers) or "none"
    state = "confined" if boundary.confined else "NOT fully confined"
    notes = f" ({'; '.join(boundary.notes)})" if boundary.notes else ""
    return f"{state}: {layers}; memory {boundary.memory_limit}{notes}"


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def summary(result: EvalResult) -> str:
    lines = [f"status: {result.status}  (device {result.device}, {result.elapsed_s:.2f} s)",
             f"trials: {result.trials_passed}/{result.trials_total}"]
    if result.max_abs_diff is not None:
        lines.append(f"max abs diff: {result.max_abs_diff:.3g}  "
                     f"mean abs diff: {result.mean_abs_diff or 0:.3g}")
    if result.speedup is not None:
        lines.append(f"speedup: {result.speedup:.3f}x  (ref {result.ref_ms:.4f} ms, "
                     f"kernel {result.kernel_ms:.4f} ms)")
    else:
        lines.append(f"speedup: n/a ({result.speedup_note})")
    if result.scaling is not None:
        sizes = ", ".join(f"{k} {a}->{b}" for k, (a, b) in result.scaling.constants.items())
        lines.append(f"scaled to fit the cpu judge: {sizes}; inputs "
                     f"{' '.join('x'.join(map(str, s)) for s in result.scaling.input_shapes)}")
    lines += [f"hack: {h.kind} - {h.evidence}" for h in result.hacks]
    lines += [f"finding ({result.policy} policy, not failing): {h.kind} - {h.evidence}"
              for h in result.findings]
    share = result.profile.triton_work_share
    if share is not None and result.profile.torch_compute_ops:
        lines.append(f"triton share of the work: {share:.0%} ({result.profile.work_share_source}"
                     f"); torch still ran {', '.join(result.profile.torch_compute_ops)}")
    if result.error:
        lines.append(f"error: {result.error.type}: {result.error.message}")
        if result.error.traceback:
            lines.append(result.error.traceback.rstrip())
    lines.append(f"reward: {result.reward:.3f}")
    return "\n".join(lines)
