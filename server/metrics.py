"""Prometheus families, in the default registry that vLLM's own metrics share.

The names are a contract with the deployment's dashboards and alerts: rename nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from refine.events import Evaluated, Event, Finished, Generated
from server.mapping import turn_status

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)

BUILD_INFO = Gauge("drkernel_build_info", "Constant 1, labelled with what this server runs.",
                   ["version", "model", "backend", "device"])
SESSIONS = Counter("drkernel_sessions", "Optimize sessions by outcome.", ["outcome"])
SESSIONS_IN_FLIGHT = Gauge("drkernel_sessions_in_flight", "Optimize sessions running now.")
TURNS = Counter("drkernel_turns", "Judged turns by evaluator status or format_error.", ["status"])
PHASE_SECONDS = Histogram("drkernel_phase_duration_seconds", "Time per turn in each phase.",
                          ["phase"], buckets=_SECONDS)
BEST_SPEEDUP = Histogram("drkernel_best_speedup", "Speedup of the best candidate of a session.",
                         buckets=(0.25, 0.5, 0.8, 1, 1.1, 1.25, 1.5, 2, 3, 5, 10))
BEST_TURN = Histogram("drkernel_best_turn", "Turn that produced the best candidate.",
                      buckets=(1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50))
TOKENS = Counter("drkernel_tokens", "Tokens of Optimize sessions.", ["kind"])
EVALUATOR_QUEUE_DEPTH = Gauge("drkernel_evaluator_queue_depth",
                              "Evaluations waiting for a worker.")
EVALUATIONS = Counter("drkernel_evaluations", "Verdicts of Evaluate and ComputeRewards.",
                      ["status"])
REJECTED = Counter("drkernel_requests_rejected", "Requests refused before any work.", ["reason"])

GRPC_STARTED = Counter("grpc_server_started", "RPCs started on the server.",
                       ["grpc_type", "grpc_service", "grpc_method"])
GRPC_HANDLED = Counter("grpc_server_handled", "RPCs completed on the server, by status code.",
                       ["grpc_type", "grpc_service", "grpc_method", "grpc_code"])
GRPC_SECONDS = Histogram("grpc_server_handling_seconds", "Time to complete an RPC.",
                         ["grpc_type", "grpc_service", "grpc_method"], buckets=_SECONDS)


def observe_event(event: Event) -> None:
    """Records one loop event of an Optimize session."""
    if isinstance(event, Generated):
        PHASE_SECONDS.labels("generate").observe(event.generate_s)
    elif isinstance(event, Evaluated):
        TURNS.labels(turn_status(event.turn)).inc()
        if event.turn.result is not None:
            PHASE_SECONDS.labels("evaluate").observe(event.turn.evaluate_s)
    elif isinstance(event, Finished):
        _observe_finished(event)


def _observe_finished(event: Finished) -> None:
    for kind in ("prompt", "cached", "generated"):
        TOKENS.labels(kind).inc(getattr(event.usage, f"{kind}_tokens"))
    best = event.best
    if best is None:
        return
    BEST_TURN.observe(best.turn)
    if best.result is not None and best.result.speedup is not None:
        BEST_SPEEDUP.observe(best.result.speedup)


def set_build_info(version: str, model: str, backend: str, device: str) -> None:
    BUILD_INFO.clear()
    BUILD_INFO.labels(version, model, backend, device).set(1)


def track_queue_depth(depth: Callable[[], float]) -> None:
    EVALUATOR_QUEUE_DEPTH.set_function(depth)


def serve_metrics(host: str, port: int) -> tuple[Callable[[], None], int]:
    """Starts `/metrics` on a side HTTP port; returns a stop function and the bound port."""
    httpd, thread = start_http_server(port, addr=host)

    def stop() -> None:
        httpd.shutdown()
        httpd.server_close()
        thread.join()

    return stop, int(httpd.server_port)
