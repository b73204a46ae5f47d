"""The agreed metric families, and the metric names and label matchers found in PromQL text."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

EVAL_STATUSES = frozenset(
    {"correct", "incorrect", "compile_error", "runtime_error", "timeout", "crashed", "hacked"}
)


@dataclass(frozen=True)
class Family:
    name: str
    kind: str  # counter | gauge | histogram
    labels: dict[str, frozenset[str] | None] = field(default_factory=dict)
    """Label name → allowed values (None: any value)."""

    def sample_names(self) -> set[str]:
        if self.kind == "counter":
            base = self.name.removesuffix("_total")
            return {f"{base}_total", f"{base}_created"}
        if self.kind == "histogram":
            return {f"{self.name}_{s}" for s in ("bucket", "sum", "count", "created")}
        return {self.name}


def _values(*names: str) -> frozenset[str]:
    return frozenset(names)


GRPC_LABELS: dict[str, frozenset[str] | None] = {
    "grpc_type": None, "grpc_service": None, "grpc_method": None
}
OWN_FAMILIES = (
    Family("drkernel_build_info", "gauge",
           {"version": None, "model": None, "backend": None, "device": None}),
    Family("drkernel_sessions_total", "counter",
           {"outcome": _values("completed", "partial", "cancelled", "deadline", "failed")}),
    Family("drkernel_sessions_in_flight", "gauge"),
    Family("drkernel_turns_total", "counter", {"status": EVAL_STATUSES | {"format_error"}}),
    Family("drkernel_phase_duration_seconds", "histogram",
           {"phase": _values("generate", "evaluate"), "le": None}),
    Family("drkernel_best_speedup", "histogram", {"le": None}),
    Family("drkernel_best_turn", "histogram", {"le": None}),
    Family("drkernel_tokens_total", "counter",
           {"kind": _values("prompt", "cached", "generated")}),
    Family("drkernel_evaluator_queue_depth", "gauge"),
    Family("drkernel_evaluations_total", "counter", {"status": EVAL_STATUSES}),
    Family("drkernel_requests_rejected_total", "counter",
           {"reason": _values("overload", "unauthenticated", "invalid", "draining")}),
    Family("grpc_server_started_total", "counter", GRPC_LABELS),
    Family("grpc_server_handled_total", "counter", {**GRPC_LABELS, "grpc_code": None}),
    Family("grpc_server_handling_seconds", "histogram", {**GRPC_LABELS, "le": None}),
)
# vLLM V1's names (research/serving-anchors.md §1.10); counters are exposed with `_total`.
VLLM_FAMILIES = (
    Family("vllm:num_requests_running", "gauge"),
    Family("vllm:num_requests_waiting", "gauge"),
    Family("vllm:kv_cache_usage_perc", "gauge"),
    Family("vllm:gpu_cache_usage_perc", "gauge"),
    Family("vllm:prefix_cache_queries", "counter"),
    Family("vllm:prefix_cache_hits", "counter"),
    Family("vllm:prompt_tokens_total", "counter"),
    Family("vllm:generation_tokens_total", "counter"),
    Family("vllm:num_preemptions_total", "counter"),
    Family("vllm:time_to_first_token_seconds", "histogram"),
    Family("vllm:e2e_request_latency_seconds", "histogram"),
)
PROMETHEUS_OWN = frozenset({"up"})
TARGET_LABELS = frozenset({"job", "instance", "model_name", "engine", "__name__"})


def allowed_sample_names() -> dict[str, Family]:
    return {name: fam for fam in OWN_FAMILIES + VLLM_FAMILIES for name in fam.sample_names()}


_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
             "unless", "offset", "bool", "inf", "nan"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_SELECTOR = re.compile(r"([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_NAME = re.compile(r"(?<![\w.$:])[a-zA-Z_:][\w:]*")


def metric_names(expr: str) -> set[str]:
    """Series names an expression selects: identifiers that are not functions, keywords,
    label names, durations or grouping labels."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in _NAME.finditer(text):
        word = match.group(0)
        if word.lower() in _KEYWORDS or text[match.end():].lstrip().startswith("("):
            continue
        names.add(word)
    return names


@dataclass(frozen=True)
class Matcher:
    metric: str
    label: str
    op: str
    value: str

    def literal_values(self) -> list[str]:
        """Values an equality or alternation regex names (`a|b`); other regexes give none."""
        if self.op == "=":
            return [self.value]
        if self.op == "=~" and re.fullmatch(r"[\w|]+", self.value):
            return self.value.split("|")
        return []


def matchers(expr: str) -> list[Matcher]:
    found = []
    for selector in _SELECTOR.finditer(expr):
        for label, op, value in _MATCHER.findall(selector.group(2)):
            found.append(Matcher(selector.group(1), label, op, value))
    return found
