"""The judge: run a candidate Triton `ModelNew` against a KernelBench `Model`, safely.

Imports nothing of `refine` or `server`, so an RL trainer can use it alone.
"""

from evaluator.api import Evaluator, evaluate, evaluate_async
from evaluator.config import EvalConfig, Problem, resolve_device
from evaluator.confine import Boundary
from evaluator.result import (
    EVALUATOR_VERSION,
    ErrorInfo,
    EvalResult,
    Hack,
    HackKind,
    KernelRow,
    OpWork,
    Profile,
    Scaling,
    Status,
    TimingStats,
)
from evaluator.reward import RewardConfig, compute_score, extract_code, keep_probability, reward

__all__ = [
    "EVALUATOR_VERSION",
    "Boundary",
    "ErrorInfo",
    "EvalConfig",
    "EvalResult",
    "Evaluator",
    "Hack",
    "HackKind",
    "KernelRow",
    "OpWork",
    "Problem",
    "Profile",
    "RewardConfig",
    "Scaling",
    "Status",
    "TimingStats",
    "compute_score",
    "evaluate",
    "evaluate_async",
    "extract_code",
    "keep_probability",
    "resolve_device",
    "reward",
]
