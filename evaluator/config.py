"""Evaluation settings: KernelGYM's defaults (what Dr.Kernel was trained on), all overridable."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

Device = Literal["cpu", "cuda", "auto"]
Policy = Literal["standard", "strict", "kernelgym"]
POLICIES: tuple[Policy, ...] = ("standard", "strict", "kernelgym")
DISTRIBUTIONS = ("native", "normal", "uniform")
LARGE_MAGNITUDE = 100.0
"""Under `standard` and `strict` the last trial draws floating inputs uniformly from ±this
(where the reference's output stays finite): logits near 90 overflow `exp` in fp32 (a softmax
without the max subtraction), as does `exp(2z)` for z over 44 (a tanh written through it)."""


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    device: Device = "auto"
    policy: Policy = "standard"
    """What fails: `standard` passes honest partial work (torch does part, the candidate's own
    Triton kernels do real work) and reports it; `strict` fails any heavy torch compute;
    `kernelgym` fails only what KernelGYM fails (decoys), reporting every other finding."""
    correct_trials: int = 5
    """Trials on fresh random inputs; all must pass."""
    perf_trials: int = 100
    warmup: int = 3
    atol: float = 1e-2
    rtol: float = 1e-2
    max_relative_error: float | None = 0.05
    """Also bound the whole output's relative L2 error: where every value is below `atol`,
    `allclose` alone accepts almost any output (a norm missing its square root)."""
    seed: int = 42
    """Seeds the models' weights (the same before building `Model` and `ModelNew`), and under
    `kernelgym` the trials' inputs too, as KernelGYM does."""
    trial_seed: int | None = None
    """Under `standard` and `strict`, the trials' inputs come from a seed drawn afresh for each
    evaluation (recorded in `EvalResult.trial_seed`), so that no candidate can know them in
    advance; set it to repeat an evaluation's inputs."""
    distributions: tuple[str, ...] = DISTRIBUTIONS
    """Input distribution per trial, cycled: the problem's own `get_inputs`, then redrawn
    from a normal and a uniform distribution, so constant or identity outputs cannot pass."""
    scale: bool = True
    """On cpu, run a problem whose sizes exceed the judge's memory and time budget at smaller
    values of its module-level size constants (reported in the result's `scaling`)."""
    check_hacks: bool = True
    profile: bool = True
    l2_flush: bool = True
    rerun_speedup_above: float = 3.0
    """A speedup above this is measured again and the second measurement is kept."""
    timeout_s: float = 120.0
    """Wall-clock limit for one child process (reference or candidate)."""
    memory_mb: int = 4096
    """Address-space allowance for one child beyond what the pre-imported worker already maps."""
    max_processes: int = 512
    max_output_bytes: int = 1 << 20
    """Captured stdout and stderr of a child; writes beyond this are cut."""
    max_source_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"device must be cpu, cuda or auto, not {self.device!r}")
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, not {self.policy!r}")
        for name in ("correct_trials", "perf_trials", "max_processes", "memory_mb"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        for name in ("atol", "rtol", "timeout_s", "rerun_speedup_above"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)}")
        if self.atol < 0 or self.rtol < 0:
            raise ValueError("atol and rtol must be >= 0")
        if self.max_relative_error is not None and self.max_relative_error <= 0:
            raise ValueError("max_relative_error must be positive (or None to turn it off)")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {self.timeout_s}")
        unknown = set(self.distributions) - set(DISTRIBUTIONS)
        if not self.distributions or unknown:
            raise ValueError(f"distributions must be a non-empty subset of {DISTRIBUTIONS}")

    def replace(self, **changes: Any) -> EvalConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["distributions"] = list(self.distributions)
        return data


def resolve_device(device: Device) -> Literal["cpu", "cuda"]:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class Problem:
    """A KernelBench-format reference: defines `Model`, `get_inputs`, `get_init_inputs`."""

    reference: str
    name: str = "problem"
