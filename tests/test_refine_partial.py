"""A backend that fails on turn 3: the session ends `partial` and keeps its best kernel, in
the loop, over gRPC (a Finished event, then UNAVAILABLE), and in a batch record."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import grpc
import pytest
from server_harness import RELU, SOLUTION, WRONG, answer, running

from evaluator import Problem
from refine import Finished, Loop, LoopConfig
from refine.backends import BackendError
from refine.backends.scripted import ScriptedBackend
from server.batch import (
    BatchProgress,
    BatchSettings,
    LocalSolver,
    ResultStore,
    TurnBudget,
    find_problems,
    run_batch,
)
from server.client import AsyncClient
from server.commands import optimize

module_loop = pytest.mark.asyncio(loop_scope="module")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FAILURE = "the endpoint answered 502: upstream connect error"


def failing_on_turn_3(tokenizer: Any) -> ScriptedBackend:
    return ScriptedBackend(tokenizer, [answer(WRONG), answer(SOLUTION), BackendError(FAILURE)])


@module_loop
async def test_loop_ends_partial_with_the_best_kernel(tokenizer, evaluator) -> None:
    loop = Loop(failing_on_turn_3(tokenizer), evaluator, LoopConfig(max_turns=4))
    done = [e async for e in loop.run(Problem(RELU, "relu"))][-1]
    assert isinstance(done, Finished)
    assert done.partial and done.stop_reason == "backend_error"
    assert done.error == f"BackendError: {FAILURE}"
    assert [t.turn for t in done.turns] == [1, 2]
    assert done.best is not None and done.best.turn == 2 and done.best.code == SOLUTION


@module_loop
async def test_a_failure_on_the_first_turn_still_raises(tokenizer, evaluator) -> None:
    backend = ScriptedBackend(tokenizer, [BackendError(FAILURE)])
    with pytest.raises(BackendError, match="502"):
        _ = [e async for e in Loop(backend, evaluator).run(Problem(RELU, "relu"))]


@module_loop
async def test_grpc_sends_finished_with_the_best_then_unavailable(tokenizer, evaluator) -> None:
    events = []
    async with running(failing_on_turn_3(tokenizer), evaluator) as server, \
            AsyncClient(f"127.0.0.1:{server.port}") as client:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            async for event in client.optimize(RELU, policy={"max_turns": 4}, timeout_s=60):
                events.append(event)
    finished = events[-1].finished
    assert finished.partial and finished.summary.stop_reason == "backend_error"
    assert finished.best.turn == 2 and finished.best.code == SOLUTION
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert FAILURE in failed.value.details() and "after 2 turns" in failed.value.details()


@module_loop
async def test_batch_record_keeps_the_turns_done(tokenizer, evaluator,
                                                           tmp_path: Path) -> None:
    problems = find_problems([str(EXAMPLES / "relu/reference.py")])
    settings = BatchSettings(out=tmp_path, turns=4, max_turns=4)
    store = ResultStore(tmp_path)
    budget = TurnBudget([p.name for p in problems], 4, 4)
    # A correct kernel on CPU solves the problem, so both judged turns here fall short.
    backend = ScriptedBackend(tokenizer, [answer(WRONG), "no code", BackendError(FAILURE)])
    solver = LocalSolver(backend, evaluator, LoopConfig(max_turns=4), budget, None)
    [record] = await run_batch(problems, solver, store, settings, BatchProgress(enabled=False))
    assert record.outcome == "error" and record.stop_reason == "backend_error"
    assert record.error == f"BackendError: {FAILURE}"
    assert [t.status for t in record.turns] == ["incorrect", "format_error"]
    assert record.single_shot is not None and not record.single_shot.correct
    assert store.finished() == set(), "a rerun tries the problem again"
    assert ResultStore(tmp_path).load()["reference"].turns == record.turns


def test_optimize_writes_transcript_and_best_and_exits_3(tokenizer, tmp_path: Path,
                                                         monkeypatch) -> None:
    monkeypatch.setattr(optimize, "load_backend",
                        lambda *args, **kwargs: failing_on_turn_3(tokenizer))
    parser = argparse.ArgumentParser(prog="drkernel")
    optimize.add_parser(parser.add_subparsers())
    reference = tmp_path / "relu.py"
    reference.write_text(RELU)
    args = parser.parse_args(["optimize", str(reference), "--backend", "openai", "--turns", "4",
                              "--device", "cpu", "--workers", "1", "--out", str(tmp_path)])
    assert optimize.run(args) == optimize.EXIT_PARTIAL == 3
    assert (tmp_path / "best.py").read_text() == SOLUTION
    record = json.loads((tmp_path / "transcript.json").read_text())
    assert record["partial"] and record["stop_reason"] == "backend_error"
    assert record["error"] == f"BackendError: {FAILURE}"
    assert [t["turn"] for t in record["turns"]] == [1, 2] and record["best"]["turn"] == 2
