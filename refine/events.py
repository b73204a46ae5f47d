"""Typed events of one refinement session, consumed by the gRPC service and the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field

from evaluator import EvalResult


@dataclass
class Usage:
    prompt_tokens: int = 0
    cached_tokens: int = 0
    generated_tokens: int = 0

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.cached_tokens += other.cached_tokens
        self.generated_tokens += other.generated_tokens


@dataclass
class Turn:
    """One generated candidate and its verdict; `result` is None for a format error."""

    turn: int
    sample: int
    response: str
    code: str | None
    result: EvalResult | None
    reward: float
    usage: Usage = field(default_factory=Usage)
    generate_s: float = 0.0
    evaluate_s: float = 0.0
    finish_reason: str = ""
    feedback: str = ""
    """The user message rendered from this turn's verdict."""

    @property
    def format_error(self) -> bool:
        return self.code is None


@dataclass
class TurnStarted:
    turn: int
    iteration: int
    samples: int


@dataclass
class Generated:
    turn: int
    sample: int
    response: str
    code: str | None
    usage: Usage
    generate_s: float
    finish_reason: str = ""


@dataclass
class Evaluated:
    turn: Turn


@dataclass
class BestUpdated:
    turn: Turn


@dataclass
class Finished:
    best: Turn | None
    turns: list[Turn]
    usage: Usage
    partial: bool
    stop_reason: str
    """One of: max_turns, target_speedup, no_improvement, wall_time, token_budget, deadline,
    context_length (the conversation outgrew the model's context), backend_error (the
    backend failed after the first turn; `error` says how)."""
    elapsed_s: float = 0.0
    prompt: str = ""
    """The first user message."""
    error: str = ""
    """The backend failure that ended the session, when `stop_reason` is backend_error."""


Event = TurnStarted | Generated | Evaluated | BestUpdated | Finished
