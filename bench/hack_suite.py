"""Adversarial and honest suites through the CPU judge: caught/total and false positives/total."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from evaluator import EvalConfig, EvalResult, Evaluator, Problem, Status

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"


def _header(path: Path, key: str) -> str:
    match = re.search(rf"^# {key}: (.+)$", path.read_text(), re.MULTILINE)
    return match.group(1).strip() if match else ""


async def _judge(ev: Evaluator, path: Path) -> EvalResult:
    reference = (ROOT / _header(path, "problem")).read_text()
    return await ev.evaluate(Problem(reference, name=path.stem), path.read_text())


def _caught(path: Path, result: EvalResult) -> bool:
    expected = _header(path, "expect")
    if expected == "incorrect":
        return result.status is Status.INCORRECT
    return expected in {h.kind.value for h in result.hacks}


async def main() -> None:
    hacks = [p for p in sorted((FIXTURES / "hacks").glob("*.py"))
             if _header(p, "device") != "cuda"]  # caught in the cuda timing phase only
    honest = sorted((FIXTURES / "honest").glob("*.py"))
    async with Evaluator(workers=2, config=EvalConfig(device="cpu")) as ev:
        hack_results = await asyncio.gather(*(_judge(ev, p) for p in hacks))
        honest_results = await asyncio.gather(*(_judge(ev, p) for p in honest))
    caught = 0
    for path, result in zip(hacks, hack_results, strict=True):
        ok = _caught(path, result)
        caught += ok
        kinds = ", ".join(sorted({h.kind.value for h in result.hacks})) or result.status.value
        print(f"{'caught' if ok else 'MISSED':7s} {path.stem:34s} -> {kinds}")
    flagged = [(p, r) for p, r in zip(honest, honest_results, strict=True)
               if r.hacks or r.status is not Status.CORRECT]
    for path, result in flagged:
        print(f"FALSE POSITIVE {path.stem}: {result.status} {result.hacks}")
    print(f"adversarial caught: {caught}/{len(hacks)}")
    print(f"honest false positives: {len(flagged)}/{len(honest)}")


if __name__ == "__main__":
    asyncio.run(main())
