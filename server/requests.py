"""Request protos → validated domain objects; every refusal is an `InvalidRequest`."""

from __future__ import annotations

import ast
import dataclasses
import json
from typing import Any

from evaluator.config import EvalConfig, Problem
from protos.drkernel.v1 import optimizer_pb2 as pb
from refine.config import LoopConfig
from server.errors import InvalidRequest
from server.models.module_request import ModuleSpec

MAX_TURNS = 100
MAX_SAMPLES_PER_TURN = 64
MAX_TRIALS = 1000
MAX_NAME_CHARS = 200
MAX_JSON_CHARS = 100_000
_REFERENCE_NAMES = ("Model", "get_inputs", "get_init_inputs")
_HISTORY = {pb.HISTORY_ALL: "all", pb.HISTORY_WINDOW: "window"}
_FEEDBACK = {pb.FEEDBACK_FORMAT_KERNELGYM: "kernelgym", pb.FEEDBACK_FORMAT_CONCISE: "concise"}


def problem(reference: str, name: str, max_source_bytes: int, field: str = "reference") -> Problem:
    check_source(reference, max_source_bytes, field)
    missing = [n for n in _REFERENCE_NAMES if n not in _top_level_names(reference, field)]
    if missing:
        raise InvalidRequest(f"{field} is not in KernelBench format: it does not define "
                             f"{', '.join(missing)}")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidRequest(f"name is longer than {MAX_NAME_CHARS} characters")
    return Problem(reference, name or "problem")


def module_spec(request: pb.OptimizeRequest, max_source_bytes: int) -> ModuleSpec | None:
    """A module request's fields checked, or None for a KernelBench reference."""
    if not request.HasField("module"):
        return None
    if request.reference:
        raise InvalidRequest("give either reference or module, not both")
    module = request.module
    check_source(module.source, max_source_bytes, "module.source")
    _top_level_names(module.source, "module.source")
    if not module.class_name.isidentifier():
        raise InvalidRequest(f"module.class_name {module.class_name!r} is not a Python name")
    for field in ("init_json", "inputs_json"):
        text = getattr(module, field)
        if len(text) > MAX_JSON_CHARS:
            raise InvalidRequest(f"module.{field} is over {MAX_JSON_CHARS} characters")
        if text.strip() and not (field == "inputs_json" and text.strip().isidentifier()):
            try:
                json.loads(text)
            except json.JSONDecodeError as exc:
                raise InvalidRequest(f"module.{field} is not JSON: {exc}") from None
    if not module.inputs_json.strip():
        raise InvalidRequest("module.inputs_json is empty: give the forward's input shapes")
    if len(module.file_name) > MAX_NAME_CHARS:
        raise InvalidRequest(f"module.file_name is longer than {MAX_NAME_CHARS} characters")
    return ModuleSpec(module.source, module.class_name, module.init_json, module.inputs_json,
                      module.file_name or "module.py")


def check_source(source: str, max_source_bytes: int, field: str) -> None:
    if not source.strip():
        raise InvalidRequest(f"{field} is empty")
    size = len(source.encode("utf-8", "surrogatepass"))
    if size > max_source_bytes:
        raise InvalidRequest(f"{field} is {size} bytes, over the limit of {max_source_bytes}")


def _top_level_names(source: str, field: str) -> set[str]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise InvalidRequest(f"{field} is not valid Python: {exc}") from None
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def eval_config(settings: pb.EvaluatorSettings, base: EvalConfig) -> EvalConfig:
    changes = _set_fields(settings)
    for name in ("correct_trials", "perf_trials", "warmup"):
        if changes.get(name, 0) > MAX_TRIALS:
            raise InvalidRequest(f"evaluator.{name} is over the limit of {MAX_TRIALS}")
    if changes.get("timeout_s", 0) > base.timeout_s:
        raise InvalidRequest(f"evaluator.timeout_s is over the server's {base.timeout_s} s")
    return _replace(base, changes, "evaluator")


def loop_config(request: pb.OptimizeRequest, base: LoopConfig) -> LoopConfig:
    policy = _set_fields(request.policy)
    if "history" in policy:
        policy["history"] = _HISTORY[request.policy.history]
    if "feedback_format" in policy:
        policy["feedback_format"] = _FEEDBACK[request.policy.feedback_format]
    if policy.get("max_turns", 0) > MAX_TURNS or policy.get("iterations", 0) > MAX_TURNS:
        raise InvalidRequest(f"policy.max_turns and policy.iterations are limited to {MAX_TURNS}")
    if policy.get("samples_per_turn", 0) > MAX_SAMPLES_PER_TURN:
        raise InvalidRequest(f"policy.samples_per_turn is limited to {MAX_SAMPLES_PER_TURN}")
    sampling = _set_fields(request.sampling)
    if sampling.get("max_new_tokens", 0) > base.sampling.max_new_tokens:
        raise InvalidRequest(
            f"sampling.max_new_tokens is over the server's {base.sampling.max_new_tokens}")
    if sampling:
        policy["sampling"] = _replace(base.sampling, sampling, "sampling")
    return _replace(base, policy, "policy")


def _set_fields(message: Any) -> dict[str, Any]:
    """Fields the client set; enums at 0 (UNSPECIFIED) count as unset."""
    return {field.name: value for field, value in message.ListFields()}


def _replace(base: Any, changes: dict[str, Any], prefix: str) -> Any:
    try:
        return dataclasses.replace(base, **changes) if changes else base
    except (ValueError, TypeError) as exc:
        raise InvalidRequest(f"{prefix}: {exc}") from None
