from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EvalStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVAL_STATUS_UNSPECIFIED: _ClassVar[EvalStatus]
    EVAL_STATUS_CORRECT: _ClassVar[EvalStatus]
    EVAL_STATUS_INCORRECT: _ClassVar[EvalStatus]
    EVAL_STATUS_COMPILE_ERROR: _ClassVar[EvalStatus]
    EVAL_STATUS_RUNTIME_ERROR: _ClassVar[EvalStatus]
    EVAL_STATUS_TIMEOUT: _ClassVar[EvalStatus]
    EVAL_STATUS_CRASHED: _ClassVar[EvalStatus]
    EVAL_STATUS_HACKED: _ClassVar[EvalStatus]

class HackKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HACK_KIND_UNSPECIFIED: _ClassVar[HackKind]
    HACK_KIND_DECOY: _ClassVar[HackKind]
    HACK_KIND_FRAMEWORK_COMPUTE: _ClassVar[HackKind]
    HACK_KIND_OUTPUT_CACHING: _ClassVar[HackKind]
    HACK_KIND_INPUT_MUTATION: _ClassVar[HackKind]
    HACK_KIND_OUTPUT_ALIASING: _ClassVar[HackKind]
    HACK_KIND_UNINITIALIZED_OUTPUT: _ClassVar[HackKind]
    HACK_KIND_SIDE_STREAM: _ClassVar[HackKind]
    HACK_KIND_BACKGROUND_WORK: _ClassVar[HackKind]
    HACK_KIND_LAZY_TENSOR: _ClassVar[HackKind]
    HACK_KIND_PATCHING: _ClassVar[HackKind]
    HACK_KIND_INTROSPECTION: _ClassVar[HackKind]
    HACK_KIND_IO_ACCESS: _ClassVar[HackKind]
    HACK_KIND_PRECISION_DOWNCAST: _ClassVar[HackKind]
    HACK_KIND_NONFINITE_OUTPUT: _ClassVar[HackKind]
    HACK_KIND_SANDBOX_ESCAPE: _ClassVar[HackKind]
EVAL_STATUS_UNSPECIFIED: EvalStatus
EVAL_STATUS_CORRECT: EvalStatus
EVAL_STATUS_INCORRECT: EvalStatus
EVAL_STATUS_COMPILE_ERROR: EvalStatus
EVAL_STATUS_RUNTIME_ERROR: EvalStatus
EVAL_STATUS_TIMEOUT: EvalStatus
EVAL_STATUS_CRASHED: EvalStatus
EVAL_STATUS_HACKED: EvalStatus
HACK_KIND_UNSPECIFIED: HackKind
HACK_KIND_DECOY: HackKind
HACK_KIND_FRAMEWORK_COMPUTE: HackKind
HACK_KIND_OUTPUT_CACHING: HackKind
HACK_KIND_INPUT_MUTATION: HackKind
HACK_KIND_OUTPUT_ALIASING: HackKind
HACK_KIND_UNINITIALIZED_OUTPUT: HackKind
HACK_KIND_SIDE_STREAM: HackKind
HACK_KIND_BACKGROUND_WORK: HackKind
HACK_KIND_LAZY_TENSOR: HackKind
HACK_KIND_PATCHING: HackKind
HACK_KIND_INTROSPECTION: HackKind
HACK_KIND_IO_ACCESS: HackKind
HACK_KIND_PRECISION_DOWNCAST: HackKind
HACK_KIND_NONFINITE_OUTPUT: HackKind
HACK_KIND_SANDBOX_ESCAPE: HackKind

class ErrorInfo(_message.Message):
    __slots__ = ("type", "message", "traceback")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TRACEBACK_FIELD_NUMBER: _ClassVar[int]
    type: str
    message: str
    traceback: str
    def __init__(self, type: _Optional[str] = ..., message: _Optional[str] = ..., traceback: _Optional[str] = ...) -> None: ...

class Hack(_message.Message):
    __slots__ = ("kind", "evidence", "static")
    KIND_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    STATIC_FIELD_NUMBER: _ClassVar[int]
    kind: HackKind
    evidence: str
    static: bool
    def __init__(self, kind: _Optional[_Union[HackKind, str]] = ..., evidence: _Optional[str] = ..., static: _Optional[bool] = ...) -> None: ...

