"""`drkernel serve` and `drkernel client` as real processes: default model, CLI, SIGTERM drain."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from server_harness import EXAMPLES, RELU

from server.client import AsyncClient

pytestmark = pytest.mark.asyncio(loop_scope="module")
ROOT = Path(__file__).resolve().parents[1]


class Serve:
    def __init__(self, proc: asyncio.subprocess.Process):
        self.proc = proc
        self.log: list[dict] = []

    async def wait_for(self, event: str, timeout_s: float = 120) -> dict:
        async with asyncio.timeout(timeout_s):
            while True:
                line = await self.proc.stderr.readline()  # type: ignore[union-attr]
                assert line, f"drkernel serve exited early: {self.log[-5:]}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                self.log.append(record)
                if record.get("event") == event:
                    return record


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def serve(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Serve]:
    """No model configured: the server builds and serves the tiny test model."""
    cache = tmp_path_factory.mktemp("cache")
    env = {**os.environ, "DRKERNEL_EVALUATOR__DEVICE": "cpu", "DRKERNEL_WORKERS": "1",
           "DRKERNEL_EVALUATOR__CORRECT_TRIALS": "2", "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1", "--port", "0",
        "--metrics-port", "0", "--set", f"model.cache_dir={cache}", "--set", "drain_grace_s=60",
        cwd=ROOT, env=env, stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL)
    serve = Serve(proc)
    try:
        serve.port = (await serve.wait_for("serving"))["port"]  # type: ignore[attr-defined]
        yield serve
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def cli(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server.cli", "client", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode() + err.decode()


async def test_serve_without_a_model_says_it_serves_the_tiny_test_model(serve) -> None:
    warning = next(r for r in serve.log if "no model configured" in r["event"])
    assert warning["level"] == "warning" and "tiny-qwen3" in warning["path"]
    code, out = await cli("--server", f"127.0.0.1:{serve.port}", "--json", "info")
    info = json.loads(out)
    assert code == 0 and info["backend"] == "transformers" and info["model"] == "tiny-test-model"


async def test_client_cli_evaluates_and_reports_errors(serve) -> None:
    server = f"127.0.0.1:{serve.port}"
    code, out = await cli("--server", server, "evaluate", str(EXAMPLES / "relu/reference.py"),
                          str(EXAMPLES / "relu/solution.py"))
    assert code == 0 and "status: correct" in out and "reward: 0.500" in out
    code, out = await cli("--server", server, "evaluate", str(EXAMPLES / "relu/solution.py"),
                          str(EXAMPLES / "relu/solution.py"))
    assert code == 1 and "INVALID_ARGUMENT" in out and "does not define Model" in out


async def test_sigterm_drains_running_sessions(serve) -> None:
    async with AsyncClient(f"127.0.0.1:{serve.port}") as client:
        stream = client.optimize(RELU, policy={"max_turns": 2},
                                 sampling={"max_new_tokens": 120, "seed": 1})
        first = await anext(stream)
        assert first.WhichOneof("event") == "turn_started"
        serve.proc.send_signal(signal.SIGTERM)
        await serve.wait_for("draining", timeout_s=10)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await client.evaluate(RELU, RELU)
        rest = [event async for event in stream]
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "shutting down" in refused.value.details()
    assert rest[-1].finished.summary.stop_reason == "max_turns"
    assert len(rest[-1].finished.summary.turns) == 2
    assert await asyncio.wait_for(serve.proc.wait(), 60) == 0
    await serve.wait_for("stopped", timeout_s=5)
    turns = [r for r in serve.log if r["event"] == "turn"]
    assert len(turns) == 2 and all(r["request_id"] and r["level"] == "info" for r in turns)
    assert all("code" not in r and "response" not in r for r in turns)
    rpcs = {r["method"].split("/")[-1]: r["code"] for r in serve.log if r["event"] == "rpc"}
    assert rpcs["Optimize"] == "OK" and rpcs["Evaluate"] == "UNAVAILABLE"
