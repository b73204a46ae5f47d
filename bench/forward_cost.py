"""One forward of the relu example under Triton's interpreter: plain, then as a cpu child runs
it (the monitor's hooks, the CUDA emulation and the op tracer). Prints both medians in ms.

Run with TRITON_INTERPRET=1 (`bench/eval_overhead.py` does); the monitor's audit hook stays in
this process for good.
"""

from __future__ import annotations

import importlib.util
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from evaluator import harness, monitor

SOLUTION = Path(__file__).resolve().parent.parent / "examples" / "relu" / "solution.py"


def median_ms(call: Callable[[], object], runs: int = 30) -> float:
    call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    torch.set_num_threads(1)
    harness.warm_up("cpu")
    spec = importlib.util.spec_from_file_location("relu_solution", SOLUTION)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model, x = module.ModelNew(), torch.rand(16, 1024)
    plain = median_ms(lambda: model(x.clone()))
    mon = monitor.Monitor(candidate_path=str(SOLUTION))
    monitor.install(mon)
    harness.emulate_gpu(torch.device("cpu"))
    mon.active = True

    def watched() -> None:
        with harness.traced(False, x.numel(), mon) as tracer:
            tracer.forward = True
            model(x.clone())

    print(f"{plain:.2f} {median_ms(watched):.2f}")


if __name__ == "__main__":
    main()
