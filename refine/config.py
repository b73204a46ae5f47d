"""Turn policy and sampling settings of the refinement loop."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

History = Literal["all", "window"]
FeedbackFormat = Literal["kernelgym", "concise"]


@dataclass(frozen=True, kw_only=True)
class SamplingConfig:
    temperature: float = 1.0
    top_p: float = 0.95
    max_new_tokens: int = 8192
    """Per turn, cut to the room the context has left (KernelGYM: min(8192, room))."""
    max_model_len: int | None = None
    """Context a conversation may fill, prompt and new tokens (Dr.Kernel's evaluation:
    28672); None: the model's own. A turn whose prompt leaves no room ends the episode."""
    seed: int | None = None

    def __post_init__(self) -> None:
        if not self.temperature >= 0 or math.isinf(self.temperature):
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.max_model_len is not None and self.max_model_len < 2:
            raise ValueError(f"max_model_len must be >= 2, got {self.max_model_len}")


@dataclass(frozen=True, kw_only=True)
class LoopConfig:
    max_turns: int = 3
    """Turns of one episode (Dr.Kernel's evaluation uses 3)."""
    samples_per_turn: int = 1
    history: History = "all"
    """`all` keeps every turn; `window` is Dr.Kernel's test-time scheme."""
    episode_turns: int = 5
    """window: turns of the first episode."""
    window_turns: int = 4
    """window: consecutive turns kept (best summed reward) before each new turn."""
    iterations: int = 10
    """window: the first episode plus this many minus one single-turn iterations."""
    feedback_format: FeedbackFormat = "kernelgym"
    target_speedup: float | None = None
    patience_turns: int | None = None
    """Stop when this many turns in a row bring no improvement."""
    max_wall_s: float | None = None
    max_generated_tokens: int | None = None
    prompt_template: str | None = None
    """Path of a replacement first-turn template."""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)

    def __post_init__(self) -> None:
        for name in ("max_turns", "samples_per_turn", "episode_turns", "window_turns",
                     "iterations"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.history not in ("all", "window"):
            raise ValueError(f"history must be 'all' or 'window', not {self.history!r}")
        if self.feedback_format not in ("kernelgym", "concise"):
            raise ValueError(
                f"feedback_format must be 'kernelgym' or 'concise', not {self.feedback_format!r}"
            )
        if self.window_turns > self.episode_turns:
            raise ValueError("window_turns cannot exceed episode_turns")
        _check_optional(self, "target_speedup", 0, "positive")
        _check_optional(self, "max_wall_s", 0, "positive")
        _check_optional(self, "patience_turns", 0, "at least 1")
        _check_optional(self, "max_generated_tokens", 0, "at least 1")

    def replace(self, **changes: Any) -> LoopConfig:
        return dataclasses.replace(self, **changes)


def _check_optional(config: object, name: str, above: float, meaning: str) -> None:
    """An optional limit is unset (None) or a number above `above`."""
    value = getattr(config, name)
    if value is not None and not value > above:
        raise ValueError(f"{name} must be {meaning} (or unset), got {value}")
