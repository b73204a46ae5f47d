from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from transformers import AutoTokenizer

from evaluator import EvalConfig, Evaluator
from refine.tiny_model import build_tiny_model
from tests.judge_support import TRIAL_SEED


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen3-shaped model with a ChatML tokenizer, saved once per session."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen3"))


@pytest.fixture(scope="session")
def tokenizer(tiny_model_dir: Path) -> Any:
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def evaluator(request: pytest.FixtureRequest) -> AsyncIterator[Evaluator]:
    """A cpu evaluator per test module, two trials on the tests' fixed seed; a module may set
    EVALUATOR_WORKERS (default 2) and EVALUATOR_TIMEOUT_S (default 20)."""
    config = EvalConfig(device="cpu", trial_seed=TRIAL_SEED, correct_trials=2,
                        timeout_s=getattr(request.module, "EVALUATOR_TIMEOUT_S", 20))
    async with Evaluator(workers=getattr(request.module, "EVALUATOR_WORKERS", 2),
                         config=config) as ev:
        yield ev
