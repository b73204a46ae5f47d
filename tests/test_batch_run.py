"""Whole batches with the scripted backend and the real CPU evaluator: budget moving to the
problems still progressing, results, kernels, the report, resuming, and `--server`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from batch_support import EXAMPLES, ScriptedByProblem, answer, source
from server_harness import running

from evaluator import Evaluator
from refine import LoopConfig
from server.batch import (
    BatchProgress,
    BatchSettings,
    LocalSolver,
    ProblemRecord,
    ResultStore,
    TurnBudget,
    find_problems,
    loop_config_for,
    pending,
    run_batch,
)
from server.batch.remote import RemoteSolver
from server.client import AsyncClient

pytestmark = pytest.mark.asyncio(loop_scope="module")

PROBLEMS = [str(EXAMPLES / name / "reference.py") for name in ("add_mul", "gelu", "relu")]
COMPILE_ERROR = answer(source("broken/syntax_error.py"))
SCRIPTS = {
    "add_mul": [COMPILE_ERROR, COMPILE_ERROR, answer(source("add_mul/solution.py"))],
    "gelu": [answer(source("gelu/solution.py"))],
    "relu": [COMPILE_ERROR, answer(source("relu/wrong_mask.py")),
             answer(source("relu/solution.py"))],
}


EVALUATOR_TIMEOUT_S = 30


async def batch(out: Path, backend: ScriptedByProblem, evaluator: Evaluator,
                concurrency: int = 1) -> list[ProblemRecord]:
    problems = find_problems(PROBLEMS)
    settings = BatchSettings(out=out, concurrency=concurrency, turns=2, max_turns=4)
    store = ResultStore(out)
    budget = TurnBudget([p.name for p in pending(problems, store)], 2, settings.turn_cap)
    solver = LocalSolver(backend, evaluator, loop_config_for(LoopConfig(), settings), budget,
                         settings.target_speedup)
    return await run_batch(problems, solver, store, settings, BatchProgress(enabled=False))


def by_name(records: list[ProblemRecord]) -> dict[str, ProblemRecord]:
    """Keyed by example folder: `relu/reference` → `relu`."""
    return {r.name.split("/")[0]: r for r in records}


async def test_turns_left_by_a_solved_problem_go_to_one_still_progressing(
        tmp_path: Path, tokenizer: object, evaluator: Evaluator) -> None:
    records = by_name(await batch(tmp_path, ScriptedByProblem(tokenizer, SCRIPTS), evaluator))
    add_mul, gelu, relu = records["add_mul"], records["gelu"], records["relu"]
    assert (add_mul.outcome, add_mul.turns_used, add_mul.stop_reason) == ("failed", 2, "budget")
    assert (gelu.outcome, gelu.turns_used, gelu.best_turn) == ("solved", 1, 1)
    assert [t.status for t in relu.turns] == ["compile_error", "incorrect", "correct"]
    assert (relu.outcome, relu.best_turn) == ("solved", 3), "relu got gelu's spare turn"
    assert sum(r.turns_used for r in records.values()) == 6 == 3 * 2
    assert gelu.best_speedup is None, "the CPU judge measures no speed"


async def test_results_kernels_and_report(tmp_path: Path, tokenizer: object,
                                          evaluator: Evaluator) -> None:
    await batch(tmp_path, ScriptedByProblem(tokenizer, SCRIPTS), evaluator, concurrency=3)
    lines = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    names = sorted(line["name"] for line in lines)
    assert names == ["add_mul/reference", "gelu/reference", "relu/reference"]
    gelu = next(line for line in lines if line["name"] == "gelu/reference")
    assert gelu["kernel"] == "kernels/gelu__reference.py"
    assert (tmp_path / gelu["kernel"]).read_text() == source("gelu/solution.py")
    assert not (tmp_path / "kernels/add_mul__reference.py").exists()
    report = (tmp_path / "report.html").read_text()
    assert report.count("<svg") == 3 and "speed not measured on CPU" in report
    assert all(name in report for name in ("add_mul", "gelu", "relu"))


async def test_a_rerun_skips_finished_problems_and_retries_errors(
        tmp_path: Path, tokenizer: object, evaluator: Evaluator) -> None:
    no_gelu = {k: v for k, v in SCRIPTS.items() if k != "gelu"}
    first = by_name(await batch(tmp_path, ScriptedByProblem(tokenizer, no_gelu), evaluator))
    assert first["gelu"].outcome == "error" and "BackendError" in (first["gelu"].error or "")
    again = ScriptedByProblem(tokenizer, {"gelu": SCRIPTS["gelu"]})
    second = by_name(await batch(tmp_path, again, evaluator))
    assert again.calls() == 1, "only the errored problem ran again"
    assert second["gelu"].outcome == "solved"
    assert second["relu"] == first["relu"] and second["add_mul"] == first["add_mul"]
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == 4


async def test_batch_against_a_running_server(tmp_path: Path, tokenizer: object,
                                              evaluator: Evaluator) -> None:
    backend = ScriptedByProblem(tokenizer, {"gelu": SCRIPTS["gelu"], "relu": SCRIPTS["relu"]})
    problems = [p for p in find_problems(PROBLEMS) if not p.name.startswith("add_mul")]
    settings = BatchSettings(out=tmp_path, concurrency=2, turns=3)
    budget = TurnBudget([p.name for p in problems], settings.turns, settings.turn_cap)
    async with running(backend, evaluator) as server:
        client = AsyncClient(f"127.0.0.1:{server.port}")
        try:
            solver = RemoteSolver(client, {"max_turns": settings.turn_cap}, budget, None)
            records = by_name(await run_batch(problems, solver, ResultStore(tmp_path),
                                              settings, BatchProgress(enabled=False)))
        finally:
            await client.close()
    assert records["gelu"].outcome == "solved"
    assert [t.status for t in records["relu"].turns] == ["compile_error", "incorrect", "correct"]
    assert records["relu"].usage.generated_tokens > 0
    assert (tmp_path / "kernels/relu__reference.py").read_text() == source("relu/solution.py")
