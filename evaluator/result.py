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
class OpWork:
    op: str
    share: float
    """This torch op's work as a share of the reference's whole work (an estimate)."""


@dataclass
class CompiledKernel:
    """What the GPU compiler reported for one of the candidate's kernels (on cpu, where each
    launched kernel is also compiled for `Profile.compile_target`)."""

    name: str
    registers: int | None = None
    """Registers per thread; None where ptxas could not run."""
    spill_bytes: int | None = None
    """Bytes spilled to local memory (stores + loads); None where ptxas could not run."""
    shared_bytes: int = 0
    num_warps: int = 0


@dataclass
class Profile:
    kernels: list[KernelRow] = field(default_factory=list)
    triton_launches: list[str] = field(default_factory=list)
    """Names of the candidate's own Triton kernels launched in the forward."""
    triton_time_coverage: float | None = None
    torch_compute_ops: list[str] = field(default_factory=list)
    """Torch ops that did work on the inputs' data, most work first."""
    torch_work: list[OpWork] = field(default_factory=list)
    triton_work_share: float | None = None
    """The share of the reference's work the candidate's own Triton kernels did: the device
    time coverage on cuda, an estimate from counted work on cpu (`evaluator/work.py`)."""
    work_share_source: str = ""
    """`device_time` or `estimate`."""
    compiled: list[CompiledKernel] = field(default_factory=list)
    compile_target: str = ""
    """The GPU the kernels were compiled for on cpu (e.g. `cuda sm_90`); '' on cuda."""


@dataclass
class Scaling:
    """On cpu, the sizes a problem ran at when its own did not fit the judge's budget."""

    constants: dict[str, list[int]] = field(default_factory=dict)
    """Size constant -> [as written, as run]."""
    input_shapes: list[list[int]] = field(default_factory=list)


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
    findings: list[Hack] = field(default_factory=list)
    """What the judge saw that does not fail under `policy` (reported, not failing)."""
    policy: str = "standard"
    policy_statuses: dict[str, Status] = field(default_factory=dict)
    """The status each policy gives what this run saw (its trials' inputs are `policy`'s):
    e.g. a KernelGYM success that `standard` calls hacked."""
    ref_ms: float | None = None
    kernel_ms: float | None = None
    speedup: float | None = None
    speedup_note: str = ""
    """Why speedup is null, when it is."""
    ref_timing: TimingStats | None = None
    kernel_timing: TimingStats | None = None
    device: str = ""
    profile: Profile = field(default_factory=Profile)
    scaling: Scaling | None = None
    """Set when the problem ran at smaller sizes than it defines (cpu only)."""
    trial_seed: int | None = None
    """The seed the trials' inputs were derived from: drawn per evaluation under `standard`
    and `strict`, KernelGYM's (the config's `seed`) under `kernelgym`. Giving it back as
    `EvalConfig.trial_seed` repeats the evaluation's inputs."""
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
        data["policy_statuses"] = {k: Status(v) for k, v in data.get("policy_statuses", {}).items()}
        if data.get("error"):
            data["error"] = ErrorInfo(**data["error"])
        for key in ("hacks", "findings"):
            data[key] = [Hack(kind=HackKind(h["kind"]), evidence=h["evidence"],
                              static=h.get("static", False)) for h in data.get(key, [])]
        if data.get("scaling"):
            data["scaling"] = Scaling(**data["scaling"])
        for key in ("ref_timing", "kernel_timing"):
            if data.get(key):
                data[key] = TimingStats(**data[key])
        profile = dict(data.get("profile") or {})
        profile["kernels"] = [KernelRow(**k) for k in profile.get("kernels", [])]
        profile["torch_work"] = [OpWork(**w) for w in profile.get("torch_work", [])]
        profile["compiled"] = [CompiledKernel(**k) for k in profile.get("compiled", [])]
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
