"""The KernelOptimizer servicer: thin methods over the loop and the evaluator."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import time
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import Protocol, TypeVar

import grpc
import structlog

from evaluator import EvalConfig, EvalResult, Problem, RewardConfig, extract_code
from protos.drkernel.v1 import optimizer_pb2 as pb
from protos.drkernel.v1 import optimizer_pb2_grpc as pb_grpc
from refine.backends.protocol import Backend, BackendDead
from refine.config import LoopConfig
from refine.events import Evaluated, Event, Finished
from refine.loop import Loop
from server import metrics, requests
from server.admission import Admission
from server.boundary import deadline_passed
from server.errors import InvalidRequest, NoCandidate, Unavailable
from server.mapping import event_to_proto, result_to_proto, turn_status
from server.models.module_request import BuildError, BuildLimits, ModuleSpec, build_problem

log = structlog.get_logger("drkernel.session")
T = TypeVar("T")


class Evaluator(Protocol):
    """What the service needs of `evaluator.Evaluator`; its verdicts carry their reward."""

    @property
    def queue_depth(self) -> int: ...

    async def evaluate(self, problem: Problem, candidate: str,
                       config: EvalConfig | None = None) -> EvalResult: ...


class _Judge:
    """The evaluator with one request's settings, as the loop sees it."""

    def __init__(self, evaluator: Evaluator, config: EvalConfig):
        self.evaluator = evaluator
        self.config = config

    async def evaluate(self, problem: Problem, candidate: str) -> EvalResult:
        return await self.evaluator.evaluate(problem, candidate, config=self.config)


