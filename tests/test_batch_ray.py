"""`--ray` on a local Ray cluster of CPUs: a generator actor runs the loops, an evaluator actor
judges on the CPU, a budget actor hands out turns."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from batch_support import EXAMPLES, answer, scripted_backend, source

from evaluator import EvalConfig, RewardConfig
from refine import LoopConfig
from server.batch import (
    BatchProgress,
    BatchSettings,
    ResultStore,
    TurnBudget,
    find_problems,
    loop_config_for,
    run_batch,
)

ray = pytest.importorskip("ray", reason="pip install 'ray[default]' (the `ray` extra)")
ray_batch = pytest.importorskip("server.batch.ray_batch")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
TESTS = Path(__file__).resolve().parent


async def test_batch_on_a_local_ray_cluster(tmp_path: Path, tiny_model_dir: Path) -> None:
    problems = find_problems([str(EXAMPLES / name / "reference.py") for name in ("gelu", "relu")])
    scripts = {"gelu": [answer(source("gelu/solution.py"))],
               "relu": [answer(source("relu/wrong_mask.py")), answer(source("relu/solution.py"))]}
    settings = BatchSettings(out=tmp_path, concurrency=2, turns=2)
    budget = TurnBudget([p.name for p in problems], settings.turns, settings.turn_cap)
    resources = ray_batch.connect(None, [str(TESTS.parent), str(TESTS)], num_cpus=2)
    try:
        plan = ray_batch.plan_actors(resources, generators=1, generator_gpus=0, evaluators=None)
        assert (plan.evaluators, plan.evaluator_gpus) == (1, 0.0)
        cluster = ray_batch.start_actors(
            plan, budget, functools.partial(scripted_backend, str(tiny_model_dir), scripts),
            loop_config_for(LoopConfig(), settings),
            EvalConfig(device="cpu", trial_seed=7, correct_trials=2, timeout_s=60),
            RewardConfig(), None)
        try:
            records = await run_batch(problems, cluster.solver(), ResultStore(tmp_path),
                                      settings, BatchProgress(enabled=False))
            used = await cluster.budget.turns_used.remote()
        finally:
            await cluster.close()
    finally:
        ray_batch.disconnect()
    outcomes = {r.name: (r.outcome, r.best_turn, r.error) for r in records}
    assert outcomes == {"gelu/reference": ("solved", 1, None),
                        "relu/reference": ("solved", 2, None)}
    assert used == 3, "the budget actor counted every turn"
    assert (tmp_path / "kernels/relu__reference.py").read_text() == source("relu/solution.py")
    assert "correct kernel by turn" in (tmp_path / "report.html").read_text()
