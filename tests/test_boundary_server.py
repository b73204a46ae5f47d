"""The boundary's state in the service: GetServerInfo, and no serving without one."""

from __future__ import annotations

from typing import Any

import pytest
from server_harness import running, server_config

from evaluator import EvalConfig, Evaluator
from refine.backends.scripted import ScriptedBackend
from server.client import AsyncClient


async def test_server_info_reports_the_sandbox(tokenizer: Any) -> None:
    evaluator = Evaluator(workers=1, config=EvalConfig(device="cpu", trial_seed=7))
    try:
        async with running(ScriptedBackend(tokenizer, []), evaluator) as server, \
                AsyncClient(f"127.0.0.1:{server.port}") as client:
            info = await client.info()
        boundary = evaluator.boundary
        assert boundary.kernel_layers, "this host allows namespaces and seccomp"
        assert info.sandbox.confined == boundary.confined and info.sandbox.report_auth
        assert list(info.sandbox.layers) == list(boundary.kernel_layers)
        assert info.sandbox.memory_limit == "rlimit_as" and not info.sandbox.insecure
    finally:
        await evaluator.close()


async def test_without_a_sandbox_the_server_needs_insecure_sandbox(
        tokenizer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRKERNEL_SANDBOX", "off")  # as on a host without namespaces
    evaluator = Evaluator(workers=1, config=EvalConfig(device="cpu", trial_seed=7))
    backend = ScriptedBackend(tokenizer, [])
    try:
        with pytest.raises(RuntimeError, match="--insecure-sandbox"):
            async with running(backend, evaluator):
                pass
        config = server_config(insecure_sandbox=True)
        async with running(backend, evaluator, config) as server, \
                AsyncClient(f"127.0.0.1:{server.port}") as client:
            info = await client.info()
        assert info.sandbox.insecure and not info.sandbox.confined
        assert list(info.sandbox.layers) == [] and info.sandbox.notes
    finally:
        await evaluator.close()
