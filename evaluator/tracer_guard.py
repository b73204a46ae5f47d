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


@dataclass
class Guard:
    """What the judge holds while one traced call runs."""

    tracer: Any
    records: dict[str, tuple[Recorded, Any]] = field(default_factory=dict)
    """Record name -> (the record, its hash object)."""
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
