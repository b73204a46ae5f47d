"""`drkernel eval REFERENCE.py CANDIDATE.py`: judge one candidate, no model involved."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from evaluator import EvalConfig, EvalResult, Evaluator, Problem
from evaluator.api import ProblemError


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "eval", help="judge a Triton ModelNew against a KernelBench Model")
    p.add_argument("reference", help="KernelBench-format source defining Model")
    p.add_argument("candidate", help="source defining ModelNew")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    p.add_argument("--trials", type=int, default=5, help="correctness trials")
    p.add_argument("--perf-trials", type=int, default=100, help="timed calls (cuda)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per child process")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    return p


def run(args: argparse.Namespace) -> int:
    try:
        reference = _read(args.reference)
        candidate = _read(args.candidate)
        config = EvalConfig(device=args.device, correct_trials=args.trials,
                            perf_trials=args.perf_trials, timeout_s=args.timeout)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        print(f"drkernel eval: {exc}", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(_evaluate(Problem(reference, name=args.reference), candidate,
                                       config))
    except ProblemError as exc:
        print(f"drkernel eval: the reference is not a usable problem: {exc}", file=sys.stderr)
        return 2
    print(result.to_json() if args.json else summary(result))
    return 0


async def _evaluate(problem: Problem, candidate: str, config: EvalConfig) -> EvalResult:
    async with Evaluator(workers=1, config=config) as ev:
        return await ev.evaluate(problem, candidate)


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
    lines += [f"hack: {h.kind} - {h.evidence}" for h in result.hacks]
    if result.error:
        lines.append(f"error: {result.error.type}: {result.error.message}")
        if result.error.traceback:
            lines.append(result.error.traceback.rstrip())
    lines.append(f"reward: {result.reward:.3f}")
    return "\n".join(lines)
