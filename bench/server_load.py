"""Service overhead and event latency under load, with fixed generation and evaluation delays.

    python bench/server_load.py [--sessions 64] [--turns 4] [--generate-s 0.2] [--evaluate-s 0.1]

1. Per-turn orchestration overhead: the same zero-delay session (scripted backend, a judge
   that answers at once) run through the gRPC service (server in another process) and by
   iterating `Loop.run` in-process; the difference is what the service adds per turn
   (mapping, metrics, logs, serialisation, transport).
2. Event latency with N concurrent Optimize streams: every event's arrival is compared with
   the ideal schedule in which all sessions' delays overlap perfectly (turn k's `generated`
   at (k-1)·(G+E)+G after the stream opened, its `evaluated` at k·(G+E)).

The judge is a test double with a fixed delay (no real evaluation); the backend is the real
scripted one. Server logs are rendered at INFO and discarded.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import time
from multiprocessing.connection import Connection
from pathlib import Path

import structlog

from evaluator import EvalConfig, EvalResult, Problem, Status
from refine import Loop, LoopConfig
from refine.backends.scripted import ScriptedBackend
from server.app import DrKernelServer
from server.client import AsyncClient
from server.config import load_config
from server.logs import configure_logging

REFERENCE = (Path(__file__).resolve().parents[1] / "examples/relu/reference.py").read_text()
RESPONSE = "Done.\n```python\nclass ModelNew:\n    pass\n```\n"
OVERHEAD_TURNS = 20


class FixedDelayJudge:
    """Answers `correct` after a fixed delay, with unlimited concurrency (an ideal pool)."""

    device = "cpu"
    queue_depth = 0
    ready = True

    def __init__(self, delay_s: float):
        self.delay_s = delay_s

    async def evaluate(self, problem: Problem, candidate: str,
                       config: EvalConfig | None = None) -> EvalResult:
        await asyncio.sleep(self.delay_s)
        return EvalResult(status=Status.CORRECT, compiled=True, correct=True, reward=0.5)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


def scripted(responses: int, generate_s: float) -> ScriptedBackend:
    from refine.tiny_model import build_tokenizer

    return ScriptedBackend(build_tokenizer(), [RESPONSE] * responses, [generate_s] * responses)


def _serve(conn: Connection, responses: int, generate_s: float, evaluate_s: float) -> None:
    asyncio.run(_serve_async(conn, responses, generate_s, evaluate_s))


async def _serve_async(conn: Connection, responses: int, generate_s: float,
                       evaluate_s: float) -> None:
    configure_logging("info", json=True)
    with open(os.devnull, "w") as devnull:
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(devnull))
        await _serve_until_told(conn, responses, generate_s, evaluate_s)


async def _serve_until_told(conn: Connection, responses: int, generate_s: float,
                            evaluate_s: float) -> None:
    config = load_config(env={}, overrides={"host": "127.0.0.1", "port": 0,
                                            "metrics_port": None, "max_sessions": 1024})
    server = DrKernelServer(config, scripted(responses, generate_s), FixedDelayJudge(evaluate_s),
                            "bench")
    await server.start()
    conn.send(server.port)
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)
    await server.stop(grace_s=0)


class ServerProcess:
    def __init__(self, responses: int, generate_s: float = 0.0, evaluate_s: float = 0.0):
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, responses, generate_s, evaluate_s))

    def __enter__(self) -> str:
        self.proc.start()
        return f"127.0.0.1:{self.conn.recv()}"

    def __exit__(self, *exc: object) -> None:
        self.conn.send("stop")
        self.proc.join(30)


async def loop_per_turn_s(sessions: int) -> float:
    backend = scripted(sessions * OVERHEAD_TURNS, 0.0)
    loop = Loop(backend, FixedDelayJudge(0.0), LoopConfig(max_turns=OVERHEAD_TURNS))
    times = []
    for _ in range(sessions):
        started = time.perf_counter()
        _ = [e async for e in loop.run(Problem(REFERENCE))]
        times.append((time.perf_counter() - started) / OVERHEAD_TURNS)
    return statistics.median(times)


async def service_per_turn_s(target: str, sessions: int) -> float:
    times = []
    async with AsyncClient(target) as client:
        await client.info()
        for _ in range(sessions):
            started = time.perf_counter()
            _ = [e async for e in client.optimize(REFERENCE,
                                                  policy={"max_turns": OVERHEAD_TURNS})]
            times.append((time.perf_counter() - started) / OVERHEAD_TURNS)
    return statistics.median(times)


def ideal_offset_s(kind: str, turn: int, turns: int, generate_s: float,
                   evaluate_s: float) -> float:
    step = generate_s + evaluate_s
    return {"turn_started": (turn - 1) * step, "generated": (turn - 1) * step + generate_s,
            "evaluated": turn * step, "best_updated": turn * step,
            "finished": turns * step}[kind]


async def one_stream(client: AsyncClient, turns: int, generate_s: float, evaluate_s: float
                     ) -> list[float]:
    lateness, started = [], time.perf_counter()
    async for event in client.optimize(REFERENCE, policy={"max_turns": turns}):
        kind = event.WhichOneof("event")
        turn_no = turns if kind == "finished" else _turn_of(getattr(event, kind))
        expected = ideal_offset_s(kind, turn_no, turns, generate_s, evaluate_s)
        lateness.append(time.perf_counter() - started - expected)
    return lateness


def _turn_of(message: object) -> int:
    turn = message.turn  # type: ignore[attr-defined]
    return turn if isinstance(turn, int) else int(turn.turn)


async def load(target: str, sessions: int, turns: int, generate_s: float, evaluate_s: float
               ) -> tuple[list[float], float]:
    async with AsyncClient(target) as client:
        await client.info()
        started = time.perf_counter()
        streams = await asyncio.gather(*(one_stream(client, turns, generate_s, evaluate_s)
                                         for _ in range(sessions)))
        wall_s = time.perf_counter() - started
    return [x for s in streams for x in s], wall_s


async def load_in_process(sessions: int, turns: int, generate_s: float, evaluate_s: float
                          ) -> tuple[list[float], float]:
    """The same load on `Loop.run` directly: what the loop alone costs at this concurrency."""
    backend = scripted(sessions * turns, generate_s)
    loop = Loop(backend, FixedDelayJudge(evaluate_s), LoopConfig(max_turns=turns))

    async def one() -> list[float]:
        lateness, started = [], time.perf_counter()
        async for event in loop.run(Problem(REFERENCE)):
            kind = _KINDS[type(event).__name__]
            turn_no = turns if kind == "finished" else _turn_of(event)
            expected = ideal_offset_s(kind, turn_no, turns, generate_s, evaluate_s)
            lateness.append(time.perf_counter() - started - expected)
        return lateness

    started = time.perf_counter()
    streams = await asyncio.gather(*(one() for _ in range(sessions)))
    return [x for s in streams for x in s], time.perf_counter() - started


_KINDS = {"TurnStarted": "turn_started", "Generated": "generated", "Evaluated": "evaluated",
          "BestUpdated": "best_updated", "Finished": "finished"}


def report(label: str, lateness: list[float], wall_s: float, ideal_s: float) -> None:
    print(f"  {label:<18} wall {wall_s:6.3f} s (ideal {ideal_s:.3f} s); lateness over "
          f"{len(lateness)} events: p50 {percentile(lateness, 0.5) * 1e3:6.1f} ms, "
          f"p99 {percentile(lateness, 0.99) * 1e3:6.1f} ms")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=64)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--generate-s", type=float, default=0.2)
    parser.add_argument("--evaluate-s", type=float, default=0.1)
    parser.add_argument("--overhead-sessions", type=int, default=30)
    args = parser.parse_args()
    configure_logging("warning")

    in_process_s = asyncio.run(loop_per_turn_s(args.overhead_sessions))
    with ServerProcess(args.overhead_sessions * OVERHEAD_TURNS) as target:
        service_s = asyncio.run(service_per_turn_s(target, args.overhead_sessions))
    print(f"per-turn orchestration, {OVERHEAD_TURNS}-turn sessions, zero generation and "
          f"evaluation time (median of {args.overhead_sessions}):")
    print(f"  loop in-process   {in_process_s * 1e3:8.3f} ms/turn")
    print(f"  through gRPC      {service_s * 1e3:8.3f} ms/turn")
    print(f"  service overhead  {(service_s - in_process_s) * 1e3:8.3f} ms/turn")

    responses = args.sessions * args.turns
    with ServerProcess(responses, args.generate_s, args.evaluate_s) as target:
        lateness, wall_s = asyncio.run(load(target, args.sessions, args.turns, args.generate_s,
                                            args.evaluate_s))
    alone, alone_wall_s = asyncio.run(load_in_process(args.sessions, args.turns,
                                                      args.generate_s, args.evaluate_s))
    ideal_s = args.turns * (args.generate_s + args.evaluate_s)
    print(f"\n{args.sessions} concurrent sessions x {args.turns} turns, generation "
          f"{args.generate_s} s, evaluation {args.evaluate_s} s; lateness = arrival minus the "
          "ideal schedule where all delays overlap:")
    report("Optimize streams", lateness, wall_s, ideal_s)
    report("loop in-process", alone, alone_wall_s, ideal_s)


if __name__ == "__main__":
    main()
