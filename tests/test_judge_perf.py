"""The cuda verdict's arithmetic, from the measurements a GPU child reports (no GPU here)."""

from __future__ import annotations

import pytest

from evaluator import EvalResult, HackKind, Status, reward
from evaluator.judge import add_performance
from evaluator.timing import stats


def measured(ref_ms: float, kernel_ms: float, **perf: object) -> EvalResult:
    result = EvalResult(status=Status.CORRECT, compiled=True, correct=True, device="cuda")
    return add_performance(result, stats([ref_ms] * 3), {"timing": stats([kernel_ms] * 3),
                                                        **perf})


def test_speedup_is_reference_over_kernel_mean() -> None:
    result = measured(2.0, 0.5)
    assert result.speedup == pytest.approx(4.0)
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


def test_timing_stats() -> None:
    s = stats([1.0, 2.0, 3.0, 10.0])
    assert (s["mean_ms"], s["median_ms"], s["min_ms"], s["max_ms"], s["trials"]) == (
        4.0, 2.5, 1.0, 10.0, 4)
