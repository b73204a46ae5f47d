"""The training reward: KernelGYM's defaults, its knobs, the verl entry point."""

from __future__ import annotations

import json

import pytest

from evaluator import (
    EvalResult,
    Hack,
    HackKind,
    Profile,
    RewardConfig,
    Status,
    compute_score,
    extract_code,
    keep_probability,
    reward,
)
from tests.judge_support import EXAMPLES


def correct(speedup: float | None = None, coverage: float | None = None) -> EvalResult:
    return EvalResult(status=Status.CORRECT, compiled=True, correct=True, speedup=speedup,
                      profile=Profile(triton_time_coverage=coverage))


@pytest.mark.parametrize("status", [s for s in Status if s not in (Status.CORRECT,)])
def test_every_failure_and_hack_earns_nothing(status: Status) -> None:
    result = EvalResult(status=status, speedup=2.0)
    if status is Status.HACKED:
        result.hacks = [Hack(HackKind.DECOY, "no launch")]
    assert reward(result) == 0.0


def test_default_matches_the_dr_kernel_14b_recipe() -> None:
    assert reward(correct(speedup=2.0, coverage=0.8)) == pytest.approx(0.5 + 1.0 + 0.4)
    assert reward(correct(speedup=10.0)) == pytest.approx(0.5 + 0.5 * 3.0), "speedup capped at 3"
    assert reward(correct(speedup=0.5)) == pytest.approx(0.75), "lower bound 0: slow still counts"


def test_on_cpu_a_correct_kernel_earns_the_correctness_weight() -> None:
    assert reward(correct(speedup=None, coverage=None)) == pytest.approx(0.5)


def test_weights_cap_bound_and_penalties_are_configurable() -> None:
    cfg = RewardConfig(correct_weight=1.0, speedup_weight=1.0, speedup_cap=2.0,
                       speedup_lower_bound=1.0, coverage_reward=False, failure_penalty=-0.5,
                       hack_penalty=-1.0)
    assert reward(correct(speedup=5.0, coverage=1.0), cfg) == pytest.approx(3.0)
    assert reward(correct(speedup=0.9), cfg) == pytest.approx(1.0)
    assert reward(EvalResult(status=Status.COMPILE_ERROR), cfg) == -0.5
    assert reward(EvalResult(status=Status.HACKED), cfg) == -1.0


@pytest.mark.parametrize(("coverage", "keep"), [(0.1, 0.0), (0.3, 0.0), (0.35, 0.5),
                                                (0.4, 1.0), (0.9, 1.0), (None, 1.0)])
def test_profiling_rejection_sampling_keep_probability(coverage: float | None,
                                                       keep: float) -> None:
    assert keep_probability(correct(speedup=1.0, coverage=coverage)) == pytest.approx(keep)


def test_incorrect_turns_are_never_rejected_by_coverage() -> None:
    assert keep_probability(EvalResult(status=Status.INCORRECT,
                                       profile=Profile(triton_time_coverage=0.0))) == 1.0


def test_extract_code_takes_the_last_python_block() -> None:
    text = "plan\n```python\nfirst = 1\n```\nthen\n```python\nsecond = 2\n```\nbye"
    assert extract_code(text) == "second = 2\n"
    assert extract_code("no code here") is None
    assert extract_code("```\nuntagged = 3\n```") == "untagged = 3\n"


def test_compute_score_judges_a_model_response() -> None:
    reference = (EXAMPLES / "relu" / "reference.py").read_text()
    solution = (EXAMPLES / "relu" / "solution.py").read_text()
    response = f"<think>...</think>\nHere it is:\n```python\n{solution}```\n"
    out = compute_score("kernelbench", response, reference,
                        {"eval_config": {"device": "cpu", "correct_trials": 2}})
    assert out["score"] == pytest.approx(0.5), out["result"]
    assert out["status"] == "correct"
    assert json.loads(out["result"])["trials_total"] == 2


def test_compute_score_without_code_is_a_format_error() -> None:
    out = compute_score("kernelbench", "I cannot do that.", "class Model: ...")
    assert out == {"score": 0.0, "status": "format_error", "speedup": 0.0, "result": "{}"}
