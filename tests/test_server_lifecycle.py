"""Cancellation, deadlines, overload, auth, TLS and drain, against a server on loopback."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY
from server_harness import HANGS, RELU, SOLUTION, answer, running, server_config

from protos.drkernel.v1 import optimizer_pb2 as pb
from refine.backends import BackendDead
from refine.backends.scripted import ScriptedBackend
from server.app import SERVICE_NAME
from server.client import AsyncClient, Connection

pytestmark = pytest.mark.asyncio(loop_scope="module")


EVALUATOR_WORKERS = 1  # a stuck evaluation would block the next request


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def timed_evaluate(client: AsyncClient) -> float:
    started = time.monotonic()
    response = await client.evaluate(RELU, SOLUTION, timeout_s=30)
    assert response.reward > 0
    return time.monotonic() - started


async def first_event(call: grpc.aio.UnaryStreamCall, kind: str) -> pb.OptimizeEvent:
    while True:
        event = await call.read()
        if event.WhichOneof("event") == kind:
            return event


async def rest_of(call: grpc.aio.UnaryStreamCall) -> list[pb.OptimizeEvent]:
    events = []
    while (event := await call.read()) is not grpc.aio.EOF:
        events.append(event)
    return events


async def test_cancel_mid_turn_frees_the_evaluator(tokenizer, evaluator) -> None:
    backend = ScriptedBackend(tokenizer, [answer(HANGS)])
    cancelled_before = sample("drkernel_sessions_total", outcome="cancelled")
    async with running(backend, evaluator) as server, \
            AsyncClient(f"127.0.0.1:{server.port}") as client:
        baseline_s = await timed_evaluate(client)
        call = client.stub.Optimize(pb.OptimizeRequest(reference=RELU))
        await first_event(call, "generated")
        await asyncio.sleep(0.5)  # the hanging candidate now holds the only worker
        call.cancel()
        assert await timed_evaluate(client) < baseline_s + 1.0
        assert server.admission.sessions == 0
    assert sample("drkernel_sessions_total", outcome="cancelled") == cancelled_before + 1


async def test_deadline_after_a_candidate_returns_the_best_as_partial(tokenizer,
                                                                      evaluator) -> None:
    backend = ScriptedBackend(tokenizer, [answer(SOLUTION), answer(HANGS), answer(SOLUTION)])
    async with running(backend, evaluator) as server, \
            AsyncClient(f"127.0.0.1:{server.port}") as client:
        started = time.monotonic()
        events = [e async for e in client.optimize(RELU, policy={"max_turns": 3}, timeout_s=5)]
        elapsed_s = time.monotonic() - started
        finished = events[-1].finished
        assert finished.partial and finished.summary.stop_reason == "deadline"
        assert finished.best.turn == 1 and finished.best.code == SOLUTION
        assert 4.0 < elapsed_s < 5.0
        baseline_s = await timed_evaluate(client)
        assert baseline_s < 3.0


async def test_deadline_before_any_candidate_is_deadline_exceeded(tokenizer, evaluator) -> None:
    backend = ScriptedBackend(tokenizer, [answer(SOLUTION)], delays_s=[30])
    async with running(backend, evaluator) as server, \
            AsyncClient(f"127.0.0.1:{server.port}") as client:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            _ = [e async for e in client.optimize(RELU, timeout_s=2)]
        assert server.admission.sessions == 0
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_overload_is_resource_exhausted(tokenizer, evaluator) -> None:
    backend = ScriptedBackend(tokenizer, [answer(SOLUTION)], delays_s=[30])
    config = server_config(max_sessions=1, max_pending_evaluations=1)
    rejected_before = sample("drkernel_requests_rejected_total", reason="overload")
    async with running(backend, evaluator, config) as server, \
            AsyncClient(f"127.0.0.1:{server.port}") as client:
        first = client.stub.Optimize(pb.OptimizeRequest(reference=RELU))
        await first_event(first, "turn_started")
        with pytest.raises(grpc.aio.AioRpcError) as session:
            _ = [e async for e in client.optimize(RELU)]
        with pytest.raises(grpc.aio.AioRpcError) as batch:
            await client.compute_rewards([(RELU, answer(SOLUTION))] * 2)
        first.cancel()
    assert session.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "limit is 1" in session.value.details()
    assert batch.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert sample("drkernel_requests_rejected_total", reason="overload") == rejected_before + 2


async def test_a_dead_backend_turns_health_not_serving(tokenizer, evaluator) -> None:
    """The engine died: the session that saw it and every later Optimize get UNAVAILABLE,
    health goes NOT_SERVING; Evaluate needs no model and still answers."""
    backend = ScriptedBackend(tokenizer, [BackendDead("engine core process exited")])
    async with running(backend, evaluator) as server, \
            AsyncClient(f"127.0.0.1:{server.port}") as client:
        health = health_pb2_grpc.HealthStub(client.channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=10)
        before = (await watch.read()).status
        with pytest.raises(grpc.aio.AioRpcError) as died:
            _ = [e async for e in client.optimize(RELU)]
        after = (await watch.read()).status
        watch.cancel()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            _ = [e async for e in client.optimize(RELU)]
        evaluated = await client.evaluate(RELU, SOLUTION, timeout_s=30)
    assert before == health_pb2.HealthCheckResponse.SERVING
    assert after == health_pb2.HealthCheckResponse.NOT_SERVING
    assert died.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "engine core process exited" in died.value.details()
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "backend is dead" in refused.value.details()
    assert len(backend.prompts) == 1 and evaluated.reward > 0


async def test_bearer_auth(tokenizer, evaluator) -> None:
    config = server_config(auth_token="s3cret-token")
    async with running(ScriptedBackend(tokenizer, []), evaluator, config) as server:
        address = f"127.0.0.1:{server.port}"
        for token in (None, "wrong", "s3cret-token-but-longer"):
            async with AsyncClient(Connection(target=address, token=token)) as client:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await client.info()
                assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
                health = health_pb2_grpc.HealthStub(client.channel)
                reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
        async with AsyncClient(Connection(target=address, token="s3cret-token")) as client:
            assert (await client.info()).backend == "scripted"
    async with running(ScriptedBackend(tokenizer, []), evaluator) as server, \
            AsyncClient(f"127.0.0.1:{server.port}") as client:
        assert (await client.info()).backend == "scripted"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for localhost and a client certificate, all signed by it."""
    d = tmp_path_factory.mktemp("certs")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
             "-subj", "/CN=test-ca", cwd=d)
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name, ext in (("server", ("-extfile", "san.ext")), ("client", ())):
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "1", "-out", f"{name}.pem", *ext, cwd=d)
    return d


