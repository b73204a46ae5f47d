"""A shared CPU evaluator for tests, driven from synchronous test code."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from evaluator import EvalConfig, EvalResult, Evaluator, Problem

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
FIXTURES = ROOT / "tests" / "fixtures"
T = TypeVar("T")


def header(path: Path, key: str) -> str | None:
    match = re.search(rf"^# {key}: (.+)$", path.read_text(), re.MULTILINE)
    return match.group(1).strip() if match else None


def reference_for(candidate: Path) -> Path:
    named = header(candidate, "problem")
    return ROOT / named if named else candidate.parent / "reference.py"


TRIAL_SEED = 7
"""Verdicts pinned by the suites are judged on fixed inputs; the worker's secret per-problem
seed is tested on its own (test_verdict_hardening)."""


class Judge:
    """Runs an `Evaluator` on a private event loop thread; `run` blocks for one verdict."""

    def __init__(self, workers: int = 2, config: EvalConfig | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.evaluator = Evaluator(workers=workers, config=config or EvalConfig(
            device="cpu", trial_seed=TRIAL_SEED))
        self.call(self.evaluator.start())

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def run(self, candidate: Path | str, reference: Path | None = None,
            config: EvalConfig | None = None) -> EvalResult:
        path = Path(candidate)
        ref = reference or reference_for(path)
        problem = Problem(ref.read_text(), name=ref.parent.name)
        return self.call(self.evaluator.evaluate(problem, path.read_text(), config))

    def close(self) -> None:
        self.call(self.evaluator.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
