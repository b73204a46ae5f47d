"""`report.html`: fast_p by turn, speedup per problem, outcomes, and a table of problems."""

from __future__ import annotations

from collections import Counter
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from server.batch.metrics import paper_metrics, paper_table
from server.batch.record import ProblemRecord
from server.batch.svg import bar_chart, line_chart

if TYPE_CHECKING:
    from server.batch.runner import BatchSettings

FAST_P = (1.0, 1.2, 1.5, 2.0)
REPORT = "report.html"


def fast_p(records: list[ProblemRecord], p: float, turn: int) -> float:
    """KernelBench's fast_p after `turn` turns: the share of problems whose best candidate so
    far is correct and faster than the reference by more than `p` (p=0: correct at all)."""
    if not records:
        return 0.0
    hits = 0
    for record in records:
        best = record.best_by_turn(turn)
        if best is not None and (p == 0 or (best.speedup is not None and best.speedup > p)):
            hits += 1
    return hits / len(records)


def fast_p_series(records: list[ProblemRecord]) -> tuple[list[int], dict[str, list[float]]]:
    """The share correct by turn, and fast_p for each p where speed was measured at all."""
    last = max((r.turns_used for r in records), default=0)
    turns = list(range(1, max(last, 1) + 1))
    series = {"correct": [fast_p(records, 0, t) for t in turns]}
    if speed_measured(records):
        for p in FAST_P:
            series[f"fast_{p:g}"] = [fast_p(records, p, t) for t in turns]
    return turns, series


def speed_measured(records: list[ProblemRecord]) -> bool:
    """Whether any turn has a speedup: on the CPU judge none has."""
    return any(t.speedup is not None for r in records for t in r.turns)


def render_report(records: list[ProblemRecord], settings: BatchSettings | None = None) -> str:
    turns, series = fast_p_series(records)
    by_speedup = sorted(records, key=lambda r: (r.best_speedup is None, -(r.best_speedup or 0)))
    outcomes = Counter(r.outcome for r in records)
    statuses = Counter(t.status for r in records for t in r.turns)
    if speed_measured(records):
        speed = _figure("best speedup per problem", bar_chart(
            [r.name for r in by_speedup], [r.best_speedup for r in by_speedup],
            "best speedup per problem", reference=1.0, unit="x"))
        caption = "fast_p by turn"
    else:
        speed = _note("Speed was not measured (the CPU judge checks correctness only): no "
                      "speedup or fast_p plots. Run the batch with a cuda evaluator for them.")
        caption = "problems with a correct kernel by turn (speed not measured on CPU)"
    sections = [
        _summary(records, settings),
        paper_table(paper_metrics(records)),
        _figure(caption, line_chart(turns, series, caption, "problems")),
        speed,
        _figure("problem outcomes", bar_chart(
            list(outcomes), [float(n) for n in outcomes.values()], "problem outcomes",
            counts=True)),
        _figure("turn outcomes", bar_chart(
            list(statuses), [float(n) for n in statuses.values()], "turn outcomes",
            counts=True)),
        _table(by_speedup),
    ]
    return _page("Dr.Kernel batch report", sections)


def write_report(out: Path, records: list[ProblemRecord],
                 settings: BatchSettings | None = None) -> Path:
    path = out / REPORT
    path.write_text(render_report(records, settings), encoding="utf-8")
    return path


def _summary(records: list[ProblemRecord], settings: BatchSettings | None) -> str:
    correct = sum(r.best_turn is not None for r in records)
    turns = sum(r.turns_used for r in records)
    tokens = sum(r.usage.generated_tokens for r in records)
    items = [plural(len(records), "problem"), f"{correct} with a correct kernel",
             plural(turns, "turn"), plural(tokens, "generated token")]
    if settings is not None:
        items.append(f"{plural(settings.turns, 'turn')} per problem, up to {settings.turn_cap}")
    return "<p>" + " · ".join(escape(i) for i in items) + "</p>"


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _figure(caption: str, svg: str) -> str:
    return f"<figure>{svg}<figcaption>{escape(caption)}</figcaption></figure>"


def _note(text: str) -> str:
    return f"<p class='note'>{escape(text)}</p>"


def _table(records: list[ProblemRecord]) -> str:
    head = "".join(f"<th>{h}</th>" for h in
                   ("problem", "outcome", "turns", "best turn", "speedup", "kernel", "note"))
    rows = []
    for r in records:
        speedup = f"{r.best_speedup:.2f}x" if r.best_speedup is not None else "n/a"
        kernel = f'<a href="{escape(r.kernel)}">{escape(r.kernel)}</a>' if r.kernel else ""
        cells = [escape(r.name), r.outcome, str(r.turns_used), str(r.best_turn or ""),
                 speedup, kernel, escape(r.error or r.stop_reason)]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _page(title: str, sections: list[str]) -> str:
    style = ("body{font-family:sans-serif;margin:2em;max-width:60em}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}"
             "figure{margin:1.5em 0}figcaption{color:#555}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{escape(title)}</h1>"
            + "".join(sections) + "</body></html>")
