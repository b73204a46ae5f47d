"""What a session's end counts as, who gets refused before any parsing, and what each refusal
says: against a real server on loopback."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from prometheus_client import REGISTRY
from server_harness import HANGS, RELU, SOLUTION, answer, running, server_config

from evaluator import EvalConfig
from protos.drkernel.v1 import optimizer_pb2 as pb
from refine.backends.scripted import ScriptedBackend
from refine.config import LoopConfig
from server import requests
from server.client import AsyncClient, Connection
from server.config import ConfigError, load_config
from server.errors import InvalidRequest

ASYNC = pytest.mark.asyncio(loop_scope="module")


EVALUATOR_WORKERS = 1


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def sessions(outcome: str) -> float:
    return sample("drkernel_sessions_total", outcome=outcome)


def handled(method: str, code: str) -> float:
    return sample("grpc_server_handled_total", grpc_type="unary",
                  grpc_service="drkernel.v1.KernelOptimizer", grpc_method=method, grpc_code=code)


@ASYNC
async def test_a_deadline_before_any_candidate_counts_as_deadline_not_failed(
        tokenizer, evaluator) -> None:
    backend = ScriptedBackend(tokenizer, [answer(SOLUTION)], delays_s=[30])
    before = {o: sessions(o) for o in ("deadline", "failed", "cancelled")}
    async with running(backend, evaluator) as server, \
            AsyncClient(f"127.0.0.1:{server.port}") as client:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            _ = [e async for e in client.optimize(RELU, timeout_s=2)]
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert {o: sessions(o) - before[o] for o in before} == {
        "deadline": 1, "failed": 0, "cancelled": 0}


@ASYNC
async def test_a_client_cancel_counts_as_cancelled_not_failed(tokenizer, evaluator) -> None:
    backend = ScriptedBackend(tokenizer, [answer(SOLUTION)], delays_s=[30])
    before = {o: sessions(o) for o in ("deadline", "failed", "cancelled")}
    async with running(backend, evaluator) as server, \
            AsyncClient(f"127.0.0.1:{server.port}") as client:
        call = client.stub.Optimize(pb.OptimizeRequest(reference=RELU), timeout=60)
        while (await call.read()).WhichOneof("event") != "turn_started":
            pass
        call.cancel()
        for _ in range(50):
            if server.admission.sessions == 0:
                break
            await asyncio.sleep(0.1)
    assert {o: sessions(o) - before[o] for o in before} == {
        "deadline": 0, "failed": 0, "cancelled": 1}


@ASYNC
async def test_an_evaluate_past_its_deadline_is_counted_as_deadline(tokenizer,
                                                                   evaluator) -> None:
    before = (handled("Evaluate", "DEADLINE_EXCEEDED"), handled("Evaluate", "CANCELLED"))
    async with running(ScriptedBackend(tokenizer, []), evaluator) as server, \
            AsyncClient(f"127.0.0.1:{server.port}") as client:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.evaluate(RELU, HANGS, timeout_s=2)
        for _ in range(50):
            if handled("Evaluate", "DEADLINE_EXCEEDED") > before[0]:
                break
            await asyncio.sleep(0.1)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    after = (handled("Evaluate", "DEADLINE_EXCEEDED"), handled("Evaluate", "CANCELLED"))
    assert (after[0] - before[0], after[1] - before[1]) == (1, 0)


@ASYNC
async def test_a_deadline_inside_the_safety_margin_says_so(tokenizer, evaluator) -> None:
    config = server_config(deadline_margin_s=5.0)
    async with running(ScriptedBackend(tokenizer, [answer(SOLUTION)]), evaluator,
                       config) as server, AsyncClient(f"127.0.0.1:{server.port}") as client:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            _ = [e async for e in client.optimize(RELU, timeout_s=3)]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "safety margin of 5 s" in caught.value.details()


@pytest.mark.parametrize("payload", [b"\xff\xff\xff\xff", b"\x0a\x03\xff\xfe\xfd", b""])
@ASYNC
async def test_without_a_token_nothing_is_parsed(tokenizer, evaluator, payload) -> None:
    config = server_config(auth_token="s3cret-token")
    async with running(ScriptedBackend(tokenizer, []), evaluator, config) as server, \
            grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        for method in ("Evaluate", "ComputeRewards", "GetServerInfo"):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await channel.unary_unary(f"/drkernel.v1.KernelOptimizer/{method}")(
                    payload, timeout=10)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, method
            assert "not a valid message" not in caught.value.details()
        stream = channel.unary_stream("/drkernel.v1.KernelOptimizer/Optimize")(payload,
                                                                               timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in stream:
                pass
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    async with running(ScriptedBackend(tokenizer, []), evaluator, config) as server, \
            AsyncClient(Connection(target=f"127.0.0.1:{server.port}", token="s3cret-token")) as ok:
        assert (await ok.info()).backend == "scripted"


@pytest.mark.parametrize("token", ["", "   "])
def test_an_empty_token_refuses_to_start(token: str) -> None:
    with pytest.raises(ConfigError, match="auth_token is set but empty"):
        load_config(env={"DRKERNEL_AUTH_TOKEN": token})


@pytest.mark.parametrize(("policy", "field"), [
    ({"max_wall_s": -1}, "max_wall_s"),
    ({"max_wall_s": 0}, "max_wall_s"),
    ({"max_generated_tokens": 0}, "max_generated_tokens"),
    ({"target_speedup": -2.0}, "target_speedup"),
    ({"target_speedup": float("nan")}, "target_speedup"),
    ({"patience_turns": 0}, "patience_turns"),
    ({"max_turns": 0}, "max_turns"),
    ({"window_turns": 9, "episode_turns": 3}, "window_turns"),
])
def test_every_policy_field_is_range_checked(policy: dict, field: str) -> None:
    with pytest.raises(InvalidRequest, match=field):
        requests.loop_config(pb.OptimizeRequest(policy=pb.TurnPolicy(**policy)), LoopConfig())


@pytest.mark.parametrize(("settings", "field"), [
    ({"atol": float("nan")}, "atol"),
    ({"rtol": -1.0}, "rtol"),
    ({"timeout_s": float("nan")}, "timeout_s"),
    ({"timeout_s": -3.0}, "timeout_s"),
    ({"correct_trials": 0}, "correct_trials"),
    ({"warmup": -1}, "warmup"),
])
def test_every_evaluator_field_is_range_checked(settings: dict, field: str) -> None:
    with pytest.raises(InvalidRequest, match=field):
        requests.eval_config(pb.EvaluatorSettings(**settings), EvalConfig())


def test_sampling_refuses_a_nan_temperature() -> None:
    request = pb.OptimizeRequest(sampling=pb.SamplingOverrides(temperature=float("nan")))
    with pytest.raises(InvalidRequest, match="temperature"):
        requests.loop_config(request, LoopConfig())