async def test_tls_and_mtls(tokenizer, evaluator, certs) -> None:
    tls = {"tls__cert_file": str(certs / "server.pem"), "tls__key_file": str(certs / "server.key")}
    async with running(ScriptedBackend(tokenizer, []), evaluator, server_config(**tls)) as server:
        address = f"localhost:{server.port}"
        secure = Connection.from_files(address, ca_file=certs / "ca.pem")
        async with AsyncClient(secure) as client:
            assert (await client.info()).backend == "scripted"
        async with AsyncClient(address) as plain:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await plain.info(timeout_s=3)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    mtls = server_config(**tls, tls__client_ca_file=str(certs / "ca.pem"))
    async with running(ScriptedBackend(tokenizer, []), evaluator, mtls) as server:
        address = f"localhost:{server.port}"
        async with AsyncClient(Connection.from_files(address, ca_file=certs / "ca.pem")) as anon:
            with pytest.raises(grpc.aio.AioRpcError):
                await anon.info(timeout_s=3)
        mutual = Connection.from_files(address, ca_file=certs / "ca.pem",
                                       cert_file=certs / "client.pem",
                                       key_file=certs / "client.key")
        async with AsyncClient(mutual) as client:
            assert (await client.info()).device == "cpu"


async def test_drain_finishes_running_sessions_and_refuses_new_work(tokenizer,
                                                                    evaluator) -> None:
    backend = ScriptedBackend(tokenizer, [answer(SOLUTION)] * 2, delays_s=[1.0, 1.0])
    server_cm = running(backend, evaluator)
    server = await server_cm.__aenter__()
    try:
        async with AsyncClient(f"127.0.0.1:{server.port}") as client:
            call = client.stub.Optimize(pb.OptimizeRequest(
                reference=RELU, policy=pb.TurnPolicy(max_turns=2)))
            await first_event(call, "turn_started")
            stopping = asyncio.create_task(server.stop(grace_s=20))
            await asyncio.sleep(0.2)
            health = health_pb2_grpc.HealthStub(client.channel)
            reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await client.evaluate(RELU, SOLUTION)
            rest = await rest_of(call)
            await stopping
    finally:
        await server_cm.__aexit__(None, None, None)
    assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "shutting down" in refused.value.details()
    assert rest[-1].finished.best.code == SOLUTION and not rest[-1].finished.partial
