"""Malformed and hostile requests never crash the server; each gets a status, not a hang."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from server_harness import RELU, running, server_config
from transformers import AutoTokenizer

from evaluator import EvalConfig, Evaluator
from protos.drkernel.v1 import optimizer_pb2 as pb
from refine.backends.scripted import ScriptedBackend
from server.app import DrKernelServer

pytestmark = pytest.mark.asyncio(loop_scope="module")
METHODS = {
    "/drkernel.v1.KernelOptimizer/Optimize": "stream",
    "/drkernel.v1.KernelOptimizer/Evaluate": "unary",
    "/drkernel.v1.KernelOptimizer/ComputeRewards": "unary",
    "/drkernel.v1.KernelOptimizer/GetServerInfo": "unary",
}
SURVIVABLE = {grpc.StatusCode.INVALID_ARGUMENT,
              grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE}


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server(tiny_model_dir: Path) -> AsyncIterator[DrKernelServer]:
    """Every generation fails (empty script), so nothing here reaches the evaluator's workers."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    config = server_config(max_message_bytes=2 << 20, max_reward_items=8)
    async with Evaluator(workers=1, config=EvalConfig(device="cpu", trial_seed=7)) as ev, \
            running(ScriptedBackend(tokenizer, []), ev, config) as server:
        yield server


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def channel(server: DrKernelServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}", options=[
        ("grpc.max_send_message_length", 8 << 20)]) as channel:
        yield channel


async def call_raw(channel: grpc.aio.Channel, method: str, payload: bytes
                   ) -> grpc.StatusCode:
    """Sends bytes as they are, bypassing the client's serialisation."""
    try:
        if METHODS[method] == "stream":
            call = channel.unary_stream(method)(payload, timeout=10)
            async for _ in call:
                pass
        else:
            await channel.unary_unary(method)(payload, timeout=10)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def assert_alive(channel: grpc.aio.Channel) -> None:
    stub = channel.unary_unary("/drkernel.v1.KernelOptimizer/GetServerInfo",
                               response_deserializer=pb.ServerInfo.FromString)
    info = await stub(b"", timeout=5)
    assert info.backend == "scripted"


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize(("payload", "expected"), [
    (b"\xff\xff\xff\xff", grpc.StatusCode.INVALID_ARGUMENT),  # not a protobuf at all
    (b"\x0a\x03\xff\xfe\xfd", grpc.StatusCode.INVALID_ARGUMENT),  # field 1 as non-UTF-8 string
    (b"\x08\x01", None),  # field 1 as a varint: a wrong wire type
    (b"", None),  # every field empty
])
async def test_malformed_bytes_get_a_status(channel, method, payload, expected) -> None:
    code = await call_raw(channel, method, payload)
    if method.endswith("GetServerInfo"):  # no fields: unknown ones are kept, not refused
        assert code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT)
    elif expected is not None:
        assert code == expected
    else:
        assert code in SURVIVABLE | {grpc.StatusCode.OK}  # an empty reward batch is fine
    await assert_alive(channel)


async def test_huge_message_is_refused_by_size(channel) -> None:
    request = pb.EvaluateRequest(reference=RELU, candidate="x" * (3 << 20))
    code = await call_raw(channel, "/drkernel.v1.KernelOptimizer/Evaluate",
                          request.SerializeToString())
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    await assert_alive(channel)


async def test_source_over_the_limit_is_invalid(channel) -> None:
    request = pb.EvaluateRequest(reference=RELU + "#" * (1 << 20), candidate="pass")
    code = await call_raw(channel, "/drkernel.v1.KernelOptimizer/Evaluate",
                          request.SerializeToString())
    assert code == grpc.StatusCode.INVALID_ARGUMENT


async def test_deeply_nested_source_is_invalid(channel) -> None:
    request = pb.OptimizeRequest(reference="x = " + "(" * 100_000 + ")" * 100_000)
    code = await call_raw(channel, "/drkernel.v1.KernelOptimizer/Optimize",
                          request.SerializeToString())
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    await assert_alive(channel)


async def test_too_many_reward_items_is_invalid(channel) -> None:
    request = pb.RewardRequest(items=[pb.RewardItem(reference=RELU, response="x")] * 9)
    code = await call_raw(channel, "/drkernel.v1.KernelOptimizer/ComputeRewards",
                          request.SerializeToString())
    assert code == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_generation_failure_is_unavailable_not_a_crash(channel) -> None:
    code = await call_raw(channel, "/drkernel.v1.KernelOptimizer/Optimize",
                          pb.OptimizeRequest(reference=RELU).SerializeToString())
    assert code == grpc.StatusCode.UNAVAILABLE
    await assert_alive(channel)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(method=st.sampled_from(sorted(METHODS)), payload=st.binary(max_size=512))
async def test_fuzzed_bytes_never_crash_the_server(channel, method, payload) -> None:
    code = await call_raw(channel, method, payload)
    assert code in SURVIVABLE | {grpc.StatusCode.OK}
    await assert_alive(channel)
