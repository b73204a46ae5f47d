"""The loop with the scripted backend and the real CPU evaluator."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from evaluator import EvalResult, Problem, Status
from refine import (
    BestUpdated,
    Evaluated,
    Event,
    Finished,
    Generated,
    Loop,
    LoopConfig,
    SamplingConfig,
    TurnStarted,
)
from refine.backends.scripted import ScriptedBackend

pytestmark = pytest.mark.asyncio(loop_scope="module")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
RELU = Problem((EXAMPLES / "relu/reference.py").read_text(), "relu")
SOLUTION = (EXAMPLES / "relu/solution.py").read_text()
WRONG = (EXAMPLES / "relu/wrong_mask.py").read_text()
COMPILE_ERROR = (EXAMPLES / "broken/syntax_error.py").read_text()
HANGS = (EXAMPLES / "broken/timeout.py").read_text()


def answer(code: str) -> str:
    return f"Here is the kernel.\n```python\n{code}```\n"


async def collect(loop: Loop, deadline: float | None = None) -> list[Event]:
    return [event async for event in loop.run(RELU, deadline=deadline)]


def finished(events: list[Event]) -> Finished:
    last = events[-1]
    assert isinstance(last, Finished)
    return last


async def test_best_survives_a_worse_later_turn(tokenizer, evaluator) -> None:
    backend = ScriptedBackend(tokenizer, [answer(WRONG), answer(SOLUTION), answer(COMPILE_ERROR)])
    events = await collect(Loop(backend, evaluator, LoopConfig(max_turns=3)))
    done = finished(events)
    statuses = [t.result.status if t.result else None for t in done.turns]
    assert statuses == [Status.INCORRECT, Status.CORRECT, Status.COMPILE_ERROR]
    assert done.best is not None and done.best.turn == 2
    assert [e.turn.turn for e in events if isinstance(e, BestUpdated)] == [2]
    assert done.stop_reason == "max_turns" and not done.partial
    assert [type(e) for e in events[:4]] == [TurnStarted, Generated, Evaluated, TurnStarted]


async def test_compile_error_text_reaches_next_prompt(tokenizer, evaluator) -> None:
    backend = ScriptedBackend(tokenizer, [answer(COMPILE_ERROR), "no code at all", "still none"])
    config = LoopConfig(max_turns=3, feedback_format="concise")
    done = finished(await collect(Loop(backend, evaluator, config)))
    first = done.turns[0]
    assert first.result is not None and first.result.error is not None
    second_prompt = backend.prompts[1].messages[-1]["content"]
    assert "Status: compile_error" in second_prompt
    assert first.result.error.message in second_prompt
    assert done.turns[1].format_error and done.turns[1].reward == 0.0
    assert "Status: format_error" in backend.prompts[2].messages[-1]["content"]
    assert done.best is None


async def test_prompts_extend_previous_prompt_and_output(tokenizer, evaluator) -> None:
    backend = ScriptedBackend(tokenizer, [answer(WRONG), "thinking, no block", answer(SOLUTION)])
    done = finished(await collect(Loop(backend, evaluator, LoopConfig(max_turns=3))))
    for before, after, turn in zip(backend.prompts, backend.prompts[1:], done.turns, strict=False):
        output = tokenizer.encode(turn.response, add_special_tokens=False)
        assert after.token_ids[:len(before.token_ids) + len(output)] == before.token_ids + output
    feedback = backend.prompts[1].messages[-1]["content"]
    assert '"status": "completed"' in feedback and '"correctness": false' in feedback


async def test_stops_after_patience_turns_without_improvement(tokenizer, evaluator) -> None:
    backend = ScriptedBackend(tokenizer, [answer(SOLUTION), "a", "b", "c", "d"])
    config = LoopConfig(max_turns=5, patience_turns=2)
    done = finished(await collect(Loop(backend, evaluator, config)))
    assert done.stop_reason == "no_improvement"
    assert len(done.turns) == 3 and len(backend.prompts) == 3


class MeasuredJudge:
    """Stands in for a GPU evaluator: the CPU one cannot measure a speedup."""

    def __init__(self, speedups: list[float]):
        self.speedups = speedups

    async def evaluate(self, problem: Problem, candidate: str) -> EvalResult:
        return EvalResult(status=Status.CORRECT, compiled=True, correct=True,
                          speedup=self.speedups.pop(0))


async def test_stops_at_target_speedup(tokenizer) -> None:
    backend = ScriptedBackend(tokenizer, [answer(SOLUTION)] * 4)
    judge = MeasuredJudge([0.8, 1.6, 2.5, 3.0])
    done = finished(await collect(Loop(backend, judge, LoopConfig(max_turns=4,
                                                                 target_speedup=1.5))))
    assert done.stop_reason == "target_speedup"
    assert done.best is not None and done.best.turn == 2
    assert len(done.turns) == 2


async def test_window_scheme_keeps_best_consecutive_turns(tokenizer, evaluator) -> None:
    responses = ["none 1", answer(WRONG), answer(SOLUTION), "none 4", "none 5", "none 6"]
    backend = ScriptedBackend(tokenizer, responses)
    config = LoopConfig(history="window", episode_turns=4, window_turns=2, iterations=3)
    events = await collect(Loop(backend, evaluator, config))
    done = finished(events)
    assert [e.iteration for e in events if isinstance(e, TurnStarted)] == [1, 1, 1, 1, 2, 3]
    assert len(done.turns) == 6
    # Rewards [0, 0, 0.5, 0]: the best window of two is turns 2-3 (earliest of the ties).
    fifth = [m["content"] for m in backend.prompts[4].messages if m["role"] == "assistant"]
    assert fifth == [responses[1], responses[2]]
    # Rewards [0, 0, 0.5, 0, 0]: still turns 2-3, not the newest turn.
    sixth = [m["content"] for m in backend.prompts[5].messages if m["role"] == "assistant"]
    assert sixth == [responses[1], responses[2]]
    first_ids = backend.prompts[0].token_ids
    assert backend.prompts[5].token_ids[:len(first_ids)] == first_ids


async def test_context_follows_best_sample(tokenizer, evaluator) -> None:
    backend = ScriptedBackend(tokenizer, [answer(WRONG), answer(SOLUTION), "x", "y"],
                              delays_s=[2.0, 0.0])
    config = LoopConfig(max_turns=2, samples_per_turn=2)
    events = await collect(Loop(backend, evaluator, config))
    generated = [(e.turn, e.sample) for e in events if isinstance(e, Generated)]
    assert generated[:2] == [(1, 1), (1, 0)]
    # The fast sample is judged while the slow one is still generating.
    judged = next(i for i, e in enumerate(events) if isinstance(e, Evaluated))
    slow = next(i for i, e in enumerate(events) if isinstance(e, Generated) and e.sample == 0)
    assert judged < slow and events[judged].turn.sample == 1
    assert backend.prompts[2].messages[1]["content"] == answer(SOLUTION)
    assert backend.prompts[2].token_ids == backend.prompts[3].token_ids
    done = finished(events)
    assert done.best is not None and (done.best.turn, done.best.sample) == (1, 1)


async def test_deadline_returns_best_so_far_as_partial(tokenizer, evaluator) -> None:
    backend = ScriptedBackend(tokenizer, [answer(SOLUTION), answer(SOLUTION)], delays_s=[0, 60])
    started = time.monotonic()
    done = finished(await collect(Loop(backend, evaluator, LoopConfig(max_turns=2)),
                                  deadline=time.monotonic() + 3))
    assert time.monotonic() - started < 15
    assert done.partial and done.stop_reason == "deadline"
    assert done.best is not None and done.best.turn == 1
    assert len(done.turns) == 1


async def test_cancelling_the_consumer_frees_the_evaluator(tokenizer, evaluator) -> None:
    backend = ScriptedBackend(tokenizer, [answer(HANGS)])
    loop = Loop(backend, evaluator, LoopConfig(max_turns=1))
    generated = asyncio.Event()

    async def consume() -> None:
        async for event in loop.run(RELU):
            if isinstance(event, Generated):
                generated.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(generated.wait(), 10)
    await asyncio.sleep(0.5)
    assert evaluator.in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert evaluator.in_flight == 0
    started = time.monotonic()
    results = await asyncio.gather(evaluator.evaluate(RELU, SOLUTION),
                                   evaluator.evaluate(RELU, SOLUTION))
    assert [r.status for r in results] == [Status.CORRECT, Status.CORRECT]
    assert time.monotonic() - started < 15


async def test_token_budget_stops_between_turns(tokenizer, evaluator) -> None:
    backend = ScriptedBackend(tokenizer, ["a " * 50, "b", "c"])
    config = LoopConfig(max_turns=3, max_generated_tokens=10,
                        sampling=SamplingConfig(max_new_tokens=64))
    done = finished(await collect(Loop(backend, evaluator, config)))
    assert done.stop_reason == "token_budget" and not done.partial
    assert len(done.turns) == 1 and done.usage.generated_tokens >= 10


async def test_loops_share_backend_and_evaluator_concurrently(tokenizer, evaluator) -> None:
    backend = ScriptedBackend(tokenizer, [answer(SOLUTION), answer(WRONG)], delays_s=[2, 2])
    loop = Loop(backend, evaluator, LoopConfig(max_turns=1))
    started = time.monotonic()
    first, second = await asyncio.gather(collect(loop), collect(loop))
    assert time.monotonic() - started < 3.8  # one after the other would take 4 s or more
    assert finished(first).best is not None and finished(second).best is None
