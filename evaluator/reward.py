"""The training reward, the same function the refinement loop ranks turns with.

Default = KernelGYM's `calculate_reward_speedup` as configured for Dr.Kernel-14B:
0 for any failure or hack; else 0.5·correct + 0.5·min(speedup, 3), plus 0.5·coverage of
device time by the candidate's own Triton kernels (the profiling reward). On cpu, where
neither speed nor coverage is measured, a correct kernel earns `correct_weight` (0.5), or with
`estimated_coverage` also the coverage term on the judge's estimate of the Triton share of the
work (`evaluator/work.py`), so that partial work earns less than full work there too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from evaluator.result import EvalResult, Status

_FENCE = re.compile(r"```[ \t]*(python|py|python3)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True, kw_only=True)
class RewardConfig:
    correct_weight: float = 0.5
    speedup_weight: float = 0.5
    speedup_cap: float = 3.0
    speedup_lower_bound: float = 0.0
    """Speedups below this earn no speed reward."""
    coverage_weight: float = 0.5
    coverage_reward: bool = True
    estimated_coverage: bool = False
    """Where device time was not measured (cpu), use the estimated Triton share of the work."""
    failure_penalty: float = 0.0
    hack_penalty: float = 0.0


def reward(result: EvalResult, config: RewardConfig | None = None) -> float:
    cfg = config or RewardConfig()
    if result.status is Status.HACKED:
        return cfg.hack_penalty
    if result.status is not Status.CORRECT:
        return cfg.failure_penalty
    value = cfg.correct_weight
    if result.speedup is not None and result.speedup >= cfg.speedup_lower_bound:
        value += cfg.speedup_weight * min(result.speedup, cfg.speedup_cap)
    coverage = result.profile.triton_time_coverage
    if coverage is None and cfg.estimated_coverage:
        coverage = result.profile.triton_work_share
    if cfg.coverage_reward and coverage is not None:
        value += cfg.coverage_weight * coverage
    return value


def keep_probability(result: EvalResult, low: float = 0.3, width: float = 0.1) -> float:
    """Profiling-based rejection sampling: chance of keeping a turn in the training batch.

    Correct turns are kept with clip((coverage - low) / width, 0, 1), on the device-time
    coverage or, where that was not measured (cpu), the estimated Triton share of the work;
    other turns, and turns with neither, are always kept.
    """
    coverage = result.profile.triton_time_coverage
    if coverage is None:
        coverage = result.profile.triton_work_share
    if result.status is not Status.CORRECT or coverage is None:
        return 1.0
    return min(1.0, max(0.0, (coverage - low) / width))


def extract_code(text: str) -> str | None:
    """The last fenced python (or untagged) code block of a model response."""
    blocks = [m.group(2) for m in _FENCE.finditer(text)]
    return blocks[-1].strip() + "\n" if blocks else None


def compute_score(data_source: str, solution_str: str, ground_truth: str,
                  extra_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """verl-style reward function: `ground_truth` is the reference source.

    `extra_info` may carry `eval_config` and `reward_config` dicts of overrides.
    """
    from evaluator.api import evaluate
    from evaluator.config import EvalConfig, Problem

    extra = extra_info or {}
    code = extract_code(solution_str)
    if code is None or "ModelNew" not in code:
        return {"score": 0.0, "status": "format_error", "speedup": 0.0, "result": "{}"}
    cfg = EvalConfig(**extra.get("eval_config", {}))
    result = evaluate(Problem(ground_truth, name=str(data_source)), code, cfg)
    score = reward(result, RewardConfig(**extra.get("reward_config", {})))
    return {"score": score, "status": result.status.value, "speedup": result.speedup or 0.0,
            "result": json.dumps(result.to_dict())}
