"""The metrics endpoint: the agreed families with allowed labels, scraped by a real Prometheus."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from metric_names import OWN_FAMILIES, allowed_sample_names
from prometheus_client.parser import text_string_to_metric_families
from server_harness import RELU, SOLUTION, WRONG, answer, running, server_config
from transformers import AutoTokenizer

from evaluator import EvalConfig, Evaluator
from refine.backends.scripted import ScriptedBackend
from server.app import DrKernelServer
from server.client import AsyncClient

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server(tiny_model_dir: Path) -> AsyncIterator[DrKernelServer]:
    """A server that has run one session, one evaluation and one refused request."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    backend = ScriptedBackend(tokenizer, [answer(WRONG), answer(SOLUTION)])
    config = server_config(metrics_port=0, metrics_host="127.0.0.1")
    judging = EvalConfig(device="cpu", trial_seed=7, correct_trials=1)
    async with Evaluator(workers=1, config=judging) as ev, \
            running(backend, ev, config) as server, \
            AsyncClient(f"127.0.0.1:{server.port}") as client:
        _ = [e async for e in client.optimize(RELU, policy={"max_turns": 2})]
        await client.evaluate(RELU, SOLUTION)
        with pytest.raises(Exception, match="reference is empty"):
            await client.evaluate("", SOLUTION)
        yield server


async def scrape(server: DrKernelServer) -> str:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{server.metrics_port}/metrics")
    response.raise_for_status()
    return response.text


async def test_metrics_use_the_agreed_names_and_labels(server) -> None:
    families = {f.name: f for f in text_string_to_metric_families(await scrape(server))}
    allowed = allowed_sample_names()
    for family in OWN_FAMILIES:
        assert family.name.removesuffix("_total") in families, family.name
    for family in families.values():
        for s in family.samples:
            if not s.name.startswith(("drkernel_", "grpc_server_")):
                continue
            agreed = allowed[s.name]
            for label, value in s.labels.items():
                values = agreed.labels[label]
                assert values is None or value in values, (s.name, label, value)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in families.values() for s in f.samples}
    assert samples[("drkernel_sessions_total", (("outcome", "completed"),))] >= 1
    assert samples[("drkernel_turns_total", (("status", "incorrect"),))] >= 1
    assert samples[("drkernel_requests_rejected_total", (("reason", "invalid"),))] >= 1
    build = [labels for (name, labels), value in samples.items()
             if name == "drkernel_build_info" and value == 1]
    assert len(build) == 1
    assert dict(build[0]).items() >= {"backend": "scripted", "device": "cpu",
                                      "model": "test-model"}.items()
    handled = ("grpc_server_handled_total", (
        ("grpc_code", "OK"), ("grpc_method", "Optimize"),
        ("grpc_service", "drkernel.v1.KernelOptimizer"), ("grpc_type", "server_stream")))
    assert samples[handled] >= 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_real_prometheus_scrapes_drkernel_series(server, tmp_path) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("the prometheus binary is absent (apt-get install -y prometheus)")
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: drkernel\n    static_configs: [{{targets: "
        f"['127.0.0.1:{server.metrics_port}']}}]\n")
    port = _free_port()
    proc = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        result = await _query_until_found(port, 'drkernel_sessions_total{job="drkernel"}')
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert {r["metric"]["outcome"] for r in result} >= {"completed"}


async def _query_until_found(port: int, query: str, timeout_s: float = 30) -> list[dict]:
    async with httpx.AsyncClient() as http, asyncio.timeout(timeout_s):
        while True:
            try:
                response = await http.get(f"http://127.0.0.1:{port}/api/v1/query",
                                          params={"query": query})
                result = response.json()["data"]["result"]
                if result:
                    return result
            except (httpx.TransportError, KeyError, ValueError):
                pass
            await asyncio.sleep(0.5)
