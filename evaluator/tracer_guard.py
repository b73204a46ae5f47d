"""Keep the op tracer's records honest inside the candidate's own process.

Candidate code can reach the tracer (a dispatch mode is on torch's mode stack, and torch hands
the stack out through more functions than can all be refused) and clear its counters. The
counters therefore cannot be hidden; instead every write to them is witnessed by a hash the
judge alone holds, taken before the candidate's call: a record cleared, lowered, rewritten or
replaced, or a tracer taken off the mode stack, shows when the call ends.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_len_stack = torch._C._len_torch_dispatch_stack
_stack_at = torch._C._get_dispatch_stack_at
_type, _id = type, id
_GUARDED_RECORDS = ("ops", "work", "work_alone")
"""The tracer's records that only ever grow: op counts and estimated work per op (all of it, and
the part on data no kernel of the candidate's computed)."""


class Recorded(Counter):
    """A counter whose every write is logged and hashed; values only grow."""

    __slots__ = ("log", "witness")

    def __init__(self, start: dict[Any, Any] | None = None) -> None:
        super().__init__()
        self.log: list[tuple[Any, Any]] = []
        self.witness = hashlib.sha256()
        for key, value in (start or {}).items():
            self[key] = value

    def __setitem__(self, key: Any, value: Any) -> None:
        self.log.append((key, value))
        self.witness.update(_entry(key, value))
        super().__setitem__(key, value)


def _entry(key: Any, value: Any) -> bytes:
    return f"{key!r}\0{value!r}\n".encode()


class Kept(list[tuple[str, torch.Tensor]]):
    """The torch results the tracer keeps (op name, copy), newest last, at most `budget`
    elements in all, to recognise an output that is one of them. Every keep is logged and
    hashed, each copy by its bytes, and the oldest are dropped by a rule the judge replays, so
    a result removed or rewritten shows as in a witnessed record."""

    __slots__ = ("budget", "log", "witness")

    def __init__(self, budget: int) -> None:
        super().__init__()
        self.log: list[tuple[str, bytes, int]] = []
        self.witness = hashlib.sha256()
        self.budget = budget

    def keep(self, name: str, t: torch.Tensor) -> None:
        entry = (name, _digest(t), t.numel())
        self.log.append(entry)
        self.witness.update(_entry(name, entry[1:]))
        super().append((name, t))
        del self[:_over_budget([kept.numel() for _, kept in self], self.budget)]


def _over_budget(numels: list[int], budget: int) -> int:
    """How many of the oldest to drop so that the newest left hold at most `budget`."""
    total = 0
    for i in range(len(numels) - 1, -1, -1):
        total += numels[i]
        if total > budget:
            return i + 1
    return 0


def _digest(t: torch.Tensor) -> bytes:
    flat = t.detach().reshape(-1).contiguous().view(torch.uint8)
    return hashlib.sha256(flat.cpu().numpy().tobytes()).digest()


@dataclass
class Guard:
    """What the judge holds while one traced call runs."""

    tracer: Any
    records: dict[str, tuple[Recorded, Any]] = field(default_factory=dict)
    """Record name -> (the record, its hash object)."""
    kept: tuple[Kept, Any, int] | None = None
    """The tracer's kept results, their hash object and their budget."""
    closing: bool = False
    """Set by the judge just before its own `with` block leaves the tracer."""
    stray_exits: int = 0
    """Exits of the tracer by anyone else: ops between such an exit and a re-entry go unseen."""

    def check(self) -> str:
        """Why the tracer's records cannot be trusted, or ''."""
        if self.stray_exits:
            return "the judge's op tracer was exited during the call"
        for name, (record, witness) in self.records.items():
            problem = _tampered(name, getattr(self.tracer, name, None), record, witness)
            if problem:
                return problem
        if self.kept is not None:
            return _kept_tampered(getattr(self.tracer, "torch_only", None), *self.kept)
        return ""


def guard(tracer: Any) -> Guard:
    """Put witnessed records in place of the tracer's growing ones, before any call runs."""
    held = Guard(tracer)
    _HELD[_id(tracer)] = held
    for name in _GUARDED_RECORDS:
        current = getattr(tracer, name, None)
        if isinstance(current, dict):
            record = Recorded(current)
            setattr(tracer, name, record)
            held.records[name] = (record, record.witness)
    kept = getattr(tracer, "torch_only", None)
    if isinstance(kept, Kept) and _type(kept) is Kept:
        held.kept = (kept, kept.witness, kept.budget)
    return held


_HELD: dict[int, Guard] = {}
_mode_exit = TorchDispatchMode.__exit__


def _watched_exit(self: Any, *args: Any) -> Any:
    held = _HELD.get(_id(self))
    if held is not None and held.tracer is self:
        if held.closing:
            del _HELD[_id(self)]
        else:
            held.stray_exits += 1
    return _mode_exit(self, *args)


TorchDispatchMode.__exit__ = _watched_exit  # type: ignore[method-assign]


def on_top(tracer: Any) -> bool:
    """Whether `tracer` is still the innermost dispatch mode (nobody popped or exited it)."""
    depth = _len_stack()
    return depth > 0 and _stack_at(depth - 1) is tracer


def _tampered(name: str, current: Any, record: Recorded, witness: Any) -> str:
    if current is not record or _type(record) is not Recorded:
        return f"the judge's op record `{name}` was replaced"
    if record.witness is not witness:
        return f"the judge's op record `{name}` had its witness replaced"
    replay = hashlib.sha256()
    seen: dict[Any, Any] = {}
    for key, value in list(record.log):
        replay.update(_entry(key, value))
        if key in seen and not value >= seen[key]:
            return f"the judge's op record `{name}` was lowered for {key!r}"
        seen[key] = value
    if replay.digest() != witness.digest():
        return f"the judge's op record `{name}` was rewritten"
    if dict(record.items()) != seen:
        return f"the judge's op record `{name}` was cleared or changed behind its back"
    return ""


def _kept_tampered(current: Any, kept: Kept, witness: Any, budget: int) -> str:
    if current is not kept or _type(kept) is not Kept or kept.witness is not witness:
        return "the judge's kept torch results were replaced"
    replay = hashlib.sha256()
    expected: list[tuple[str, bytes, int]] = []
    for name, digest, numel in list(kept.log):
        replay.update(_entry(name, (digest, numel)))
        expected.append((name, digest, numel))
        del expected[:_over_budget([n for _, _, n in expected], budget)]
    if replay.digest() != witness.digest():
        return "the judge's kept torch results were rewritten"
    now = list.copy(kept)
    if len(now) != len(expected) or any(
            name != want[0] or _digest(t) != want[1]
            for (name, t), want in zip(now, expected, strict=True)):
        return "the judge's kept torch results were changed behind its back"
    return ""
