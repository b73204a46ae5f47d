"""The cuda verdict from what a GPU child reports, and the timing loop (no GPU here)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from evaluator import EvalResult, HackKind, Status, reward
from evaluator.judge import Report, add_performance
from evaluator.timing import WallClock, stats, time_forward

CFG = {"atol": 1e-2, "rtol": 1e-2, "warmup": 1, "perf_trials": 6, "l2_flush": True}
WANT = [torch.ones(4), torch.zeros(4)]


def reference(ref_ms: float) -> Report:
    return Report({"counts": [1, 1], "timing": stats([ref_ms] * 3)}, list(WANT))


def measured(ref_ms: float, kernel_ms: float, timed: list[torch.Tensor] | None = None,
             **perf: Any) -> EvalResult:
    result = EvalResult(status=Status.CORRECT, compiled=True, correct=True, device="cuda")
    outputs = list(WANT) if timed is None else timed
    header = {"timing": stats([kernel_ms] * 3), "timed_counts": {"0": 1, "1": 1}, **perf}
    return add_performance(result, reference(ref_ms), Report(header, outputs), CFG)


def test_speedup_is_reference_over_kernel_mean() -> None:
    result = measured(2.0, 0.5)
    assert result.status is Status.CORRECT and result.speedup == pytest.approx(4.0)
    assert (result.ref_ms, result.kernel_ms) == (2.0, 0.5)
    assert result.kernel_timing is not None and result.kernel_timing.trials == 3


def test_profile_gives_kernel_table_and_coverage_for_the_reward() -> None:
    profile = {"kernels": [{"name": "relu_kernel", "device_time_us": 8.0, "count": 3,
                            "own": True},
                           {"name": "elementwise_kernel", "device_time_us": 2.0, "count": 3,
                            "own": False}],
               "coverage": 0.8}
    result = measured(1.0, 0.5, profile=profile)
    assert result.profile.triton_time_coverage == 0.8
    assert [k.name for k in result.profile.kernels if k.own] == ["relu_kernel"]
    assert reward(result) == pytest.approx(0.5 + 0.5 * 2.0 + 0.5 * 0.8)


def test_side_stream_launch_turns_a_correct_kernel_into_a_hack() -> None:
    result = measured(1.0, 0.01, side_stream=True)
    assert result.status is Status.HACKED and not result.correct
    assert [h.kind for h in result.hacks] == [HackKind.SIDE_STREAM]
    assert reward(result) == 0.0


def test_a_wrong_output_while_timed_is_caught() -> None:
    result = measured(1.0, 0.01, timed=[torch.ones(4), torch.ones(4)])
    assert result.status is Status.HACKED
    assert [h.kind for h in result.hacks] == [HackKind.OUTPUT_CACHING]


def test_patching_during_timing_is_caught() -> None:
    result = measured(1.0, 0.01, patched=["torch.cuda.Event.elapsed_time"])
    assert result.status is Status.HACKED
    assert [h.kind for h in result.hacks] == [HackKind.PATCHING]


def test_timing_loop_rotates_input_sets_and_returns_each_sets_last_output() -> None:
    calls: list[float] = []

    class Double(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append(float(x[0]))
            return x * 2

    sets = [[torch.full((3,), float(k))] for k in range(3)]
    timing, timed = time_forward(Double(), sets, {**CFG, "perf_trials": 7}, WallClock())
    assert timing["trials"] == 7 and timing["min_ms"] >= 0
    assert calls == [0.0, 0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 0.0]  # 1 warm-up, then rotation
    assert sorted(timed) == [0, 1, 2]
    assert all(torch.equal(timed[k][0], torch.full((3,), 2.0 * k)) for k in range(3))


def test_timing_stats() -> None:
    s = stats([1.0, 2.0, 3.0, 10.0])
    assert (s["mean_ms"], s["median_ms"], s["min_ms"], s["max_ms"], s["trials"]) == (
        4.0, 2.5, 1.0, 10.0, 4)
