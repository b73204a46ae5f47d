"""KernelBench's real problems on the cpu judge: does each reference load and run its trials?

For levels 1-3 of the KernelBench files in `../shared/kernelbench` (or `--root`), judges a
stand-in candidate that refuses to build: the reference child then loads the problem, sizes
it down where it exceeds the cpu budget, and runs all its trials within the default timeout,
and the candidate adds a few tens of milliseconds. A problem counts as running when the
verdict comes back (the reference produced its outputs) rather than a problem error.

Prints one line per problem, then per level: problems run / tried, share, median and max
seconds, and how many were scaled. Targets: >= 95 % of levels 1-2, >= 90 % of level 3.
`--limit N` takes the first N problems of each level, `--sample N` a seeded random N;
what was run is printed. Exit status 1 when a level misses its target (full runs only).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from evaluator import EvalConfig, Evaluator, Problem
from evaluator.api import ProblemError

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ROOT = ROOT.parent / "shared" / "kernelbench"
TARGETS = {1: 0.95, 2: 0.95, 3: 0.90}
STAND_IN = '''
class ModelNew:
    """Runs nothing: only the reference's side of the judge is measured."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError("reference-only run")
'''


@dataclass(frozen=True)
class Outcome:
    level: int
    name: str
    ran: bool
    seconds: float
    scaled: bool
    note: str = ""


def problems(root: Path, levels: list[int], limit: int | None, sample: int | None,
             seed: int) -> list[tuple[int, Path]]:
    chosen: list[tuple[int, Path]] = []
    for level in levels:
        files = sorted((root / f"level{level}").glob("*.py"), key=_number)
        if sample is not None:
            files = sorted(random.Random(seed + level).sample(files, min(sample, len(files))),
                           key=_number)
        chosen += [(level, f) for f in files[:limit]]
    return chosen


def _number(path: Path) -> tuple[int, str]:
    head = path.stem.split("_", 1)[0]
    return (int(head) if head.isdigit() else 1 << 30, path.stem)


async def judge_reference(ev: Evaluator, slots: asyncio.Semaphore, level: int,
                          path: Path) -> Outcome:
    async with slots:  # time one evaluation, not its wait in the queue
        start = time.monotonic()
        try:
            result = await ev.evaluate(Problem(path.read_text(), name=path.stem), STAND_IN)
        except ProblemError as exc:
            return Outcome(level, path.stem, False, time.monotonic() - start, False,
                           str(exc).splitlines()[0][:160] if str(exc) else "problem error")
        return Outcome(level, path.stem, True, time.monotonic() - start,
                       result.scaling is not None)


def summary(outcomes: list[Outcome]) -> list[str]:
    lines = []
    for level in sorted({o.level for o in outcomes}):
        rows = [o for o in outcomes if o.level == level]
        ran = [o for o in rows if o.ran]
        share = len(ran) / len(rows)
        times = [o.seconds for o in ran] or [0.0]
        lines.append(f"level {level}: {len(ran)}/{len(rows)} run ({share:.0%}, target "
                     f"{TARGETS.get(level, 0):.0%}), median {statistics.median(times):.1f} s, "
                     f"max {max(times):.1f} s, scaled {sum(o.scaled for o in rows)}")
    return lines


def missed_targets(outcomes: list[Outcome]) -> list[int]:
    missed = []
    for level in sorted({o.level for o in outcomes}):
        rows = [o for o in outcomes if o.level == level]
        if sum(o.ran for o in rows) / len(rows) < TARGETS.get(level, 0.0):
            missed.append(level)
    return missed


async def run(args: argparse.Namespace, chosen: list[tuple[int, Path]]) -> list[Outcome]:
    config = EvalConfig(device="cpu", scale=not args.no_scale)
    outcomes: list[Outcome] = []
    async with Evaluator(workers=args.workers, config=config) as ev:
        slots = asyncio.Semaphore(args.workers)
        pending = [judge_reference(ev, slots, level, path) for level, path in chosen]
        for done in asyncio.as_completed(pending):
            outcome = await done
            outcomes.append(outcome)
            mark = "ok  " if outcome.ran else "FAIL"
            print(f"{mark} level{outcome.level}/{outcome.name:55s} {outcome.seconds:6.1f} s"
                  f"{'  scaled' if outcome.scaled else ''}  {outcome.note}", flush=True)
    return outcomes


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="KernelBench problem folder")
    p.add_argument("--levels", type=int, nargs="+", default=[1, 2, 3], choices=(1, 2, 3))
    group = p.add_mutually_exclusive_group()
    group.add_argument("--limit", type=int, help="the first N problems of each level")
    group.add_argument("--sample", type=int, help="N problems of each level at random")
    p.add_argument("--seed", type=int, default=0, help="for --sample")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--no-scale", action="store_true", help="run the problems at their sizes")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if not args.root.is_dir():
        print(f"no KernelBench problems at {args.root}: nothing to run")
        return 0
    chosen = problems(args.root, args.levels, args.limit, args.sample, args.seed)
    how = f"first {args.limit}" if args.limit else f"{args.sample} sampled (seed {args.seed})" \
        if args.sample else "all"
    print(f"KernelBench on the cpu judge: {len(chosen)} problems ({how} per level "
          f"{args.levels}), scaling {'off' if args.no_scale else 'on'}")
    start = time.monotonic()
    outcomes = asyncio.run(run(args, chosen))
    print("\n".join(summary(outcomes)))
    print(f"wall time {time.monotonic() - start:.0f} s")
    full = args.limit is None and args.sample is None
    return 1 if full and missed_targets(outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
