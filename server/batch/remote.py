"""`--server`: each problem is one Optimize stream to a running drkernel server."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import grpc

from protos.drkernel.v1 import optimizer_pb2 as pb
from refine.events import BestUpdated, Evaluated, Event, Finished, Turn, TurnStarted, Usage
from server.batch.budget import Gate
from server.batch.problems import ProblemFile
from server.batch.runner import SESSION_ERRORS, Solved, error_record
from server.batch.session import run_session
from server.client import AsyncClient
from server.mapping import result_from_proto


def usage_from_proto(message: pb.Usage) -> Usage:
    return Usage(message.prompt_tokens, message.cached_tokens, message.generated_tokens)


def turn_from_proto(message: pb.Turn) -> Turn:
    return Turn(
        turn=message.turn, sample=message.sample, response="",
        code=message.code if message.HasField("code") else None,
        result=result_from_proto(message.result) if message.HasField("result") else None,
        reward=message.reward, usage=usage_from_proto(message.usage),
        generate_s=message.generate_s, evaluate_s=message.evaluate_s)


def event_from_proto(message: pb.OptimizeEvent) -> Event | None:
    """The loop event a server sent; `generated` carries nothing the batch needs."""
    kind = message.WhichOneof("event")
    if kind == "turn_started":
        e = message.turn_started
        return TurnStarted(e.turn, e.iteration, e.samples)
    if kind == "evaluated":
        return Evaluated(turn_from_proto(message.evaluated.turn))
    if kind == "best_updated":
        return BestUpdated(turn_from_proto(message.best_updated.turn))
    if kind == "finished":
        f = message.finished
        return Finished(best=turn_from_proto(f.best) if f.HasField("best") else None, turns=[],
                        usage=usage_from_proto(f.usage), partial=f.partial,
                        stop_reason=f.summary.stop_reason, elapsed_s=f.summary.elapsed_s)
    return None


async def _events(stream: AsyncGenerator[pb.OptimizeEvent, None]
                  ) -> AsyncGenerator[Event, None]:
    try:
        async for message in stream:
            if (event := event_from_proto(message)) is not None:
                yield event
    finally:
        await stream.aclose()


class RemoteSolver:
    def __init__(self, client: AsyncClient, policy: dict[str, Any], gate: Gate,
                 target_speedup: float | None):
        self.client = client
        self.policy = policy
        self.gate = gate
        self.target_speedup = target_speedup

    async def __call__(self, problem: ProblemFile) -> Solved:
        stream = self.client.optimize(problem.source, name=problem.name, policy=self.policy)
        try:
            record, best = await run_session(problem.name, str(problem.path), _events(stream),
                                             self.gate, self.target_speedup,
                                             (*SESSION_ERRORS, grpc.RpcError))
        except (*SESSION_ERRORS, grpc.RpcError) as error:
            return error_record(problem, error)
        return record, best.code if best else None
