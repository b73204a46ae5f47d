"""Sequential refinement: generate, evaluate, feed the verdict back, keep the best candidate.

The loop only sequences the pure steps (`build_prompt`, `extract_code`, `render_feedback`,
`pick_best`, `select_window`) and owns time, budgets and cancellation.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from evaluator import EvalResult, Problem, RewardConfig, reward
from refine.backends.protocol import Backend, BackendError, PromptTooLong
from refine.best import is_better, pick_context
from refine.chat import ChatFormat, Prompt
from refine.config import LoopConfig
from refine.events import (
    BestUpdated,
    Evaluated,
    Event,
    Finished,
    Generated,
    Turn,
    TurnStarted,
    Usage,
)
from refine.extraction import extract_code
from refine.feedback import render_feedback
from refine.prompts import build_prompt, load_template
from refine.window import select_window


class Judge(Protocol):
    """What the loop needs of `evaluator.Evaluator`."""

    async def evaluate(self, problem: Problem, candidate: str) -> EvalResult: ...


class Loop:
    """Reusable and shareable: each `run` keeps its own state."""

    def __init__(self, backend: Backend, evaluator: Judge, config: LoopConfig | None = None,
                 reward_config: RewardConfig | None = None):
        self.backend = backend
        self.evaluator = evaluator
        self.config = config or LoopConfig()
        self.reward_config = reward_config or RewardConfig()
        self.chat = ChatFormat(backend.tokenizer)
        self.template = load_template(self.config.prompt_template)

    async def run(self, problem: Problem, deadline: float | None = None,
                  prompt: str | None = None) -> AsyncGenerator[Event, None]:
        """Events of one session; `deadline` is a `time.monotonic()` instant; `prompt` is
        the first user message verbatim (a data set's), instead of the template's.

        A backend failure on the first turn raises; after it, the session ends `partial`
        with stop reason `backend_error` and keeps its best candidate. Cancelling the
        consumer cancels generation and evaluation in flight, then re-raises.
        """
        async for event in _Run(self, problem, deadline, prompt).events():
            yield event


@dataclass
class _Step:
    """A turn the conversation continued from (the best sample of its turn)."""

    turn: Turn
    response_ids: list[int]
    feedback_ids: list[int]
    rank: float
    """The turn's reward without the coverage term, which ranks STTS windows (Dr.Kernel's
    evaluation turns the profiling reward off)."""


class _OutOfTime(Exception):
    pass


class _Run:
    def __init__(self, loop: Loop, problem: Problem, deadline: float | None,
                 prompt: str | None):
        self.loop = loop
        self.config = loop.config
        self.problem = problem
        self.started = time.monotonic()
        self.limits = [(at, why) for at, why in (
            (deadline, "deadline"),
            (self.started + self.config.max_wall_s if self.config.max_wall_s is not None else None,
             "wall_time"),
        ) if at is not None]
        self.first = loop.chat.first_turn(
            prompt if prompt is not None else build_prompt(problem, loop.template))
        self.rank_config = dataclasses.replace(loop.reward_config, coverage_reward=False)
        self.iteration = 1
        self.iteration_turns = 0
        self.error = ""
        self.turns: list[Turn] = []
        self.steps: list[_Step] = []
        self.best: Turn | None = None
        self.usage = Usage()
        self.idle_turns = 0

    async def events(self) -> AsyncIterator[Event]:
        turn_no, stop_reason = 1, "max_turns"
        while self._next_iteration():
            if reason := self._out_of_time() or self._over_budget():
                stop_reason = reason
                break
            yield TurnStarted(turn_no, self.iteration, self.config.samples_per_turn)
            try:
                async for event in self._turn(turn_no, self._context(self.iteration)):
                    yield event
            except _OutOfTime:
                stop_reason = self._out_of_time() or "deadline"
                break
            except PromptTooLong:
                if self._window_shrinks():
                    self.iteration, self.iteration_turns = self.iteration + 1, 0
                    continue
                stop_reason = "context_length"
                break
            except BackendError as exc:
                if not self.turns:
                    raise
                stop_reason, self.error = "backend_error", f"{type(exc).__name__}: {exc}"
                break
            self.iteration_turns += 1
            if reason := self._stop_after_turn():
                stop_reason = reason
                break
            turn_no += 1
        yield self._finished(stop_reason)

    def _next_iteration(self) -> bool:
        """Moves to the iteration the next turn belongs to; False once the policy has no
        more turns. Window mode: a first episode, then iterations of one turn each."""
        cfg = self.config
        if cfg.history == "all":
            return self.iteration_turns < cfg.max_turns
        if self.iteration_turns >= (cfg.episode_turns if self.iteration == 1 else 1):
            self.iteration, self.iteration_turns = self.iteration + 1, 0
        return self.iteration <= cfg.iterations

    def _window_shrinks(self) -> bool:
        """After a prompt too long for the context, may the next iteration go on from the
        best window? Upstream ends only the iteration ("Prompt Overlong"). Only the first
        episode's context holds more turns than the window; a later iteration's context is
        the window itself, and the next would start from the very same turns and overflow
        again, so the session ends instead."""
        cfg = self.config
        return (cfg.history == "window" and self.iteration == 1 < cfg.iterations
                and len(self.steps) > cfg.window_turns)

    def _context(self, iteration: int) -> Prompt:
        if iteration == 1:
            steps = self.steps
        else:
            window = select_window([s.rank for s in self.steps], self.config.window_turns)
            steps = [self.steps[i] for i in window]
        prompt = self.first
        for step in steps:
            prompt = self.loop.chat.next_turn(prompt, step.response_ids, step.turn.response,
                                              step.turn.feedback, step.feedback_ids)
        return prompt

    async def _turn(self, turn_no: int, prompt: Prompt) -> AsyncIterator[Event]:
        queue: asyncio.Queue[Event | asyncio.Task[_Step]] = asyncio.Queue()
        tasks = [asyncio.create_task(self._sample(turn_no, sample, prompt, queue))
                 for sample in range(self.config.samples_per_turn)]
        for task in tasks:
            task.add_done_callback(queue.put_nowait)
        done: list[_Step] = []
        try:
            while len(done) < len(tasks):
                item = await self._next(queue)
                if isinstance(item, asyncio.Task):
                    done.append(item.result())
                    continue
                yield item
                if isinstance(item, Evaluated) and is_better(item.turn, self.best):
                    self.best = item.turn
                    yield BestUpdated(item.turn)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        chosen = pick_context(step.turn for step in done)
        self.steps.append(next(step for step in done if step.turn is chosen))

    async def _next(self, queue: asyncio.Queue[Event | asyncio.Task[_Step]]
                    ) -> Event | asyncio.Task[_Step]:
        remaining = self._remaining_s()
        if remaining is None:
            return await queue.get()
        try:
            return await asyncio.wait_for(queue.get(), timeout=max(remaining, 0.0))
        except TimeoutError:
            raise _OutOfTime from None

    async def _sample(self, turn_no: int, sample: int, prompt: Prompt,
                      queue: asyncio.Queue[Event | asyncio.Task[_Step]]) -> _Step:
        loop, started = self.loop, time.monotonic()
        generation = await loop.backend.generate(prompt, self.config.sampling)
        generate_s = time.monotonic() - started
        self.usage.add(generation.usage)
        code = extract_code(generation.text)
        queue.put_nowait(Generated(turn_no, sample, generation.text, code, generation.usage,
                                   generate_s, generation.finish_reason))
        result, started = None, time.monotonic()
        if code is not None:
            result = await loop.evaluator.evaluate(self.problem, code)
        score = reward(result, loop.reward_config) if result is not None else 0.0
        turn = Turn(turn_no, sample, generation.text, code, result, score, generation.usage,
                    generate_s, time.monotonic() - started, generation.finish_reason,
                    render_feedback(result, score, self.config.feedback_format))
        self.turns.append(turn)
        queue.put_nowait(Evaluated(turn))
        rank = reward(result, self.rank_config) if result is not None else 0.0
        return _Step(turn, generation.token_ids, loop.chat.feedback_ids(turn.feedback), rank)

    def _stop_after_turn(self) -> str | None:
        turn = self.steps[-1].turn.turn
        improved = self.best is not None and self.best.turn == turn
        self.idle_turns = 0 if improved else self.idle_turns + 1
        target = self.config.target_speedup
        speedup = self.best.result.speedup if self.best and self.best.result else None
        if target is not None and speedup is not None and speedup >= target:
            return "target_speedup"
        patience = self.config.patience_turns
        if patience is not None and self.idle_turns >= patience:
            return "no_improvement"
        return None

    def _over_budget(self) -> str | None:
        budget = self.config.max_generated_tokens
        if budget is not None and self.usage.generated_tokens >= budget:
            return "token_budget"
        return None

    def _remaining_s(self) -> float | None:
        if not self.limits:
            return None
        return min(at for at, _ in self.limits) - time.monotonic()

    def _out_of_time(self) -> str | None:
        now = time.monotonic()
        return next((why for at, why in sorted(self.limits) if at <= now), None)

    def _finished(self, stop_reason: str) -> Finished:
        return Finished(
            best=self.best,
            turns=sorted(self.turns, key=lambda t: (t.turn, t.sample)),
            usage=self.usage,
            partial=stop_reason in ("deadline", "wall_time", "backend_error"),
            stop_reason=stop_reason,
            elapsed_s=time.monotonic() - self.started,
            prompt=self.first.messages[0]["content"],
            error=self.error,
        )
