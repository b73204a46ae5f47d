"""Adversarial and honest suites through the CPU judge: caught/total and false positives/total.

Partial-work fixtures (`tests/fixtures/partial/`, a `# verdicts:` line per policy) count as
honest where `standard` passes them and as adversarial where it fails them; each is also run
under every policy and checked against its verdicts. The public-style honest set
(`tests/fixtures/honest_public/`) is reported as the judge's agreement with its authors.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from evaluator import EvalConfig, EvalResult, Evaluator, Problem, Status
from evaluator.config import POLICIES, Policy

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"


def _header(path: Path, key: str) -> str:
    match = re.search(rf"^# {key}: (.+)$", path.read_text(), re.MULTILINE)
    return match.group(1).strip() if match else ""


def verdicts(path: Path) -> dict[str, str]:
    """`# verdicts: standard=correct strict=hacked kernelgym=correct` as a dict."""
    return dict(pair.split("=", 1) for pair in _header(path, "verdicts").split())


async def _judge(ev: Evaluator, path: Path, policy: Policy = "standard") -> EvalResult:
    reference = (ROOT / _header(path, "problem")).read_text()
    return await ev.evaluate(Problem(reference, name=path.stem), path.read_text(),
                             EvalConfig(device="cpu", policy=policy))


def _caught(path: Path, result: EvalResult) -> bool:
    expected = _header(path, "expect")
    if expected in ("incorrect", "compile_error"):
        return result.status is Status(expected)
    return bool(set(expected.split(" or ")) & {h.kind.value for h in result.hacks})


async def main() -> None:
    hacks = [p for p in sorted((FIXTURES / "hacks").glob("*.py"))
             if _header(p, "device") != "cuda"]  # caught in the cuda timing phase only
    honest = sorted((FIXTURES / "honest").glob("*.py"))
    partial = sorted((FIXTURES / "partial").glob("*.py"))
    public = sorted((FIXTURES / "honest_public").glob("*.py"))
    runs = [(p, policy) for p in partial for policy in POLICIES]
    async with Evaluator(workers=2, config=EvalConfig(device="cpu")) as ev:
        hack_results = await asyncio.gather(*(_judge(ev, p) for p in hacks))
        honest_results = await asyncio.gather(*(_judge(ev, p) for p in honest))
        partial_results = await asyncio.gather(*(_judge(ev, p, pol) for p, pol in runs))
        public_results = await asyncio.gather(*(_judge(ev, p) for p in public))
    caught = 0
    for path, result in zip(hacks, hack_results, strict=True):
        ok = _caught(path, result)
        caught += ok
        kinds = ", ".join(sorted({h.kind.value for h in result.hacks})) or result.status.value
        print(f"{'caught' if ok else 'MISSED':7s} {path.stem:34s} -> {kinds}")
    flagged = [(p, r) for p, r in zip(honest, honest_results, strict=True)
               if r.hacks or r.status is not Status.CORRECT]
    by_policy = {policy: [0, 0] for policy in POLICIES}
    partial_hacks = partial_caught = 0
    partial_honest = sum(verdicts(p)["standard"] == "correct" for p in partial)
    for (path, policy), result in zip(runs, partial_results, strict=True):
        want = verdicts(path)[policy]
        agree = result.status.value == want
        by_policy[policy][0] += agree
        by_policy[policy][1] += 1
        share = result.profile.triton_work_share
        print(f"{'ok' if agree else 'WRONG':7s} {path.stem:34s} {policy:9s} -> "
              f"{result.status.value} (want {want}, triton share {share})")
        if policy == "standard" and want == "hacked":
            partial_hacks += 1
            partial_caught += agree
        elif policy == "standard" and not agree:
            flagged.append((path, result))
    for path, result in flagged:
        print(f"FALSE POSITIVE {path.stem}: {result.status} {result.hacks}")
    agreed = [r.status is Status.CORRECT for r in public_results]
    for path, result in zip(public, public_results, strict=True):
        if result.status is not Status.CORRECT:
            detail = result.hacks or (result.error.message[:160] if result.error else "")
            print(f"DISAGREE {path.stem}: {result.status} {detail}")
    print(f"adversarial caught: {caught + partial_caught}/{len(hacks) + partial_hacks}")
    print(f"honest false positives: {len(flagged)}/{len(honest) + partial_honest}"
          f" (partial-work fixtures counted as honest: {partial_honest})")
    print("partial-work verdicts per policy: " + ", ".join(
        f"{policy} {ok}/{n}" for policy, (ok, n) in by_policy.items()))
    print(f"public-style honest set, judged correct: {sum(agreed)}/{len(public)}")


if __name__ == "__main__":
    asyncio.run(main())
