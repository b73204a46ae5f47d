"""The batch's generation budget, counted in turns.

Every problem may take `base_turns`. A problem that stops early (solved, or its loop
ended) leaves its unused turns in a shared pool, and a problem past its base turns draws
one more turn from the pool only while its last turn got further than every earlier one
(higher reward, or for equal rewards: compiling, running, matching the reference), up to
`max_turns`. Turns still owed to other problems' base are never lent out, so the batch
never uses more than `problems × base_turns` turns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


class Gate(Protocol):
    """Asked before each turn of a problem; told when the problem is done."""

    async def allow(self, name: str, turn: int, improving: bool) -> bool: ...

    async def finish(self, name: str) -> None: ...


@dataclass
class TurnBudget:
    names: list[str]
    base_turns: int
    max_turns: int
    granted: dict[str, int] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.base_turns < 1 or self.max_turns < self.base_turns:
            raise ValueError("need 1 <= base_turns <= max_turns")

    @property
    def total(self) -> int:
        return len(self.names) * self.base_turns

    @property
    def used(self) -> int:
        return sum(self.granted.values())

    def spare(self) -> int:
        owed = sum(max(0, self.base_turns - self.granted.get(name, 0))
                   for name in self.names if name not in self.done)
        return self.total - self.used - owed

    def allow_turn(self, name: str, turn: int, improving: bool) -> bool:
        """May `name` start turn number `turn` (1-based)?"""
        if name in self.done or turn > self.max_turns:
            return False
        if turn > self.base_turns and (not improving or self.spare() < 1):
            return False
        self.granted[name] = max(self.granted.get(name, 0), turn)
        return True

    def finish_problem(self, name: str) -> None:
        self.done.add(name)

    async def allow(self, name: str, turn: int, improving: bool) -> bool:
        return self.allow_turn(name, turn, improving)

    async def finish(self, name: str) -> None:
        self.finish_problem(name)
