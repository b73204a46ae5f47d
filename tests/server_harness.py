"""Shared pieces of the server tests: example sources, configs, a server on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from refine.backends import Backend
from server.app import DrKernelServer, Judge
from server.config import ServerConfig, load_config

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
RELU = (EXAMPLES / "relu/reference.py").read_text()
SOLUTION = (EXAMPLES / "relu/solution.py").read_text()
WRONG = (EXAMPLES / "relu/wrong_mask.py").read_text()
HANGS = (EXAMPLES / "broken/timeout.py").read_text()
EVAL_SETTINGS = {"evaluator.device": "cpu", "evaluator.correct_trials": 2,
                 "evaluator.trial_seed": 7, "evaluator.timeout_s": 20}


def answer(code: str) -> str:
    return f"Here is the kernel.\n```python\n{code}```\n"


def server_config(**overrides: Any) -> ServerConfig:
    """Loopback, a free port, no metrics endpoint, the CPU judge; `a__b=` sets `a.b`."""
    settings = {"host": "127.0.0.1", "port": 0, "metrics_port": None, "deadline_margin_s": 0.5,
                **EVAL_SETTINGS}
    settings.update({key.replace("__", "."): value for key, value in overrides.items()})
    return load_config(env={}, overrides=settings)


@asynccontextmanager
async def running(backend: Backend, evaluator: Judge, config: ServerConfig | None = None
                  ) -> AsyncIterator[DrKernelServer]:
    server = DrKernelServer(config or server_config(), backend, evaluator, "test-model")
    await server.start()
    try:
        yield server
    finally:
        await server.stop(grace_s=0)
