"""Running a batch: skip what is done, solve the rest with bounded concurrency, record each
problem as it finishes, write the report."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from evaluator import Problem, RewardConfig
from evaluator.api import EvaluatorError
from refine import Loop, LoopConfig
from refine.backends import Backend, BackendError
from refine.loop import Judge
from server.batch.budget import Gate
from server.batch.metrics import write_metrics
from server.batch.problems import ProblemFile
from server.batch.progress import BatchProgress
from server.batch.record import ProblemRecord
from server.batch.report import write_report
from server.batch.session import run_session
from server.batch.store import ResultStore

Solved = tuple[ProblemRecord, str | None]
"""A problem's record and its best kernel's code."""
Solver = Callable[[ProblemFile], Awaitable[Solved]]
SESSION_ERRORS: tuple[type[BaseException], ...] = (EvaluatorError, BackendError, OSError)
"""Failures of one problem's session; anything else is a bug and stops the batch."""


@dataclass(frozen=True, kw_only=True)
class BatchSettings:
    out: Path
    concurrency: int = 4
    turns: int = 3
    """Turns each problem may take; unused turns of solved problems go to improving ones."""
    max_turns: int | None = None
    """Cap per problem, extra turns included; default twice `turns`."""
    target_speedup: float | None = None

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.turns < 1:
            raise ValueError("concurrency and turns must be at least 1")
        if self.max_turns is not None and self.max_turns < self.turns:
            raise ValueError("max_turns cannot be below turns")

    @property
    def turn_cap(self) -> int:
        return self.max_turns or 2 * self.turns


def pending(problems: list[ProblemFile], store: ResultStore) -> list[ProblemFile]:
    done = store.finished()
    return [p for p in problems if p.name not in done]


def error_record(problem: ProblemFile, error: BaseException) -> Solved:
    message = f"{type(error).__name__}: {error}"
    return ProblemRecord(problem.name, str(problem.path), "error", error=message), None


async def run_batch(problems: list[ProblemFile], solver: Solver, store: ResultStore,
                    settings: BatchSettings, progress: BatchProgress) -> list[ProblemRecord]:
    """Solves `problems` not finished in `store`; returns every record of the batch."""
    todo = pending(problems, store)
    earlier = store.load()
    progress.start(len(problems), [earlier[p.name] for p in problems if p not in todo])
    limit = asyncio.Semaphore(settings.concurrency)

    async def one(problem: ProblemFile) -> None:
        async with limit:
            progress.started(problem.name)
            record, code = await solver(problem)
        if code is not None:
            record.kernel = store.save_kernel(problem.name, code)
        store.append(record)
        progress.finished(record)

    try:
        await asyncio.gather(*(one(p) for p in todo))
    finally:
        progress.stop()
    latest = store.load()
    records = [latest[p.name] for p in problems if p.name in latest]
    write_report(store.out, records, settings)
    write_metrics(store.out, records)
    return records


class LocalSolver:
    """Sessions in this process: one backend and one evaluator shared by all loops."""

    def __init__(self, backend: Backend, judge: Judge, loop_config: LoopConfig, gate: Gate,
                 target_speedup: float | None, reward_config: RewardConfig | None = None):
        self.loop = Loop(backend, judge, loop_config, reward_config)
        self.gate = gate
        self.target_speedup = target_speedup

    async def __call__(self, problem: ProblemFile) -> Solved:
        events = self.loop.run(Problem(problem.source, problem.name), prompt=problem.prompt)
        try:
            record, best = await run_session(problem.name, str(problem.path), events,
                                             self.gate, self.target_speedup, SESSION_ERRORS)
        except SESSION_ERRORS as error:
            return error_record(problem, error)
        return record, best.code if best else None


def loop_config_for(base: LoopConfig, settings: BatchSettings) -> LoopConfig:
    """The loop may run up to the cap; the batch budget decides each turn past `turns`."""
    target = settings.target_speedup if settings.target_speedup is not None \
        else base.target_speedup
    if base.history == "all":
        return base.replace(max_turns=settings.turn_cap, target_speedup=target)
    return base.replace(target_speedup=target)