class TimingStats(_message.Message):
    __slots__ = ("mean_ms", "median_ms", "std_ms", "min_ms", "max_ms", "trials")
    MEAN_MS_FIELD_NUMBER: _ClassVar[int]
    MEDIAN_MS_FIELD_NUMBER: _ClassVar[int]
    STD_MS_FIELD_NUMBER: _ClassVar[int]
    MIN_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_MS_FIELD_NUMBER: _ClassVar[int]
    TRIALS_FIELD_NUMBER: _ClassVar[int]
    mean_ms: float
    median_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    trials: int
    def __init__(self, mean_ms: _Optional[float] = ..., median_ms: _Optional[float] = ..., std_ms: _Optional[float] = ..., min_ms: _Optional[float] = ..., max_ms: _Optional[float] = ..., trials: _Optional[int] = ...) -> None: ...

class KernelRow(_message.Message):
    __slots__ = ("name", "device_time_us", "count", "own")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DEVICE_TIME_US_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    OWN_FIELD_NUMBER: _ClassVar[int]
    name: str
    device_time_us: float
    count: int
    own: bool
    def __init__(self, name: _Optional[str] = ..., device_time_us: _Optional[float] = ..., count: _Optional[int] = ..., own: _Optional[bool] = ...) -> None: ...

class OpWork(_message.Message):
    __slots__ = ("op", "share")
    OP_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    op: str
    share: float
    def __init__(self, op: _Optional[str] = ..., share: _Optional[float] = ...) -> None: ...

class Profile(_message.Message):
    __slots__ = ("kernels", "triton_launches", "triton_time_coverage", "torch_compute_ops", "torch_work", "triton_work_share", "work_share_source", "compiled", "compile_target")
    KERNELS_FIELD_NUMBER: _ClassVar[int]
    TRITON_LAUNCHES_FIELD_NUMBER: _ClassVar[int]
    TRITON_TIME_COVERAGE_FIELD_NUMBER: _ClassVar[int]
    TORCH_COMPUTE_OPS_FIELD_NUMBER: _ClassVar[int]
    TORCH_WORK_FIELD_NUMBER: _ClassVar[int]
    TRITON_WORK_SHARE_FIELD_NUMBER: _ClassVar[int]
    WORK_SHARE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    COMPILED_FIELD_NUMBER: _ClassVar[int]
    COMPILE_TARGET_FIELD_NUMBER: _ClassVar[int]
    kernels: _containers.RepeatedCompositeFieldContainer[KernelRow]
    triton_launches: _containers.RepeatedScalarFieldContainer[str]
    triton_time_coverage: float
    torch_compute_ops: _containers.RepeatedScalarFieldContainer[str]
    torch_work: _containers.RepeatedCompositeFieldContainer[OpWork]
    triton_work_share: float
    work_share_source: str
    compiled: _containers.RepeatedCompositeFieldContainer[CompiledKernel]
    compile_target: str
    def __init__(self, kernels: _Optional[_Iterable[_Union[KernelRow, _Mapping]]] = ..., triton_launches: _Optional[_Iterable[str]] = ..., triton_time_coverage: _Optional[float] = ..., torch_compute_ops: _Optional[_Iterable[str]] = ..., torch_work: _Optional[_Iterable[_Union[OpWork, _Mapping]]] = ..., triton_work_share: _Optional[float] = ..., work_share_source: _Optional[str] = ..., compiled: _Optional[_Iterable[_Union[CompiledKernel, _Mapping]]] = ..., compile_target: _Optional[str] = ...) -> None: ...

class CompiledKernel(_message.Message):
    __slots__ = ("name", "registers", "spill_bytes", "shared_bytes", "num_warps")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REGISTERS_FIELD_NUMBER: _ClassVar[int]
    SPILL_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHARED_BYTES_FIELD_NUMBER: _ClassVar[int]
    NUM_WARPS_FIELD_NUMBER: _ClassVar[int]
    name: str
    registers: int
    spill_bytes: int
    shared_bytes: int
    num_warps: int
    def __init__(self, name: _Optional[str] = ..., registers: _Optional[int] = ..., spill_bytes: _Optional[int] = ..., shared_bytes: _Optional[int] = ..., num_warps: _Optional[int] = ...) -> None: ...

