"""`drkernel batch PATHS... --out DIR`: optimise many KernelBench problems, resumably."""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
from pathlib import Path
from typing import Any

from evaluator import Evaluator
from refine.backends import Backend
from refine.presets import PRESETS, Preset, get_preset
from server.app import load_model
from server.batch import (
    BatchProgress,
    BatchSettings,
    LocalSolver,
    ProblemFile,
    ProblemRecord,
    ResultStore,
    TurnBudget,
    find_problems,
    loop_config_for,
    pending,
    run_batch,
)
from server.config import ConfigError, ModelConfig, ServerConfig, flag_overrides, load_config

HELP = "optimise many KernelBench-format problems (files, folders, globs) at once"
_FLAGS = {"model": "model.path", "backend": "model.backend", "device": "evaluator.device",
          "workers": "workers"}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser("batch", help=HELP, description=HELP)
    p.add_argument("paths", nargs="+", help="problem files, folders (searched recursively), "
                                            "globs, or data set files (.jsonl, .parquet) whose "
                                            "rows carry a reference and its first-turn prompt")
    p.add_argument("--out", type=Path, required=True,
                   help="results.jsonl, kernels/ and report.html go here; rerunning resumes")
    p.add_argument("--concurrency", type=int, default=4, help="problems optimised at once")
    p.add_argument("--preset", choices=list(PRESETS),
                   help="a published protocol (loop, reward and judge settings, turns); "
                        "--set and the flags override it")
    p.add_argument("--prompt-template", type=Path,
                   help="first-turn template with a {reference} slot (data set rows bring "
                        "their own prompt)")
    p.add_argument("--turns", type=int, help="turns each problem may take (default 3, or the "
                                             "preset's)")
    p.add_argument("--max-turns", type=int,
                   help="cap per problem including turns left by solved problems "
                        "(default: twice --turns)")
    p.add_argument("--target-speedup", type=float,
                   help="a correct kernel this fast solves its problem and stops it")
    p.add_argument("--no-progress", action="store_true",
                   help="no live progress bar (the one line per finished problem stays)")
    where = p.add_argument_group("where the loops run (default: in this process)")
    where.add_argument("--server", metavar="HOST:PORT", help="a running drkernel server")
    where.add_argument("--token", default=os.environ.get("DRKERNEL_AUTH_TOKEN"))
    where.add_argument("--ca-file", type=Path, help="TLS to --server with this CA")
    where.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                       help="on Ray: the cluster at ADDRESS, $RAY_ADDRESS, or a local one")
    where.add_argument("--generators", type=int, default=1, help="Ray: model replicas")
    where.add_argument("--generator-gpus", type=float,
                       help="Ray: GPUs per replica (default 1 for vllm, else 0)")
    where.add_argument("--evaluators", type=int,
                       help="Ray: evaluator actors (default: every GPU left, else CPUs - 1)")
    local = p.add_argument_group("model and evaluator (in-process and Ray)")
    local.add_argument("--config", type=Path, help="settings file, as for `drkernel serve`")
    local.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    local.add_argument("--backend")
    local.add_argument("--model")
    local.add_argument("--device", help="where candidates are judged: cpu, cuda or auto")
    local.add_argument("--workers", type=int, help="evaluator worker processes")
    return p


def run(args: argparse.Namespace) -> int:
    try:
        problems = find_problems(args.paths)
        preset = get_preset(args.preset) if args.preset else None
        turns = args.turns or (preset.turns if preset else 3)
        settings = BatchSettings(out=args.out, concurrency=args.concurrency, turns=turns,
                                 max_turns=args.max_turns or (turns if preset else None),
                                 target_speedup=args.target_speedup)
        if args.server and (preset or args.prompt_template
                            or any(p.prompt is not None for p in problems)):
            raise ValueError("--preset, --prompt-template and data set prompts are the "
                             "server's own settings with --server; set them there")
        config = None if args.server else _config(args, preset)
    except (OSError, ValueError) as exc:
        print(f"drkernel batch: {exc}", file=sys.stderr)
        return 2
    if not problems:
        print("drkernel batch: no KernelBench-format problem (class Model + get_inputs) found",
              file=sys.stderr)
        return 2
    try:
        records = asyncio.run(_batch(args, problems, settings, config))
    except KeyboardInterrupt:
        saved = len(ResultStore(settings.out).finished())
        print(f"\ndrkernel batch: interrupted; {saved} of {len(problems)} problems are saved in "
              f"{settings.out / 'results.jsonl'}; run the same command again to resume",
              file=sys.stderr)
        return 130
    print(f"report: {settings.out / 'report.html'}")
    return 1 if any(r.outcome == "error" for r in records) else 0


