"""`drkernel optimize REFERENCE.py`: run the refinement loop locally and keep the best kernel.

Exit codes: 0 a correct kernel was found; 1 none was; 2 the backend failed before the first
turn was judged (nothing written); 3 the backend failed later: the session ended partial,
and its transcript and best kernel so far are written.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from evaluator import EvalConfig, Evaluator, Problem, RewardConfig
from refine import (
    BestUpdated,
    Evaluated,
    Event,
    Finished,
    Generated,
    Loop,
    LoopConfig,
    SamplingConfig,
    Turn,
    TurnStarted,
    transcript,
)
from refine.backends import BACKENDS, BackendError, load_backend
from refine.presets import PRESETS, get_preset, with_settings

HELP = "optimize a KernelBench-format module with the refinement loop"
EPILOG = ("exit codes: 0 a correct kernel was found; 1 none was; 2 the backend failed before "
          "the first turn was judged; 3 the backend failed later (partial: the transcript "
          "and the best kernel so far are written)")
EXIT_BACKEND_FAILED, EXIT_PARTIAL = 2, 3


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser("optimize", help=HELP,
                                                            description=HELP, epilog=EPILOG)
    parser.add_argument("reference", type=Path, help="Python file defining Model, get_inputs, "
                                                     "get_init_inputs")
    parser.add_argument("--backend", choices=BACKENDS, default="vllm")
    parser.add_argument("--model", default="hkust-nlp/drkernel-14b",
                        help="path or hub id (for --backend openai: the served model name, "
                             "also used to load the tokenizer)")
    parser.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. "
                                           "http://localhost:8000/v1")
    parser.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY"))
    parser.add_argument("--engine-args", type=json.loads, default={}, metavar="JSON",
                        help='vllm: extra AsyncEngineArgs, e.g. \'{"max_model_len": 32768}\'')
    parser.add_argument("--preset", choices=list(PRESETS),
                        help="a published protocol's settings; the flags below override it")
    parser.add_argument("--prompt-template", type=Path,
                        help="first-turn template with a {reference} slot, used verbatim")
    parser.add_argument("--turns", type=int, help=f"default {LoopConfig.max_turns}")
    parser.add_argument("--samples", type=int, help=f"default {LoopConfig.samples_per_turn}")
    parser.add_argument("--history", choices=("all", "window"))
    parser.add_argument("--feedback", choices=("kernelgym", "concise"))
    parser.add_argument("--max-new-tokens", type=int,
                        help=f"default {SamplingConfig.max_new_tokens}")
    parser.add_argument("--target-speedup", type=float)
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    parser.add_argument("--workers", type=int, default=2, help="evaluator worker processes")
    parser.add_argument("--out", type=Path, default=Path("drkernel-out"))
    return parser


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_optimize(args))


_FLAGS = {"turns": "loop.max_turns", "samples": "loop.samples_per_turn",
          "history": "loop.history", "feedback": "loop.feedback_format",
          "target_speedup": "loop.target_speedup", "max_new_tokens": "loop.sampling.max_new_tokens"}


def settings(args: argparse.Namespace) -> tuple[LoopConfig, RewardConfig, EvalConfig]:
    """The preset's settings, then the flags given."""
    chosen = dict(get_preset(args.preset).settings) if args.preset else {}
    chosen |= {key: getattr(args, flag) for flag, key in _FLAGS.items()
               if getattr(args, flag) is not None}
    if args.prompt_template is not None:
        chosen["loop.prompt_template"] = str(args.prompt_template)
    sections = {prefix: {k[len(prefix) + 1:]: v for k, v in chosen.items()
                         if k.startswith(prefix + ".")} for prefix in ("loop", "reward",
                                                                       "evaluator")}
    return (with_settings(LoopConfig(), sections["loop"]),
            with_settings(RewardConfig(), sections["reward"]),
            with_settings(EvalConfig(device=args.device), sections["evaluator"]))


async def _optimize(args: argparse.Namespace) -> int:
    console = Console()
    problem = Problem(args.reference.read_text(), name=args.reference.stem)
    config, reward_config, eval_config = settings(args)
    backend = load_backend(args.backend, args.model, base_url=args.base_url,
                           api_key=args.api_key, device=args.device,
                           engine_args=args.engine_args)
    try:
        async with Evaluator(workers=args.workers, config=eval_config,
                             reward_config=reward_config) as evaluator:
            loop = Loop(backend, evaluator, config, reward_config)
            finished = await _show(loop.run(problem), console)
    except BackendError as exc:
        console.print(f"[red]the {args.backend} backend failed before the first turn was "
                      f"judged[/]: {exc}")
        return EXIT_BACKEND_FAILED
    finally:
        await backend.close()
    _write(args.out, finished, config, args)
    _summary(console, finished, args.out)
    if finished.stop_reason == "backend_error":
        return EXIT_PARTIAL
    return 0 if finished.best else 1


async def _show(events: Any, console: Console) -> Finished:
    async for event in events:
        console.print(_line(event))
        if isinstance(event, Finished):
            return event
    raise RuntimeError("the loop ended without a Finished event")


def _line(event: Event) -> str:
    if isinstance(event, TurnStarted):
        return (f"[bold]turn {event.turn}[/] (iteration {event.iteration}, "
                f"{event.samples} sample{'s' if event.samples > 1 else ''})")
    if isinstance(event, Generated):
        return (f"  sample {event.sample}: {event.usage.generated_tokens} tokens in "
                f"{event.generate_s:.1f}s ({event.finish_reason or 'done'})")
    if isinstance(event, Evaluated):
        return f"  sample {event.turn.sample}: {_verdict(event.turn)}"
    if isinstance(event, BestUpdated):
        return f"  [green]best so far: turn {event.turn.turn}, sample {event.turn.sample}[/]"
    error = f" — {event.error}" if event.error else ""
    return f"[bold]done[/]: {event.stop_reason}{' (partial)' if event.partial else ''}{error}"


def _verdict(turn: Turn) -> str:
    if turn.result is None:
        return "[yellow]format_error[/] (no python block)"
    speedup = f"{turn.result.speedup:.2f}x" if turn.result.speedup is not None else "n/a"
    return f"{turn.result.status}, speedup {speedup}, reward {turn.reward:.2f}"


def _write(out: Path, finished: Finished, config: LoopConfig, args: argparse.Namespace) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if finished.best and finished.best.code:
        (out / "best.py").write_text(finished.best.code)
    record = transcript(finished, config, reference=str(args.reference), backend=args.backend,
                        model=args.model)
    (out / "transcript.json").write_text(json.dumps(record, indent=2, ensure_ascii=False))


def _summary(console: Console, finished: Finished, out: Path) -> None:
    table = Table(title="turns")
    for column in ("turn", "sample", "status", "speedup", "reward", "tokens"):
        table.add_column(column)
    for turn in finished.turns:
        status = str(turn.result.status) if turn.result else "format_error"
        speedup = turn.result.speedup if turn.result else None
        table.add_row(str(turn.turn), str(turn.sample), status,
                      f"{speedup:.2f}x" if speedup is not None else "-", f"{turn.reward:.2f}",
                      str(turn.usage.generated_tokens))
    console.print(table)
    if finished.best is None:
        console.print("[red]no correct kernel[/]; transcript in " + str(out / "transcript.json"))
    else:
        console.print(f"best: turn {finished.best.turn} → {out / 'best.py'}")
    console.print(f"tokens: {finished.usage.prompt_tokens} prompt, "
                  f"{finished.usage.cached_tokens} cached, "
                  f"{finished.usage.generated_tokens} generated; {finished.elapsed_s:.1f}s")