class KernelOptimizerService(pb_grpc.KernelOptimizerServicer):
    def __init__(self, *, backend: Backend, evaluator: Evaluator, admission: Admission,
                 loop_config: LoopConfig, eval_config: EvalConfig, reward_config: RewardConfig,
                 deadline_margin_s: float, info: pb.ServerInfo):
        self.backend = backend
        self.evaluator = evaluator
        self.admission = admission
        self.loop_config = loop_config
        self.eval_config = eval_config
        self.reward_config = reward_config
        self.deadline_margin_s = deadline_margin_s
        self.info = info
        self.max_source_bytes = eval_config.max_source_bytes
        # A Loop renders its chat frame once; requests with the same settings share one.
        self._loop = functools.lru_cache(maxsize=32)(self._build_loop)

    async def Optimize(self, request: pb.OptimizeRequest, context: grpc.aio.ServicerContext
                       ) -> AsyncIterator[pb.OptimizeEvent]:
        if self.backend.dead:
            raise BackendDead(f"the {self.backend.name} backend is dead; retry on another "
                              "replica")
        module = requests.module_spec(request, self.max_source_bytes)
        problem = None if module else requests.problem(request.reference, request.name,
                                                        self.max_source_bytes)
        loop = self._loop(requests.loop_config(request, self.loop_config),
                          requests.eval_config(request.evaluator, self.eval_config))
        deadline = self._deadline(context)
        with self.admission.session():
            outcome = "failed"
            try:
                if module is not None:
                    problem, built = await self._module_problem(module, request.name)
                    yield pb.OptimizeEvent(problem_built=built)
                assert problem is not None
                async for event in loop.run(problem, deadline):
                    _record(event)
                    if isinstance(event, Finished):
                        if event.stop_reason == "deadline" and not event.turns:
                            outcome = "deadline"
                            raise NoCandidate("the deadline passed before any candidate")
                        outcome = "partial" if event.partial else "completed"
                    yield event_to_proto(event)
                    if isinstance(event, Finished) and event.stop_reason == "backend_error":
                        # The best so far went out in the Finished event; the status says
                        # why the session could not run its course.
                        raise Unavailable(f"the {self.backend.name} backend failed after "
                                          f"{len(event.turns)} turns: {event.error}")
            except asyncio.CancelledError:
                outcome = "deadline" if deadline_passed(context) else "cancelled"
                raise
            finally:
                metrics.SESSIONS.labels(outcome).inc()

    async def _module_problem(self, module: ModuleSpec, name: str
                              ) -> tuple[Problem, pb.ProblemBuilt]:
        """The problem a module request stands for, written in the sandbox."""
        cfg = self.eval_config
        limits = BuildLimits(cfg.timeout_s, cfg.memory_mb, cfg.max_processes,
                             cfg.max_output_bytes)
        try:
            built = await build_problem(module, limits)
        except BuildError as exc:
            raise InvalidRequest(f"module {module.class_name}: {exc}") from None
        problem = requests.problem(built.reference, name or module.class_name,
                                   self.max_source_bytes, field="the module's problem")
        return problem, pb.ProblemBuilt(reference=built.reference, how=built.how,
                                        note=built.note)

    async def Evaluate(self, request: pb.EvaluateRequest, context: grpc.aio.ServicerContext
                       ) -> pb.EvaluateResponse:
        problem = requests.problem(request.reference, request.name, self.max_source_bytes)
        requests.check_source(request.candidate, self.max_source_bytes, "candidate")
        config = requests.eval_config(request.evaluator, self.eval_config)
        with self.admission.evaluations(1):
            result = await self._judge(problem, request.candidate, config)
        return pb.EvaluateResponse(result=result_to_proto(result), reward=result.reward)

    async def ComputeRewards(self, request: pb.RewardRequest, context: grpc.aio.ServicerContext
                             ) -> pb.RewardResponse:
        limit = self.info.limits.max_reward_items
        if len(request.items) > limit:
            raise InvalidRequest(f"{len(request.items)} items, the limit is {limit}")
        config = requests.eval_config(request.evaluator, self.eval_config)
        items = []
        for i, item in enumerate(request.items):
            problem = requests.problem(item.reference, item.name, self.max_source_bytes,
                                       field=f"items[{i}].reference")
            requests.check_source(item.response, self.max_source_bytes, f"items[{i}].response")
            items.append((problem, item.response))
        with self.admission.evaluations(len(items)):
            results = await _all([self._reward_item(p, r, config) for p, r in items])
        return pb.RewardResponse(results=results)

    async def GetServerInfo(self, request: pb.GetServerInfoRequest,
                            context: grpc.aio.ServicerContext) -> pb.ServerInfo:
        return self.info

    async def _reward_item(self, problem: Problem, response: str, config: EvalConfig
                           ) -> pb.RewardItemResult:
        code = extract_code(response)
        if code is None:
            return pb.RewardItemResult(reward=0.0, format_error=True)
        result = await self._judge(problem, code, config)
        return pb.RewardItemResult(reward=result.reward, result=result_to_proto(result))

    async def _judge(self, problem: Problem, candidate: str, config: EvalConfig) -> EvalResult:
        result = await self.evaluator.evaluate(problem, candidate, config=config)
        metrics.EVALUATIONS.labels(result.status.value).inc()
        return result

    def _build_loop(self, loop_config: LoopConfig, eval_config: EvalConfig) -> Loop:
        return Loop(self.backend, _Judge(self.evaluator, eval_config), loop_config,
                    self.reward_config)

    def _deadline(self, context: grpc.aio.ServicerContext) -> float | None:
        """The client's deadline, early enough that the final event still reaches it."""
        remaining = context.time_remaining()
        if remaining is None:
            return None
        if remaining <= self.deadline_margin_s:
            raise InvalidRequest(
                f"the call's deadline ({remaining:.2f} s left) is shorter than the server's "
                f"safety margin of {self.deadline_margin_s:g} s (deadline_margin_s): allow "
                "time for at least one turn")
        return time.monotonic() + remaining - self.deadline_margin_s


def _record(event: Event) -> None:
    metrics.observe_event(event)
    if isinstance(event, Evaluated):
        turn = event.turn
        result = turn.result
        log.info("turn", turn=turn.turn, sample=turn.sample, status=turn_status(turn),
                 reward=turn.reward, speedup=result.speedup if result else None,
                 generate_s=round(turn.generate_s, 3), evaluate_s=round(turn.evaluate_s, 3),
                 prompt_tokens=turn.usage.prompt_tokens,
                 cached_tokens=turn.usage.cached_tokens,
                 generated_tokens=turn.usage.generated_tokens,
                 code_bytes=len(turn.code or ""), code_sha256=_digest(turn.code))
        log.debug("turn.code", turn=turn.turn, sample=turn.sample, code=turn.code)
    elif isinstance(event, Finished):
        best = event.best
        log.info("session", stop_reason=event.stop_reason, partial=event.partial,
                 turns=len(event.turns), best_turn=best.turn if best else None,
                 best_reward=best.reward if best else None,
                 elapsed_s=round(event.elapsed_s, 3), generated_tokens=event.usage.generated_tokens)


def _digest(code: str | None) -> str | None:
    return None if code is None else hashlib.sha256(code.encode()).hexdigest()[:16]


async def _all(jobs: Sequence[Coroutine[object, object, T]]) -> list[T]:
    """All results in order; on failure or cancellation, the other jobs are cancelled too."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