def _config(args: argparse.Namespace, preset: Preset | None) -> ServerConfig:
    overrides = dict(preset.settings) if preset else {}
    if args.prompt_template is not None:
        overrides["loop.prompt_template"] = str(args.prompt_template)
    try:
        return load_config(args.config, overrides=overrides | flag_overrides(
            vars(args), _FLAGS, args.set))
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


async def _batch(args: argparse.Namespace, problems: list[ProblemFile],
                 settings: BatchSettings, config: ServerConfig | None) -> list[ProblemRecord]:
    store = ResultStore(settings.out)
    budget = TurnBudget([p.name for p in pending(problems, store)], settings.turns,
                        settings.turn_cap)
    progress = BatchProgress(enabled=not args.no_progress)
    if args.server:
        return await _on_server(args, problems, settings, store, budget, progress)
    assert config is not None
    if args.ray is not None:
        return await _on_ray(args, problems, settings, config, store, budget, progress)
    return await _in_process(problems, settings, config, store, budget, progress)


async def _in_process(problems: list[ProblemFile], settings: BatchSettings,
                      config: ServerConfig, store: ResultStore, budget: TurnBudget,
                      progress: BatchProgress) -> list[ProblemRecord]:
    backend, _ = load_model(config.model)
    try:
        async with Evaluator(workers=config.workers, config=config.evaluator,
                             reward_config=config.reward,
                             gpus=config.evaluator_gpus or None) as evaluator:
            solver = LocalSolver(backend, evaluator, loop_config_for(config.loop, settings),
                                 budget, settings.target_speedup, config.reward)
            return await run_batch(problems, solver, store, settings, progress)
    finally:
        await backend.close()


async def _on_server(args: argparse.Namespace, problems: list[ProblemFile],
                     settings: BatchSettings, store: ResultStore, budget: TurnBudget,
                     progress: BatchProgress) -> list[ProblemRecord]:
    from server.batch.remote import RemoteSolver
    from server.client import AsyncClient, Connection

    policy: dict[str, Any] = {"max_turns": settings.turn_cap}
    if settings.target_speedup is not None:
        policy["target_speedup"] = settings.target_speedup
    connection = Connection.from_files(args.server, args.token, args.ca_file)
    async with AsyncClient(connection) as client:
        solver = RemoteSolver(client, policy, budget, settings.target_speedup)
        return await run_batch(problems, solver, store, settings, progress)


def backend_from(model: ModelConfig) -> Backend:
    return load_model(model)[0]


async def _on_ray(args: argparse.Namespace, problems: list[ProblemFile],
                  settings: BatchSettings, config: ServerConfig, store: ResultStore,
                  budget: TurnBudget, progress: BatchProgress) -> list[ProblemRecord]:
    from server.batch import ray_batch

    resources = ray_batch.connect(args.ray or None, [str(Path(__file__).resolve().parents[2])])
    try:
        gpus = args.generator_gpus if args.generator_gpus is not None else float(
            config.model.backend == "vllm")
        plan = ray_batch.plan_actors(resources, args.generators, gpus, args.evaluators)
        cluster = ray_batch.start_actors(
            plan, budget, functools.partial(backend_from, config.model),
            loop_config_for(config.loop, settings), config.evaluator, config.reward,
            settings.target_speedup)
        try:
            return await run_batch(problems, cluster.solver(), store, settings, progress)
        finally:
            await cluster.close()
    finally:
        ray_batch.disconnect()
