"""The verdict of one evaluation: plain dataclasses that serialise to JSON and back."""

from __future__ import annotations

import dataclasses
import enum
import json
from dataclasses import dataclass, field
from typing import Any

EVALUATOR_VERSION = "0.1.0"


class Status(enum.StrEnum):
    CORRECT = "correct"
    INCORRECT = "incorrect"
    COMPILE_ERROR = "compile_error"
    RUNTIME_ERROR = "runtime_error"
    TIMEOUT = "timeout"
    CRASHED = "crashed"
    HACKED = "hacked"


class HackKind(enum.StrEnum):
    """Reward-hacking patterns the judge can name (see research catalogue §4)."""

    DECOY = "decoy"  # no own Triton launch, or launched kernels whose output is unused
    FRAMEWORK_COMPUTE = "framework_compute"  # the reference's work still runs in PyTorch
    OUTPUT_CACHING = "output_caching"  # memoised results, identity-keyed outputs
    INPUT_MUTATION = "input_mutation"
    OUTPUT_ALIASING = "output_aliasing"  # output shares storage with an input
    UNINITIALIZED_OUTPUT = "uninitialized_output"  # output depends on garbage memory
    SIDE_STREAM = "side_stream"
    BACKGROUND_WORK = "background_work"  # threads or processes
    LAZY_TENSOR = "lazy_tensor"  # tensor subclass or deferred output
    PATCHING = "patching"  # timers, torch, comparison functions, the harness
    INTROSPECTION = "introspection"  # frames, gc
    IO_ACCESS = "io_access"  # files, environment, network
    PRECISION_DOWNCAST = "precision_downcast"
    NONFINITE_OUTPUT = "nonfinite_output"
    SANDBOX_ESCAPE = "sandbox_escape"  # ctypes, run-time compiled code, ways around the watch

    def __str__(self) -> str:
        return self.value


@dataclass
class Hack:
    kind: HackKind
    evidence: str
    static: bool = False
    """True when the evidence comes from reading the source, not from running it."""


@dataclass
class ErrorInfo:
    type: str
    message: str
    traceback: str = ""


@dataclass
class TimingStats:
    mean_ms: float
    median_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    trials: int


@dataclass
class KernelRow:
    name: str
    device_time_us: float
    count: int
    own: bool = False
    """The candidate's own Triton kernel."""


@dataclass
class Profile:
    kernels: list[KernelRow] = field(default_factory=list)
    triton_launches: list[str] = field(default_factory=list)
    """Names of the candidate's own Triton kernels launched in the forward."""
    triton_time_coverage: float | None = None
    torch_compute_ops: list[str] = field(default_factory=list)


@dataclass
class EvalResult:
    status: Status
    compiled: bool = False
    correct: bool = False
    trials_passed: int = 0
    trials_total: int = 0
    max_abs_diff: float | None = None
    mean_abs_diff: float | None = None
    error: ErrorInfo | None = None
    hacks: list[Hack] = field(default_factory=list)
    ref_ms: float | None = None
    kernel_ms: float | None = None
    speedup: float | None = None
    speedup_note: str = ""
    """Why speedup is null, when it is."""
    ref_timing: TimingStats | None = None
    kernel_timing: TimingStats | None = None
    device: str = ""
    profile: Profile = field(default_factory=Profile)
    reward: float = 0.0
    evaluator_version: str = EVALUATOR_VERSION
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalResult:
        data = dict(data)
        data["status"] = Status(data["status"])
        if data.get("error"):
            data["error"] = ErrorInfo(**data["error"])
        data["hacks"] = [
            Hack(kind=HackKind(h["kind"]), evidence=h["evidence"], static=h.get("static", False))
            for h in data.get("hacks", [])
        ]
        for key in ("ref_timing", "kernel_timing"):
            if data.get(key):
                data[key] = TimingStats(**data[key])
        profile = dict(data.get("profile") or {})
        profile["kernels"] = [KernelRow(**k) for k in profile.get("kernels", [])]
        data["profile"] = Profile(**profile)
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> EvalResult:
        return cls.from_dict(json.loads(text))


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
