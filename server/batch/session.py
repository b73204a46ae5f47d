"""One problem's session, whatever runs it: consume loop events, ask the budget before
each turn, and turn what happened into a `ProblemRecord`."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field

from refine.events import BestUpdated, Evaluated, Event, Finished, Turn, TurnStarted, Usage
from server.batch.budget import Gate
from server.batch.record import Outcome, ProblemRecord, TurnRecord


def is_solved(best: Turn | None, target_speedup: float | None) -> bool:
    """Correct and at the target; a correct kernel whose speed cannot be measured (CPU) is
    solved too, since more turns cannot show an improvement."""
    if best is None or best.result is None or not best.result.correct:
        return False
    speedup = best.result.speedup
    return speedup is None or (target_speedup is not None and speedup >= target_speedup)


_PROGRESS = {"compile_error": 1, "runtime_error": 2, "timeout": 2, "crashed": 2,
             "incorrect": 3, "correct": 4}
"""How far a candidate got; a hack or a missing code block got nowhere."""


def progress_key(turn: Turn) -> tuple[float, int]:
    """Reward first; among equal rewards (every failure scores the same), how far the
    candidate got: compiling, then running, then matching the reference."""
    status = "format_error" if turn.result is None else turn.result.status.value
    return turn.reward, _PROGRESS.get(status, 0)


@dataclass
class _State:
    turns: list[Turn] = field(default_factory=list)
    best: Turn | None = None
    finished: Finished | None = None
    stop_reason: str = ""
    error: str = ""

    def improved(self, turn: int) -> bool:
        """Did turn `turn` get further than every turn before it?"""
        latest = [progress_key(t) for t in self.turns if t.turn == turn]
        earlier = [progress_key(t) for t in self.turns if t.turn < turn]
        return bool(latest) and (not earlier or max(latest) > max(earlier))


async def run_session(name: str, path: str, events: AsyncGenerator[Event, None], gate: Gate,
                      target_speedup: float | None,
                      errors: tuple[type[BaseException], ...] = ()
                      ) -> tuple[ProblemRecord, Turn | None]:
    """The record and the best turn (its code is the kernel to keep); the events' generator
    is closed before returning, which cancels any work still in flight.

    A session that fails (one of `errors`, or a loop that ended on a backend failure) after
    some turns were judged keeps them: the record's outcome is `error`, so a rerun tries
    the problem again, and its turns and best kernel stay in the record meanwhile.
    """
    state, started = _State(), time.monotonic()
    try:
        await _consume(name, events, gate, target_speedup, state)
    except errors as error:
        if not state.turns:
            raise
        state.error = f"{type(error).__name__}: {error}"
        state.stop_reason = "backend_error"
    finally:
        await events.aclose()
        await gate.finish(name)
    return _record(name, path, state, target_speedup, time.monotonic() - started), state.best


async def _consume(name: str, events: AsyncIterator[Event], gate: Gate,
                   target_speedup: float | None, state: _State) -> None:
    async for event in events:
        if isinstance(event, TurnStarted):
            if event.turn > 1 and is_solved(state.best, target_speedup):
                state.stop_reason = "solved"
                return
            improving = event.turn == 1 or state.improved(event.turn - 1)
            if not await gate.allow(name, event.turn, improving):
                state.stop_reason = "budget"
                return
        elif isinstance(event, Evaluated):
            state.turns.append(event.turn)
        elif isinstance(event, BestUpdated):
            state.best = event.turn
        elif isinstance(event, Finished):
            state.finished = event
            state.stop_reason = event.stop_reason
            state.error = event.error


def _record(name: str, path: str, state: _State, target_speedup: float | None,
            elapsed_s: float) -> ProblemRecord:
    best = state.best
    outcome: Outcome = ("error" if state.stop_reason == "backend_error"
                        else "solved" if is_solved(best, target_speedup)
                        else "correct" if best is not None else "failed")
    usage = state.finished.usage if state.finished else _usage(state.turns)
    return ProblemRecord(
        name=name, path=path, outcome=outcome,
        turns=[TurnRecord.of(t) for t in sorted(state.turns, key=lambda t: (t.turn, t.sample))],
        best_turn=best.turn if best else None,
        best_speedup=best.result.speedup if best and best.result else None,
        best_reward=best.reward if best else None,
        usage=usage, stop_reason=state.stop_reason, elapsed_s=elapsed_s,
        error=state.error or None,
    ).with_verdicts()


def _usage(turns: list[Turn]) -> Usage:
    total = Usage()
    for turn in turns:
        total.add(turn.usage)
    return total
