"""The live progress bar: problems done, correct so far, the best speedups."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from server.batch.record import ProblemRecord

_TOP_SPEEDUPS = 3


class BatchProgress:
    """A live bar (`enabled`) over a log of one line per finished problem (always)."""

    def __init__(self, console: Console | None = None, enabled: bool = True):
        self.console = console or Console(stderr=True)
        self.enabled = enabled
        self.records: list[ProblemRecord] = []
        self.running: set[str] = set()
        self._progress = Progress(
            TextColumn("[bold]batch[/]"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=self.console, disable=not enabled, transient=False)
        self._task = self._progress.add_task("batch", total=0, stats="", start=False)

    def start(self, total: int, already: list[ProblemRecord]) -> None:
        self.records = list(already)
        self._progress.update(self._task, total=total, completed=len(already))
        self._progress.start_task(self._task)
        self._progress.start()
        self._refresh()
        if already:
            self.console.print(f"resuming: {len(already)} of {total} problems already done")

    def started(self, name: str) -> None:
        self.running.add(name)
        self._refresh()

    def finished(self, record: ProblemRecord) -> None:
        self.running.discard(record.name)
        self.records.append(record)
        self._progress.advance(self._task)
        self._refresh()
        self.console.print(line(record))

    def stop(self) -> None:
        self._progress.stop()

    def _refresh(self) -> None:
        self._progress.update(self._task, stats=stats(self.records, len(self.running)))


def stats(records: list[ProblemRecord], running: int) -> str:
    correct = sum(r.outcome in ("solved", "correct") for r in records)
    speedups = sorted((r.best_speedup for r in records if r.best_speedup is not None),
                      reverse=True)[:_TOP_SPEEDUPS]
    best = ", ".join(f"{s:.2f}x" for s in speedups) or "-"
    return f"correct {correct}  running {running}  best {best}"


def line(record: ProblemRecord) -> str:
    colour = {"solved": "green", "correct": "green", "failed": "yellow", "error": "red"}
    speedup = f"{record.best_speedup:.2f}x" if record.best_speedup is not None else "n/a"
    detail = record.error if record.error else (
        f"{record.turns_used} turn(s), best turn {record.best_turn or '-'}, speedup {speedup}")
    return f"[{colour[record.outcome]}]{record.outcome:>7}[/] {record.name}: {detail}"