class EvalResult(_message.Message):
    __slots__ = ("status", "compiled", "correct", "trials_passed", "trials_total", "max_abs_diff", "mean_abs_diff", "error", "hacks", "ref_ms", "kernel_ms", "speedup", "speedup_note", "ref_timing", "kernel_timing", "device", "profile", "reward", "evaluator_version", "elapsed_s", "policy", "findings", "trial_seed", "scaling", "policy_statuses")
    class PolicyStatusesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: EvalStatus
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[EvalStatus, str]] = ...) -> None: ...
    STATUS_FIELD_NUMBER: _ClassVar[int]
    COMPILED_FIELD_NUMBER: _ClassVar[int]
    CORRECT_FIELD_NUMBER: _ClassVar[int]
    TRIALS_PASSED_FIELD_NUMBER: _ClassVar[int]
    TRIALS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    MAX_ABS_DIFF_FIELD_NUMBER: _ClassVar[int]
    MEAN_ABS_DIFF_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    HACKS_FIELD_NUMBER: _ClassVar[int]
    REF_MS_FIELD_NUMBER: _ClassVar[int]
    KERNEL_MS_FIELD_NUMBER: _ClassVar[int]
    SPEEDUP_FIELD_NUMBER: _ClassVar[int]
    SPEEDUP_NOTE_FIELD_NUMBER: _ClassVar[int]
    REF_TIMING_FIELD_NUMBER: _ClassVar[int]
    KERNEL_TIMING_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    EVALUATOR_VERSION_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_S_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    TRIAL_SEED_FIELD_NUMBER: _ClassVar[int]
    SCALING_FIELD_NUMBER: _ClassVar[int]
    POLICY_STATUSES_FIELD_NUMBER: _ClassVar[int]
    status: EvalStatus
    compiled: bool
    correct: bool
    trials_passed: int
    trials_total: int
    max_abs_diff: float
    mean_abs_diff: float
    error: ErrorInfo
    hacks: _containers.RepeatedCompositeFieldContainer[Hack]
    ref_ms: float
    kernel_ms: float
    speedup: float
    speedup_note: str
    ref_timing: TimingStats
    kernel_timing: TimingStats
    device: str
    profile: Profile
    reward: float
    evaluator_version: str
    elapsed_s: float
    policy: str
    findings: _containers.RepeatedCompositeFieldContainer[Hack]
    trial_seed: int
    scaling: Scaling
    policy_statuses: _containers.ScalarMap[str, EvalStatus]
    def __init__(self, status: _Optional[_Union[EvalStatus, str]] = ..., compiled: _Optional[bool] = ..., correct: _Optional[bool] = ..., trials_passed: _Optional[int] = ..., trials_total: _Optional[int] = ..., max_abs_diff: _Optional[float] = ..., mean_abs_diff: _Optional[float] = ..., error: _Optional[_Union[ErrorInfo, _Mapping]] = ..., hacks: _Optional[_Iterable[_Union[Hack, _Mapping]]] = ..., ref_ms: _Optional[float] = ..., kernel_ms: _Optional[float] = ..., speedup: _Optional[float] = ..., speedup_note: _Optional[str] = ..., ref_timing: _Optional[_Union[TimingStats, _Mapping]] = ..., kernel_timing: _Optional[_Union[TimingStats, _Mapping]] = ..., device: _Optional[str] = ..., profile: _Optional[_Union[Profile, _Mapping]] = ..., reward: _Optional[float] = ..., evaluator_version: _Optional[str] = ..., elapsed_s: _Optional[float] = ..., policy: _Optional[str] = ..., findings: _Optional[_Iterable[_Union[Hack, _Mapping]]] = ..., trial_seed: _Optional[int] = ..., scaling: _Optional[_Union[Scaling, _Mapping]] = ..., policy_statuses: _Optional[_Mapping[str, EvalStatus]] = ...) -> None: ...

class Scaling(_message.Message):
    __slots__ = ("constants", "input_shapes")
    class ConstantsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ScaledSize
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ScaledSize, _Mapping]] = ...) -> None: ...
    CONSTANTS_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPES_FIELD_NUMBER: _ClassVar[int]
    constants: _containers.MessageMap[str, ScaledSize]
    input_shapes: _containers.RepeatedCompositeFieldContainer[Shape]
    def __init__(self, constants: _Optional[_Mapping[str, ScaledSize]] = ..., input_shapes: _Optional[_Iterable[_Union[Shape, _Mapping]]] = ...) -> None: ...

class ScaledSize(_message.Message):
    __slots__ = ("written", "run")
    WRITTEN_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    written: int
    run: int
    def __init__(self, written: _Optional[int] = ..., run: _Optional[int] = ...) -> None: ...

class Shape(_message.Message):
    __slots__ = ("dims",)
    DIMS_FIELD_NUMBER: _ClassVar[int]
    dims: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, dims: _Optional[_Iterable[int]] = ...) -> None: ...
