"""Cost of the judge's isolation: per-evaluation wall time vs a fresh `import torch, triton`.

Prints, from one run: the median wall time of evaluating a trivial problem through the
evaluator (warm pool, reference cached after the first call), the median time of a fresh
interpreter importing torch and triton, their ratio (target <= 0.2), and evaluations per
minute with 1 and 2 workers.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

from evaluator import EvalConfig, Evaluator, Problem, Status

RELU = Path(__file__).resolve().parent.parent / "examples" / "relu"
CONFIG = EvalConfig(device="cpu")


def fresh_import_s(runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch, triton"], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def per_evaluation_s(problem: Problem, candidate: str, runs: int = 15) -> float:
    async with Evaluator(workers=1, config=CONFIG) as ev:
        await ev.evaluate(problem, candidate)  # fills the reference cache
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            result = await ev.evaluate(problem, candidate)
            times.append(time.perf_counter() - start)
            assert result.status is Status.CORRECT, result.error
    return statistics.median(times)


async def per_minute(problem: Problem, candidate: str, workers: int, jobs: int = 24) -> float:
    async with Evaluator(workers=workers, config=CONFIG) as ev:
        await asyncio.gather(*(ev.evaluate(problem, candidate) for _ in range(workers)))
        start = time.perf_counter()
        await asyncio.gather(*(ev.evaluate(problem, candidate) for _ in range(jobs)))
        return jobs / (time.perf_counter() - start) * 60


async def main() -> None:
    problem = Problem((RELU / "reference.py").read_text(), name="relu")
    candidate = (RELU / "solution.py").read_text()
    evaluation = await per_evaluation_s(problem, candidate)
    fresh = fresh_import_s()
    print(f"median evaluation (warm pool):   {evaluation * 1000:8.1f} ms")
    print(f"median fresh import torch+triton: {fresh * 1000:8.1f} ms")
    print(f"ratio evaluation / fresh import:  {evaluation / fresh:8.3f}   (target <= 0.2)")
    for workers in (1, 2):
        rate = await per_minute(problem, candidate, workers)
        print(f"evaluations per minute, {workers} worker(s): {rate:8.0f}")


if __name__ == "__main__":
    asyncio.run(main())
