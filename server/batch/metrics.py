"""The Dr.Kernel paper's figures over a batch: correctness rate, Fast@1 and Fast@1.2.

Each is a share of all the batch's problems (KernelGYM's `fast@p_in_all`): a problem counts
when its candidate is correct (no hack) and, for Fast@p, at least p times as fast as the
reference. Figures are given per turn (that turn's candidate), single-shot (turn 1), for the
last turn, and for the best candidate across turns. A problem without the turn counts as a
miss, so compare runs where every problem takes every turn (no `--target-speedup`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from html import escape
from pathlib import Path

from server.batch.record import ProblemRecord, Verdict, turn_verdict

THRESHOLDS = (1.0, 1.2)
METRICS = "metrics.json"


@dataclass(frozen=True)
class Figures:
    problems: int
    correct: float
    fast_1: float
    fast_1_2: float


@dataclass(frozen=True)
class Rejections:
    """Candidates KernelGYM's rules pass (the reward Dr.Kernel was trained on), and how many
    of them each stricter policy fails on the same observations."""

    kernelgym_correct: int
    standard: int
    strict: int


def rejections(records: list[ProblemRecord]) -> Rejections:
    passed = [t.policy_statuses for r in records for t in r.turns
              if t.policy_statuses.get("kernelgym") == "correct"]
    return Rejections(len(passed), *(sum(s.get(p) != "correct" for s in passed)
                                     for p in ("standard", "strict")))


@dataclass(frozen=True)
class PaperMetrics:
    single_shot: Figures
    last_turn: Figures
    best: Figures
    per_turn: list[Figures]
    """Index 0 is turn 1."""
    speed_measured: bool
    """False when no candidate's speed was measured (a CPU judge): Fast@p is then 0."""
    rejected: Rejections


def paper_metrics(records: list[ProblemRecord]) -> PaperMetrics:
    turns = max((r.turns_used for r in records), default=0)
    return PaperMetrics(
        single_shot=_figures(records, _at(1)),
        last_turn=_figures(records, lambda r: turn_verdict(r.turns, r.turns_used)),
        best=_figures(records, _best),
        per_turn=[_figures(records, _at(t)) for t in range(1, turns + 1)],
        speed_measured=any(t.speedup is not None for r in records for t in r.turns),
        rejected=rejections(records),
    )


def write_metrics(out: Path, records: list[ProblemRecord]) -> Path:
    path = out / METRICS
    path.write_text(json.dumps(asdict(paper_metrics(records)), indent=2), encoding="utf-8")
    return path


def _at(turn: int) -> Callable[[ProblemRecord], Verdict | None]:
    return lambda record: turn_verdict(record.turns, turn)


def _best(record: ProblemRecord) -> Verdict | None:
    best = record.best_by_turn(record.turns_used)
    return Verdict(True, best.speedup) if best is not None else None


def _figures(records: list[ProblemRecord],
             candidate: Callable[[ProblemRecord], Verdict | None]) -> Figures:
    verdicts = [candidate(r) for r in records]
    correct = [v for v in verdicts if v is not None and v.correct]
    n = len(records)

    def share(hits: int) -> float:
        return hits / n if n else 0.0

    def fast(p: float) -> float:
        return share(sum(v.speedup is not None and v.speedup >= p for v in correct))

    return Figures(n, share(len(correct)), fast(THRESHOLDS[0]), fast(THRESHOLDS[1]))


def paper_table(metrics: PaperMetrics) -> str:
    """An HTML table of the figures, rows single-shot, each turn, last turn, best."""
    rows = [("single-shot (turn 1)", metrics.single_shot),
            *((f"turn {i}", f) for i, f in enumerate(metrics.per_turn, start=1)),
            ("last turn", metrics.last_turn), ("best across turns", metrics.best)]
    head = "".join(f"<th>{h}</th>" for h in ("", "correct", "Fast@1", "Fast@1.2"))
    body = "".join(
        f"<tr><td>{escape(label)}</td><td>{f.correct:.1%}</td><td>{f.fast_1:.1%}</td>"
        f"<td>{f.fast_1_2:.1%}</td></tr>" for label, f in rows)
    note = ("" if metrics.speed_measured else
            "<p>Speed was not measured (CPU judge), so Fast@p is 0.</p>")
    return (f"<h2>Paper metrics</h2><p>Share of {metrics.best.problems} problems: correct, "
            "and at least 1× or 1.2× as fast as the reference.</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"
            + _rejections_text(metrics.rejected))


def _rejections_text(rejected: Rejections) -> str:
    if not rejected.kernelgym_correct:
        return ""
    n = rejected.kernelgym_correct
    return (f"<p>Of the {n} candidate{'s' if n != 1 else ''} KernelGYM's rules pass, "
            f"<code>standard</code> fails {rejected.standard} (cheats KernelGYM does not "
            f"check) and <code>strict</code> fails {rejected.strict} (also partial work "
            "left to torch).</p>")
