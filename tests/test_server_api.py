"""The service end to end on loopback: real evaluator on CPU, scripted and tiny-model backends."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from server_harness import RELU, SOLUTION, WRONG, answer, running, server_config

from evaluator import Status
from protos.drkernel.v1 import optimizer_pb2 as pb
from protos.drkernel.v1 import result_pb2 as rpb
from refine.backends.scripted import ScriptedBackend
from server.app import SERVICE_NAME, load_model
from server.client import AsyncClient
from server.config import ModelConfig
from server.mapping import result_from_proto

pytestmark = pytest.mark.asyncio(loop_scope="module")


def target(server: object) -> str:
    return f"127.0.0.1:{server.port}"  # type: ignore[attr-defined]


async def test_optimize_streams_turns_and_returns_the_best(tokenizer, evaluator) -> None:
    backend = ScriptedBackend(tokenizer, [answer(WRONG), answer(SOLUTION), "no code here"])
    async with running(backend, evaluator) as server, AsyncClient(target(server)) as client:
        events = [e async for e in client.optimize(RELU, name="relu", policy={"max_turns": 3},
                                                   request_id="ide-42")]
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds == ["turn_started", "generated", "evaluated",
                     "turn_started", "generated", "evaluated", "best_updated",
                     "turn_started", "generated", "evaluated", "finished"]
    judged = [e.evaluated.turn for e in events if e.HasField("evaluated")]
    assert [t.result.status for t in judged[:2]] == [rpb.EVAL_STATUS_INCORRECT,
                                                      rpb.EVAL_STATUS_CORRECT]
    assert not judged[2].HasField("code") and not judged[2].HasField("result")
    finished = events[-1].finished
    assert finished.best.turn == 2 and finished.best.code == SOLUTION
    assert result_from_proto(finished.best.result).status is Status.CORRECT
    assert finished.best.reward > 0 and not finished.partial
    assert [t.status for t in finished.summary.turns] == ["incorrect", "correct", "format_error"]
    assert finished.summary.stop_reason == "max_turns" and finished.summary.correct_turns == 1
    assert finished.usage.generated_tokens == sum(
        e.generated.usage.generated_tokens for e in events if e.HasField("generated"))
    assert finished.usage.prompt_tokens > 0


async def test_optimize_with_the_tiny_model(tiny_model_dir, evaluator) -> None:
    backend, _ = load_model(ModelConfig(backend="transformers", path=str(tiny_model_dir),
                                        device="cpu"))
    async with running(backend, evaluator) as server, AsyncClient(target(server)) as client:
        events = [e async for e in client.optimize(
            RELU, policy={"max_turns": 2}, sampling={"max_new_tokens": 16, "seed": 0})]
    finished = events[-1].finished
    generated = [e.generated for e in events if e.HasField("generated")]
    assert len(generated) == 2 and all(0 < g.usage.generated_tokens <= 16 for g in generated)
    assert [t.status for t in finished.summary.turns] == ["format_error"] * 2
    assert not finished.HasField("best") and finished.usage.generated_tokens > 0


async def test_evaluate_judges_a_candidate(tokenizer, evaluator) -> None:
    async with running(ScriptedBackend(tokenizer, []), evaluator) as server, \
            AsyncClient(target(server)) as client:
        good = await client.evaluate(RELU, SOLUTION, evaluator={"correct_trials": 1})
        bad = await client.evaluate(RELU, WRONG)
    assert good.result.status == rpb.EVAL_STATUS_CORRECT and good.result.trials_total == 1
    assert good.reward == pytest.approx(0.5) and good.result.reward == good.reward
    assert bad.result.status == rpb.EVAL_STATUS_INCORRECT and bad.reward == 0.0


async def test_compute_rewards_scores_a_batch_in_order(tokenizer, evaluator) -> None:
    pairs = [(RELU, answer(SOLUTION)), (RELU, "I could not write it."), (RELU, answer(WRONG)),
             (RELU, answer(SOLUTION))]
    async with running(ScriptedBackend(tokenizer, []), evaluator) as server, \
            AsyncClient(target(server)) as client:
        response = await client.compute_rewards(pairs)
    rewards = [r.reward for r in response.results]
    assert rewards == pytest.approx([0.5, 0.0, 0.0, 0.5])
    assert [r.format_error for r in response.results] == [False, True, False, False]
    assert response.results[2].result.status == rpb.EVAL_STATUS_INCORRECT


async def test_server_info_health_and_reflection(tokenizer, evaluator) -> None:
    config = server_config(max_sessions=7)
    async with running(ScriptedBackend(tokenizer, []), evaluator, config) as server, \
            AsyncClient(target(server)) as client:
        info = await client.info()
        call = client.stub.GetServerInfo(pb.GetServerInfoRequest(),
                                         metadata=[("x-request-id", "trace-7")])
        await call
        echoed = (dict(await call.initial_metadata()), dict(await call.trailing_metadata()))
        health = health_pb2_grpc.HealthStub(client.channel)
        status = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        reflection = reflection_pb2_grpc.ServerReflectionStub(client.channel)
        replies = [r async for r in reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]))]
    assert info.backend == "scripted" and info.device == "cpu" and info.model == "test-model"
    assert info.limits.max_sessions == 7 and info.limits.max_source_bytes == 1 << 20
    assert info.versions["grpcio"] == grpc.__version__
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    assert [m["x-request-id"] for m in echoed] == ["trace-7", "trace-7"]
    names = {s.name for s in replies[0].list_services_response.service}
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names


@pytest.mark.parametrize(("request_", "message"), [
    (pb.OptimizeRequest(), "reference is empty"),
    (pb.OptimizeRequest(reference="import torch\nclass Other: pass\n"), "does not define Model"),
    (pb.OptimizeRequest(reference="def (:"), "not valid Python"),
    (pb.OptimizeRequest(reference="x = 1\n" * 200_000), "over the limit"),
    (pb.OptimizeRequest(reference=RELU, policy=pb.TurnPolicy(max_turns=0)), "max_turns"),
    (pb.OptimizeRequest(reference=RELU, sampling=pb.SamplingOverrides(top_p=1.5)), "top_p"),
    (pb.OptimizeRequest(reference=RELU, evaluator=pb.EvaluatorSettings(timeout_s=1e6)),
     "timeout_s"),
])
async def test_bad_optimize_requests_are_invalid_argument(tokenizer, evaluator, request_,
                                                          message) -> None:
    async with running(ScriptedBackend(tokenizer, []), evaluator) as server, \
            AsyncClient(target(server)) as client:
        call = client.stub.Optimize(request_)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call.read()
        rid = dict(await call.initial_metadata())["x-request-id"]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in caught.value.details()
    assert len(rid) == 32
