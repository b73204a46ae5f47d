"""`--ray`: evaluations on Ray actors pinned to one GPU each (one CPU each where the
cluster has no GPU); loops on generator actors, each holding one model replica, spread over
the cluster. The driver only schedules problems and writes results.

Every actor takes a whole GPU, so no kernel is ever timed on a GPU that runs the model.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from evaluator import EvalConfig, EvalResult, Evaluator, Problem, RewardConfig
from refine import LoopConfig
from refine.backends import Backend
from server.batch.budget import TurnBudget
from server.batch.problems import ProblemFile
from server.batch.runner import LocalSolver, Solved, Solver, error_record

BackendFactory = Callable[[], Backend]


@dataclass(frozen=True)
class ActorPlan:
    generators: int
    generator_gpus: float
    evaluators: int
    evaluator_gpus: float
    """1 on a GPU cluster; 0 (one CPU per evaluator) without GPUs."""


def plan_actors(resources: dict[str, float], generators: int, generator_gpus: float,
                evaluators: int | None) -> ActorPlan:
    """By default every GPU the generators leave becomes an evaluator."""
    gpus = int(resources.get("GPU", 0))
    if gpus == 0:
        count = evaluators or max(1, int(resources.get("CPU", 1)) - 1)
        return ActorPlan(generators, 0.0, count, 0.0)
    left = gpus - int(generators * generator_gpus)
    count = evaluators if evaluators is not None else left
    if count < 1:
        raise ValueError(f"the cluster has {gpus} GPU(s) and the generators take "
                         f"{gpus - left}: none is left to time kernels on")
    return ActorPlan(generators, generator_gpus, count, 1.0)


class EvaluatorActor:
    """One evaluator worker on the actor's own device; one evaluation at a time."""

    def __init__(self, config: EvalConfig, reward_config: RewardConfig):
        self.evaluator = Evaluator(workers=1, config=config, reward_config=reward_config)

    async def evaluate(self, problem: Problem, candidate: str) -> EvalResult:
        await self.evaluator.start()
        return await self.evaluator.evaluate(problem, candidate)

    async def close(self) -> None:
        await self.evaluator.close()


class ActorJudge:
    """The loop's `Judge` over evaluator actors: each job goes to an idle actor."""

    def __init__(self, actors: Sequence[Any]):
        self._idle: asyncio.Queue[Any] = asyncio.Queue()
        for actor in actors:
            self._idle.put_nowait(actor)

    async def evaluate(self, problem: Problem, candidate: str) -> EvalResult:
        actor = await self._idle.get()
        try:
            result: EvalResult = await actor.evaluate.remote(problem, candidate)
            return result
        finally:
            self._idle.put_nowait(actor)


class BudgetActor:
    def __init__(self, budget: TurnBudget):
        self.budget = budget

    def allow_turn(self, name: str, turn: int, improving: bool) -> bool:
        return self.budget.allow_turn(name, turn, improving)

    def finish_problem(self, name: str) -> None:
        self.budget.finish_problem(name)

    def turns_used(self) -> int:
        return self.budget.used


class ActorGate:
    def __init__(self, actor: Any):
        self.actor = actor

    async def allow(self, name: str, turn: int, improving: bool) -> bool:
        allowed: bool = await self.actor.allow_turn.remote(name, turn, improving)
        return allowed

    async def finish(self, name: str) -> None:
        await self.actor.finish_problem.remote(name)


class GeneratorActor:
    """A model replica running many loops; evaluations go to the evaluator actors."""

    def __init__(self, make_backend: BackendFactory, loop_config: LoopConfig,
                 evaluators: list[Any], budget: Any, target_speedup: float | None,
                 reward_config: RewardConfig | None = None):
        self.backend = make_backend()
        self.solver = LocalSolver(self.backend, ActorJudge(evaluators), loop_config,
                                  ActorGate(budget), target_speedup, reward_config)

    async def solve(self, problem: ProblemFile) -> Solved:
        return await self.solver(problem)

    async def close(self) -> None:
        await self.backend.close()


@dataclass
class RayCluster:
    """The actors of one batch; `close` stops them."""

    generators: list[Any]
    evaluators: list[Any]
    budget: Any
    load: list[int]

    def solver(self) -> Solver:
        import ray

        async def solve(problem: ProblemFile) -> Solved:
            index = self.load.index(min(self.load))
            self.load[index] += 1
            try:
                solved: Solved = await self.generators[index].solve.remote(problem)
                return solved
            except ray.exceptions.RayError as error:
                return error_record(problem, error)
            finally:
                self.load[index] -= 1

        return solve

    async def close(self) -> None:
        await asyncio.gather(*(a.close.remote() for a in self.generators + self.evaluators),
                             return_exceptions=True)


def connect(address: str | None, python_path: Sequence[str] = (),
            num_cpus: int | None = None) -> dict[str, float]:
    """Joins the cluster at `address` (or $RAY_ADDRESS), else starts one on this machine
    whose workers import from `python_path`; returns the cluster's resources."""
    import ray

    if address is None and "RAY_ADDRESS" not in os.environ:
        env = {"PYTHONPATH": os.pathsep.join(python_path)} if python_path else {}
        ray.init(include_dashboard=False, num_cpus=num_cpus, log_to_driver=False,
                 runtime_env={"env_vars": env})
    else:
        ray.init(address=address, log_to_driver=False)
    return dict(ray.cluster_resources())


def start_actors(plan: ActorPlan, budget: TurnBudget, make_backend: BackendFactory,
                 loop_config: LoopConfig, eval_config: EvalConfig,
                 reward_config: RewardConfig, target_speedup: float | None) -> RayCluster:
    import ray

    eval_device = "cuda" if plan.evaluator_gpus else "cpu"
    evaluator_cls = ray.remote(EvaluatorActor).options(
        num_gpus=plan.evaluator_gpus, num_cpus=0 if plan.evaluator_gpus else 1,
        max_restarts=2)
    evaluators = [evaluator_cls.remote(eval_config.replace(device=eval_device), reward_config)
                  for _ in range(plan.evaluators)]
    budget_actor = ray.remote(BudgetActor).options(num_cpus=0).remote(budget)
    generator_cls = ray.remote(GeneratorActor).options(num_gpus=plan.generator_gpus, num_cpus=0)
    generators = [generator_cls.remote(make_backend, loop_config, evaluators, budget_actor,
                                       target_speedup, reward_config)
                  for _ in range(plan.generators)]
    return RayCluster(generators, evaluators, budget_actor, [0] * plan.generators)


def disconnect() -> None:
    import ray

    ray.shutdown()
