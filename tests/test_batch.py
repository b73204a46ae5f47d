"""Batch pieces without a model: problem discovery, the turn budget, session decisions,
the result store, the report and the Ray actor plan."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from batch_support import EXAMPLES

from evaluator import EvalResult, Status
from refine.events import BestUpdated, Evaluated, Event, Finished, Turn, TurnStarted, Usage
from server.batch import (
    ProblemRecord,
    ResultStore,
    TurnBudget,
    TurnRecord,
    fast_p,
    find_problems,
    render_report,
    run_session,
)
from server.batch.ray_batch import plan_actors

ALL_EXAMPLES = ["add_mul", "fused_matmul_relu", "gelu", "layernorm", "linear", "matmul", "relu",
                "rmsnorm", "softmax", "swiglu"]


def test_a_folder_yields_only_its_reference_files() -> None:
    problems = find_problems([str(EXAMPLES)])
    assert [p.name for p in problems] == [f"{name}/reference" for name in ALL_EXAMPLES]
    assert all(p.source == p.path.read_text() for p in problems)


def test_files_globs_and_duplicates(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.py").write_text((EXAMPLES / "relu/reference.py").read_text())
    (tmp_path / "a" / "not_a_problem.py").write_text("print('hi')\n")
    names = [p.name for p in find_problems([str(tmp_path / "a/x.py"), str(tmp_path / "b/x.py")])]
    assert names == ["a/x", "b/x"]
    globbed = find_problems([str(EXAMPLES / "*" / "reference.py"), str(EXAMPLES / "relu")])
    assert len(globbed) == len(ALL_EXAMPLES), "a file named twice is one problem"
    with pytest.raises(FileNotFoundError, match="no file or folder"):
        find_problems([str(tmp_path / "missing*.py")])


def test_base_turns_are_always_granted_extras_need_progress_and_spare() -> None:
    budget = TurnBudget(["a", "b"], base_turns=2, max_turns=4)
    assert all(budget.allow_turn(n, t, improving=False) for n in "ab" for t in (1, 2))
    assert not budget.allow_turn("a", 3, improving=True), "nothing spare while all work"
    budget.finish_problem("b")
    assert budget.spare() == 0
    solved_early = TurnBudget(["a", "b"], base_turns=2, max_turns=4)
    solved_early.allow_turn("b", 1, True)
    solved_early.finish_problem("b")
    assert solved_early.spare() == 1, "b's unused turn; a's two are still owed to it"
    for turn in (1, 2):
        solved_early.allow_turn("a", turn, True)
    assert solved_early.spare() == 1
    assert not solved_early.allow_turn("a", 3, improving=False)
    assert solved_early.allow_turn("a", 3, improving=True)
    assert not solved_early.allow_turn("a", 4, improving=True), "the pool is empty"
    assert solved_early.used == solved_early.total == 4


def test_extra_turns_stop_at_the_cap() -> None:
    budget = TurnBudget(["a", "b", "c"], base_turns=1, max_turns=2)
    for name in "bc":
        budget.finish_problem(name)  # errored before any turn
    assert budget.allow_turn("a", 1, True) and budget.allow_turn("a", 2, True)
    assert budget.spare() == 1 and not budget.allow_turn("a", 3, True)
    with pytest.raises(ValueError):
        TurnBudget(["a"], base_turns=3, max_turns=2)


def turn(number: int, status: Status | None, speedup: float | None = None,
         reward: float = 0.0) -> Turn:
    result = None if status is None else EvalResult(status=status, speedup=speedup,
                                                    correct=status is Status.CORRECT)
    return Turn(number, 0, "text", None if status is None else "code", result, reward,
                Usage(10, 0, 5))


async def stream(turns: list[Turn], closed: list[bool]) -> AsyncIterator[Event]:
    best = None
    try:
        for t in turns:
            yield TurnStarted(t.turn, 1, 1)
            yield Evaluated(t)
            if t.result is not None and t.result.correct and (
                    best is None or (t.result.speedup or 0) > (best.result.speedup or 0)):
                best = t
                yield BestUpdated(t)
        yield Finished(best, turns, Usage(), False, "max_turns")
    finally:
        closed.append(True)


async def session(turns: list[Turn], budget: TurnBudget, target: float | None = None
                  ) -> tuple[ProblemRecord, list[bool]]:
    closed: list[bool] = []
    record, _ = await run_session("p", "p.py", stream(turns, closed), budget, target)
    return record, closed


async def test_session_stops_once_solved() -> None:
    budget = TurnBudget(["p"], base_turns=3, max_turns=3)
    turns = [turn(1, Status.CORRECT, 1.5, 1.25), turn(2, Status.CORRECT, 2.5, 1.75),
             turn(3, Status.CORRECT, 3.0, 2.0)]
    record, closed = await session(turns, budget, target=2.0)
    assert (record.outcome, record.best_turn, record.best_speedup) == ("solved", 2, 2.5)
    assert record.stop_reason == "solved" and budget.used == 2 and closed == [True]
    assert "p" in budget.done


async def test_session_without_target_uses_its_turns() -> None:
    budget = TurnBudget(["p"], base_turns=3, max_turns=3)
    turns = [turn(1, Status.COMPILE_ERROR), turn(2, Status.CORRECT, 1.1, 1.05),
             turn(3, Status.INCORRECT)]
    record, _ = await session(turns, budget)
    assert (record.outcome, record.best_turn, record.stop_reason) == ("correct", 2, "max_turns")
    assert [t.status for t in record.turns] == ["compile_error", "correct", "incorrect"]


async def test_session_asks_for_extra_turns_only_while_progressing() -> None:
    budget = TurnBudget(["p", "q"], base_turns=2, max_turns=4)
    budget.allow_turn("q", 1, True)
    budget.finish_problem("q")
    turns = [turn(1, None), turn(2, Status.COMPILE_ERROR), turn(3, Status.COMPILE_ERROR),
             turn(4, Status.CORRECT, None, 0.5)]
    record, _ = await session(turns, budget)
    # turn 2 compiled where turn 1 had no code: progress, so turn 3 came from q's spare turn;
    # turn 3 got no further, so there is no turn 4.
    assert record.turns_used == 3 and record.stop_reason == "budget"
    assert record.outcome == "failed" and record.usage.generated_tokens == 15


def record(name: str, speedups: list[float | None], correct_from: int | None) -> ProblemRecord:
    turns = [TurnRecord(i + 1, 0, "correct" if correct_from and i + 1 >= correct_from
                        else "incorrect", s, 0.0, 10) for i, s in enumerate(speedups)]
    best = max((t for t in turns if t.correct), key=lambda t: t.speedup or 0, default=None)
    return ProblemRecord(name, f"{name}.py", "correct" if best else "failed", turns,
                         best.turn if best else None, best.speedup if best else None)


def test_fast_p_counts_the_best_so_far_per_turn() -> None:
    records = [record("a", [None, 1.3, 2.5], 2), record("b", [None, None], None),
               record("c", [1.1, 0.9], 1), record("d", [], None)]
    assert [fast_p(records, 0, t) for t in (1, 2, 3)] == [0.25, 0.5, 0.5]
    assert [fast_p(records, 1.0, t) for t in (1, 2, 3)] == [0.25, 0.5, 0.5]
    assert [fast_p(records, 1.2, t) for t in (1, 2, 3)] == [0.0, 0.25, 0.25]
    assert fast_p(records, 2.0, 3) == 0.25 and fast_p([], 1.0, 1) == 0.0


def test_report_has_the_plots_and_every_problem() -> None:
    records = [record("fast<one>", [1.3, 2.5], 1), record("slow", [None], None)]
    records[0].kernel = "kernels/fast_one_.py"
    html = render_report(records)
    assert html.count("<svg") == 4
    for text in ("fast_p by turn", "fast_1.2", "fast_2", "best speedup per problem",
                 "problem outcomes", "turn outcomes", "fast&lt;one&gt;", "2.50x",
                 'href="kernels/fast_one_.py"'):
        assert text in html, text
    assert "fast<one>" not in html


def test_store_keeps_the_latest_record_and_survives_a_cut_line(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "out")
    store.append(ProblemRecord("a", "a.py", "error", error="BackendError: down"))
    store.append(ProblemRecord("b", "b.py", "failed"))
    assert store.finished() == {"b"}, "a session that errored is retried"
    store.append(ProblemRecord("a", "a.py", "solved", best_turn=1))
    with store.results.open("a") as f:
        f.write('{"name": "c", "path": "c.p')
    loaded = store.load()
    assert set(loaded) == {"a", "b"} and loaded["a"].outcome == "solved"
    assert store.finished() == {"a", "b"}
    assert store.save_kernel("x/y z", "code") == "kernels/x__y__z.py"
    assert (tmp_path / "out/kernels/x__y__z.py").read_text() == "code"
    line = json.loads(store.results.read_text().splitlines()[0])
    assert ProblemRecord.from_dict(line) == ProblemRecord("a", "a.py", "error",
                                                          error="BackendError: down")


def test_actor_plan_keeps_evaluators_off_the_model_gpus() -> None:
    plan = plan_actors({"GPU": 4.0, "CPU": 32.0}, generators=1, generator_gpus=1,
                       evaluators=None)
    assert (plan.generators, plan.evaluators, plan.evaluator_gpus) == (1, 3, 1.0)
    cpu = plan_actors({"CPU": 8.0}, generators=1, generator_gpus=0, evaluators=None)
    assert (cpu.evaluators, cpu.evaluator_gpus, cpu.generator_gpus) == (7, 0.0, 0.0)
    with pytest.raises(ValueError, match="none is left"):
        plan_actors({"GPU": 2.0}, generators=2, generator_gpus=1, evaluators=None)
