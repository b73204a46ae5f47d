"""Request-level failures, and the one place that turns any exception into a gRPC status.

    ServiceError
    ├── InvalidRequest        malformed request, source over the limit, no `Model`, bad settings
    ├── Unauthenticated       missing or wrong bearer token
    ├── Overloaded            our admission limit is reached (retry later)
    ├── Unavailable           the backend is dead, or the server is draining
    │   └── Draining
    └── NoCandidate           the deadline passed before any candidate was judged

The loop's and the evaluator's own errors map here too: a backend that cannot generate or
an evaluator that is closed is UNAVAILABLE; a reference that fails to load or run, or a
prompt that leaves the model no room, is INVALID_ARGUMENT. Per-turn failures (compile
errors, format errors, timeouts) are data in events, never these.
"""

from __future__ import annotations

import grpc

from evaluator.api import EvaluatorClosed, EvaluatorError, ProblemError
from refine.backends.protocol import BackendError, PromptTooLong


class ServiceError(Exception):
    """Base of the failures a client is told about by status code and message."""

    rejection: str | None = None
    """The `reason` label of drkernel_requests_rejected_total, for refusals before any work."""


class InvalidRequest(ServiceError):
    """The request cannot be served as sent; the message says which field and why."""

    rejection = "invalid"


class Unauthenticated(ServiceError):
    """Auth is on and the `authorization` metadata is missing or wrong."""

    rejection = "unauthenticated"


class Overloaded(ServiceError):
    """Admitting the request would exceed the server's sessions or pending evaluations."""

    rejection = "overload"


class Unavailable(ServiceError):
    """The generation backend cannot serve; retry on another replica."""


class Draining(Unavailable):
    """The server is shutting down and admits no new work."""

    rejection = "draining"


class NoCandidate(ServiceError):
    """The client's deadline expired before the first candidate was judged."""


_CODES: dict[type[BaseException], grpc.StatusCode] = {
    InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    NoCandidate: grpc.StatusCode.DEADLINE_EXCEEDED,
    BackendError: grpc.StatusCode.UNAVAILABLE,
    PromptTooLong: grpc.StatusCode.INVALID_ARGUMENT,
    EvaluatorError: grpc.StatusCode.UNAVAILABLE,
    EvaluatorClosed: grpc.StatusCode.UNAVAILABLE,
    ProblemError: grpc.StatusCode.INVALID_ARGUMENT,
}


def status_for(exc: BaseException) -> grpc.StatusCode:
    """The status code of `exc`: its nearest mapped class, else INTERNAL (a bug of ours)."""
    for cls in type(exc).__mro__:
        if cls in _CODES:
            return _CODES[cls]
    return grpc.StatusCode.INTERNAL


def public_message(exc: BaseException) -> str:
    """What the client may read: our own messages in full, never a bug's internals."""
    if status_for(exc) is grpc.StatusCode.INTERNAL:
        return "internal error; the server log has the details under this request id"
    return str(exc) or type(exc).__name__
