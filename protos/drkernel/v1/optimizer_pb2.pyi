from protos.drkernel.v1 import result_pb2 as _result_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class History(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HISTORY_UNSPECIFIED: _ClassVar[History]
    HISTORY_ALL: _ClassVar[History]
    HISTORY_WINDOW: _ClassVar[History]

class FeedbackFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FEEDBACK_FORMAT_UNSPECIFIED: _ClassVar[FeedbackFormat]
    FEEDBACK_FORMAT_KERNELGYM: _ClassVar[FeedbackFormat]
    FEEDBACK_FORMAT_CONCISE: _ClassVar[FeedbackFormat]
HISTORY_UNSPECIFIED: History
HISTORY_ALL: History
HISTORY_WINDOW: History
FEEDBACK_FORMAT_UNSPECIFIED: FeedbackFormat
FEEDBACK_FORMAT_KERNELGYM: FeedbackFormat
FEEDBACK_FORMAT_CONCISE: FeedbackFormat

class TurnPolicy(_message.Message):
    __slots__ = ("max_turns", "samples_per_turn", "history", "episode_turns", "window_turns", "iterations", "feedback_format", "target_speedup", "patience_turns", "max_wall_s", "max_generated_tokens")
    MAX_TURNS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_PER_TURN_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    EPISODE_TURNS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_TURNS_FIELD_NUMBER: _ClassVar[int]
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_FORMAT_FIELD_NUMBER: _ClassVar[int]
    TARGET_SPEEDUP_FIELD_NUMBER: _ClassVar[int]
    PATIENCE_TURNS_FIELD_NUMBER: _ClassVar[int]
    MAX_WALL_S_FIELD_NUMBER: _ClassVar[int]
    MAX_GENERATED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    max_turns: int
    samples_per_turn: int
    history: History
    episode_turns: int
    window_turns: int
    iterations: int
    feedback_format: FeedbackFormat
    target_speedup: float
    patience_turns: int
    max_wall_s: float
    max_generated_tokens: int
    def __init__(self, max_turns: _Optional[int] = ..., samples_per_turn: _Optional[int] = ..., history: _Optional[_Union[History, str]] = ..., episode_turns: _Optional[int] = ..., window_turns: _Optional[int] = ..., iterations: _Optional[int] = ..., feedback_format: _Optional[_Union[FeedbackFormat, str]] = ..., target_speedup: _Optional[float] = ..., patience_turns: _Optional[int] = ..., max_wall_s: _Optional[float] = ..., max_generated_tokens: _Optional[int] = ...) -> None: ...

class SamplingOverrides(_message.Message):
    __slots__ = ("temperature", "top_p", "max_new_tokens", "seed")
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int
    def __init__(self, temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., max_new_tokens: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class EvaluatorSettings(_message.Message):
    __slots__ = ("correct_trials", "perf_trials", "warmup", "atol", "rtol", "seed", "check_hacks", "profile", "timeout_s", "policy")
    CORRECT_TRIALS_FIELD_NUMBER: _ClassVar[int]
    PERF_TRIALS_FIELD_NUMBER: _ClassVar[int]
    WARMUP_FIELD_NUMBER: _ClassVar[int]
    ATOL_FIELD_NUMBER: _ClassVar[int]
    RTOL_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    CHECK_HACKS_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    correct_trials: int
    perf_trials: int
    warmup: int
    atol: float
    rtol: float
    seed: int
    check_hacks: bool
    profile: bool
    timeout_s: float
    policy: str
    def __init__(self, correct_trials: _Optional[int] = ..., perf_trials: _Optional[int] = ..., warmup: _Optional[int] = ..., atol: _Optional[float] = ..., rtol: _Optional[float] = ..., seed: _Optional[int] = ..., check_hacks: _Optional[bool] = ..., profile: _Optional[bool] = ..., timeout_s: _Optional[float] = ..., policy: _Optional[str] = ...) -> None: ...

class OptimizeRequest(_message.Message):
    __slots__ = ("reference", "name", "policy", "sampling", "evaluator", "request_id", "module")
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    EVALUATOR_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODULE_FIELD_NUMBER: _ClassVar[int]
    reference: str
    name: str
    policy: TurnPolicy
    sampling: SamplingOverrides
    evaluator: EvaluatorSettings
    request_id: str
    module: ModuleRequest
    def __init__(self, reference: _Optional[str] = ..., name: _Optional[str] = ..., policy: _Optional[_Union[TurnPolicy, _Mapping]] = ..., sampling: _Optional[_Union[SamplingOverrides, _Mapping]] = ..., evaluator: _Optional[_Union[EvaluatorSettings, _Mapping]] = ..., request_id: _Optional[str] = ..., module: _Optional[_Union[ModuleRequest, _Mapping]] = ...) -> None: ...

class ModuleRequest(_message.Message):
    __slots__ = ("source", "class_name", "init_json", "inputs_json", "file_name")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    INIT_JSON_FIELD_NUMBER: _ClassVar[int]
    INPUTS_JSON_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    source: str
    class_name: str
    init_json: str
    inputs_json: str
    file_name: str
    def __init__(self, source: _Optional[str] = ..., class_name: _Optional[str] = ..., init_json: _Optional[str] = ..., inputs_json: _Optional[str] = ..., file_name: _Optional[str] = ...) -> None: ...

class ProblemBuilt(_message.Message):
    __slots__ = ("reference", "how", "note")
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    HOW_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    reference: str
    how: str
    note: str
    def __init__(self, reference: _Optional[str] = ..., how: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("prompt_tokens", "cached_tokens", "generated_tokens")
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    GENERATED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    prompt_tokens: int
    cached_tokens: int
    generated_tokens: int
    def __init__(self, prompt_tokens: _Optional[int] = ..., cached_tokens: _Optional[int] = ..., generated_tokens: _Optional[int] = ...) -> None: ...

class Turn(_message.Message):
    __slots__ = ("turn", "sample", "code", "result", "reward", "usage", "generate_s", "evaluate_s")
    TURN_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    GENERATE_S_FIELD_NUMBER: _ClassVar[int]
    EVALUATE_S_FIELD_NUMBER: _ClassVar[int]
    turn: int
    sample: int
    code: str
    result: _result_pb2.EvalResult
    reward: float
    usage: Usage
    generate_s: float
    evaluate_s: float
    def __init__(self, turn: _Optional[int] = ..., sample: _Optional[int] = ..., code: _Optional[str] = ..., result: _Optional[_Union[_result_pb2.EvalResult, _Mapping]] = ..., reward: _Optional[float] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., generate_s: _Optional[float] = ..., evaluate_s: _Optional[float] = ...) -> None: ...

class TurnStarted(_message.Message):
    __slots__ = ("turn", "iteration", "samples")
    TURN_FIELD_NUMBER: _ClassVar[int]
    ITERATION_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    turn: int
    iteration: int
    samples: int
    def __init__(self, turn: _Optional[int] = ..., iteration: _Optional[int] = ..., samples: _Optional[int] = ...) -> None: ...

class Generated(_message.Message):
    __slots__ = ("turn", "sample", "response", "code", "usage", "generate_s", "finish_reason")
    TURN_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    GENERATE_S_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    turn: int
    sample: int
    response: str
    code: str
    usage: Usage
    generate_s: float
    finish_reason: str
    def __init__(self, turn: _Optional[int] = ..., sample: _Optional[int] = ..., response: _Optional[str] = ..., code: _Optional[str] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., generate_s: _Optional[float] = ..., finish_reason: _Optional[str] = ...) -> None: ...

class Evaluated(_message.Message):
    __slots__ = ("turn",)
    TURN_FIELD_NUMBER: _ClassVar[int]
    turn: Turn
    def __init__(self, turn: _Optional[_Union[Turn, _Mapping]] = ...) -> None: ...

class BestUpdated(_message.Message):
    __slots__ = ("turn",)
    TURN_FIELD_NUMBER: _ClassVar[int]
    turn: Turn
    def __init__(self, turn: _Optional[_Union[Turn, _Mapping]] = ...) -> None: ...

class TurnSummary(_message.Message):
    __slots__ = ("turn", "sample", "status", "reward", "speedup")
    TURN_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    SPEEDUP_FIELD_NUMBER: _ClassVar[int]
    turn: int
    sample: int
    status: str
    reward: float
    speedup: float
    def __init__(self, turn: _Optional[int] = ..., sample: _Optional[int] = ..., status: _Optional[str] = ..., reward: _Optional[float] = ..., speedup: _Optional[float] = ...) -> None: ...

class Summary(_message.Message):
    __slots__ = ("turns", "correct_turns", "stop_reason", "elapsed_s")
    TURNS_FIELD_NUMBER: _ClassVar[int]
    CORRECT_TURNS_FIELD_NUMBER: _ClassVar[int]
    STOP_REASON_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_S_FIELD_NUMBER: _ClassVar[int]
    turns: _containers.RepeatedCompositeFieldContainer[TurnSummary]
    correct_turns: int
    stop_reason: str
    elapsed_s: float
    def __init__(self, turns: _Optional[_Iterable[_Union[TurnSummary, _Mapping]]] = ..., correct_turns: _Optional[int] = ..., stop_reason: _Optional[str] = ..., elapsed_s: _Optional[float] = ...) -> None: ...

class Finished(_message.Message):
    __slots__ = ("best", "summary", "usage", "partial")
    BEST_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    best: Turn
    summary: Summary
    usage: Usage
    partial: bool
    def __init__(self, best: _Optional[_Union[Turn, _Mapping]] = ..., summary: _Optional[_Union[Summary, _Mapping]] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., partial: _Optional[bool] = ...) -> None: ...

class OptimizeEvent(_message.Message):
    __slots__ = ("turn_started", "generated", "evaluated", "best_updated", "finished", "problem_built")
    TURN_STARTED_FIELD_NUMBER: _ClassVar[int]
    GENERATED_FIELD_NUMBER: _ClassVar[int]
    EVALUATED_FIELD_NUMBER: _ClassVar[int]
    BEST_UPDATED_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_BUILT_FIELD_NUMBER: _ClassVar[int]
    turn_started: TurnStarted
    generated: Generated
    evaluated: Evaluated
    best_updated: BestUpdated
    finished: Finished
    problem_built: ProblemBuilt
    def __init__(self, turn_started: _Optional[_Union[TurnStarted, _Mapping]] = ..., generated: _Optional[_Union[Generated, _Mapping]] = ..., evaluated: _Optional[_Union[Evaluated, _Mapping]] = ..., best_updated: _Optional[_Union[BestUpdated, _Mapping]] = ..., finished: _Optional[_Union[Finished, _Mapping]] = ..., problem_built: _Optional[_Union[ProblemBuilt, _Mapping]] = ...) -> None: ...

class EvaluateRequest(_message.Message):
    __slots__ = ("reference", "candidate", "name", "evaluator", "request_id")
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    EVALUATOR_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    reference: str
    candidate: str
    name: str
    evaluator: EvaluatorSettings
    request_id: str
    def __init__(self, reference: _Optional[str] = ..., candidate: _Optional[str] = ..., name: _Optional[str] = ..., evaluator: _Optional[_Union[EvaluatorSettings, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class EvaluateResponse(_message.Message):
    __slots__ = ("result", "reward")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    result: _result_pb2.EvalResult
    reward: float
    def __init__(self, result: _Optional[_Union[_result_pb2.EvalResult, _Mapping]] = ..., reward: _Optional[float] = ...) -> None: ...

class RewardItem(_message.Message):
    __slots__ = ("reference", "response", "name")
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    reference: str
    response: str
    name: str
    def __init__(self, reference: _Optional[str] = ..., response: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class RewardRequest(_message.Message):
    __slots__ = ("items", "evaluator", "request_id")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    EVALUATOR_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[RewardItem]
    evaluator: EvaluatorSettings
    request_id: str
    def __init__(self, items: _Optional[_Iterable[_Union[RewardItem, _Mapping]]] = ..., evaluator: _Optional[_Union[EvaluatorSettings, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class RewardItemResult(_message.Message):
    __slots__ = ("reward", "result", "format_error")
    REWARD_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    FORMAT_ERROR_FIELD_NUMBER: _ClassVar[int]
    reward: float
    result: _result_pb2.EvalResult
    format_error: bool
    def __init__(self, reward: _Optional[float] = ..., result: _Optional[_Union[_result_pb2.EvalResult, _Mapping]] = ..., format_error: _Optional[bool] = ...) -> None: ...

class RewardResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[RewardItemResult]
    def __init__(self, results: _Optional[_Iterable[_Union[RewardItemResult, _Mapping]]] = ...) -> None: ...

class GetServerInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_sessions", "max_source_bytes", "max_reward_items", "max_message_bytes", "evaluator_workers", "max_pending_evaluations", "max_evaluator_timeout_s", "max_turns")
    MAX_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_SOURCE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_REWARD_ITEMS_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    EVALUATOR_WORKERS_FIELD_NUMBER: _ClassVar[int]
    MAX_PENDING_EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_EVALUATOR_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    MAX_TURNS_FIELD_NUMBER: _ClassVar[int]
    max_sessions: int
    max_source_bytes: int
    max_reward_items: int
    max_message_bytes: int
    evaluator_workers: int
    max_pending_evaluations: int
    max_evaluator_timeout_s: float
    max_turns: int
    def __init__(self, max_sessions: _Optional[int] = ..., max_source_bytes: _Optional[int] = ..., max_reward_items: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., evaluator_workers: _Optional[int] = ..., max_pending_evaluations: _Optional[int] = ..., max_evaluator_timeout_s: _Optional[float] = ..., max_turns: _Optional[int] = ...) -> None: ...

class ServerInfo(_message.Message):
    __slots__ = ("version", "model", "backend", "device", "evaluator_version", "versions", "limits", "default_policy", "sandbox")
    class VersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    EVALUATOR_VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_POLICY_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_FIELD_NUMBER: _ClassVar[int]
    version: str
    model: str
    backend: str
    device: str
    evaluator_version: str
    versions: _containers.ScalarMap[str, str]
    limits: Limits
    default_policy: TurnPolicy
    sandbox: SandboxInfo
    def __init__(self, version: _Optional[str] = ..., model: _Optional[str] = ..., backend: _Optional[str] = ..., device: _Optional[str] = ..., evaluator_version: _Optional[str] = ..., versions: _Optional[_Mapping[str, str]] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., default_policy: _Optional[_Union[TurnPolicy, _Mapping]] = ..., sandbox: _Optional[_Union[SandboxInfo, _Mapping]] = ...) -> None: ...

class SandboxInfo(_message.Message):
    __slots__ = ("confined", "layers", "memory_limit", "report_auth", "insecure", "notes")
    CONFINED_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    REPORT_AUTH_FIELD_NUMBER: _ClassVar[int]
    INSECURE_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    confined: bool
    layers: _containers.RepeatedScalarFieldContainer[str]
    memory_limit: str
    report_auth: bool
    insecure: bool
    notes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, confined: _Optional[bool] = ..., layers: _Optional[_Iterable[str]] = ..., memory_limit: _Optional[str] = ..., report_auth: _Optional[bool] = ..., insecure: _Optional[bool] = ..., notes: _Optional[_Iterable[str]] = ...) -> None: ...
