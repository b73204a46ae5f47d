"""Which candidate is the best so far: correct, not hacked, fastest, earliest on ties."""

from __future__ import annotations

import math
from collections.abc import Iterable

from evaluator import Status
from refine.events import Turn


def is_valid(turn: Turn) -> bool:
    result = turn.result
    return result is not None and result.status == Status.CORRECT and not result.hacks


def _rank(turn: Turn) -> tuple[float, int, int]:
    # Unmeasured speedup (CPU) ranks below any measured one; then the earlier turn wins.
    speedup = turn.result.speedup if turn.result and turn.result.speedup is not None else -math.inf
    return (speedup, -turn.turn, -turn.sample)


def is_better(candidate: Turn, incumbent: Turn | None) -> bool:
    if not is_valid(candidate):
        return False
    return incumbent is None or _rank(candidate) > _rank(incumbent)


def pick_best(turns: Iterable[Turn]) -> Turn | None:
    best: Turn | None = None
    for turn in turns:
        if is_better(turn, best):
            best = turn
    return best


def pick_context(samples: Iterable[Turn]) -> Turn:
    """The sample of one turn that the conversation continues from: highest reward, then first."""
    return max(samples, key=lambda t: (t.reward, -t.sample))
