"""One result record per problem, as written to `results.jsonl`."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from refine.events import Turn, Usage

Outcome = Literal["solved", "correct", "failed", "error"]
"""solved: correct and at the target (or speed not measurable); correct: correct, below the
target; failed: no correct candidate; error: the session itself failed (bad reference, backend
down), retried on the next run."""


@dataclass(frozen=True)
class TurnRecord:
    turn: int
    sample: int
    status: str
    """An evaluator status, or `format_error`."""
    speedup: float | None
    reward: float
    generated_tokens: int
    policy_statuses: dict[str, str] = field(default_factory=dict)
    """The status each evaluator policy gives the candidate (see `EvalResult`)."""

    @classmethod
    def of(cls, turn: Turn) -> TurnRecord:
        result = turn.result
        if result is None:
            return cls(turn.turn, turn.sample, "format_error", None, turn.reward,
                       turn.usage.generated_tokens)
        return cls(turn.turn, turn.sample, result.status.value, result.speedup, turn.reward,
                   turn.usage.generated_tokens,
                   {p: s.value for p, s in result.policy_statuses.items()})

    @property
    def correct(self) -> bool:
        return self.status == "correct"


@dataclass(frozen=True)
class Verdict:
    """One candidate as the paper's metrics see it."""

    correct: bool
    speedup: float | None


def turn_verdict(turns: list[TurnRecord], turn: int) -> Verdict | None:
    """Turn `turn`'s candidate (its best sample: correct first, then fastest); None when
    the problem took no such turn."""
    samples = [t for t in turns if t.turn == turn]
    if not samples:
        return None
    best = max(samples, key=lambda t: (t.correct, t.speedup or 0.0, -t.sample))
    return Verdict(best.correct, best.speedup)


@dataclass
class ProblemRecord:
    name: str
    path: str
    outcome: Outcome
    turns: list[TurnRecord] = field(default_factory=list)
    best_turn: int | None = None
    best_speedup: float | None = None
    best_reward: float | None = None
    kernel: str | None = None
    """The best kernel's file, relative to the output folder."""
    usage: Usage = field(default_factory=Usage)
    stop_reason: str = ""
    elapsed_s: float = 0.0
    error: str | None = None
    single_shot: Verdict | None = None
    """Turn 1's candidate."""
    last_turn: Verdict | None = None
    """The last turn's candidate (with STTS, the last iteration's)."""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProblemRecord:
        data = dict(data)
        data["turns"] = [TurnRecord(**t) for t in data.get("turns", [])]
        data["usage"] = Usage(**data.get("usage", {}))
        for key in ("single_shot", "last_turn"):
            if data.get(key) is not None:
                data[key] = Verdict(**data[key])
        return cls(**data)

    def with_verdicts(self) -> ProblemRecord:
        """The record with `single_shot` and `last_turn` filled from its turns."""
        self.single_shot = turn_verdict(self.turns, 1)
        self.last_turn = turn_verdict(self.turns, self.turns_used)
        return self

    @property
    def turns_used(self) -> int:
        return max((t.turn for t in self.turns), default=0)

    def best_by_turn(self, turn: int) -> TurnRecord | None:
        """The best correct candidate among turns up to `turn` (higher speedup, then earlier)."""
        correct = [t for t in self.turns if t.turn <= turn and t.correct]
        return max(correct, key=lambda t: (t.speedup or 0.0, -t.turn), default=None)
