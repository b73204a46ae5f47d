"""The edge of every RPC: request id, one log event, grpc_server_* metrics, errors → status.

Wraps each handler rather than each servicer method, so health, reflection and a refused
request are counted and logged the same way as the service's own methods.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog
from google.protobuf.message import DecodeError

from server import metrics
from server.errors import InvalidRequest, ServiceError, public_message, status_for

log = structlog.get_logger("drkernel.rpc")
_REQUEST_ID = re.compile(r"[\w.:/@+=-]{1,128}")
_KINDS = {"unary_unary": "unary", "unary_stream": "server_stream",
          "stream_unary": "client_stream", "stream_stream": "bidi_stream"}
_DEADLINE_SLACK_S = 0.05
_QUIET_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection")


class RequestContext(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        kind = next(k for k in _KINDS if getattr(handler, k) is not None)
        rpc = _Rpc(details, _KINDS[kind])
        behavior = getattr(handler, kind)
        wrap = rpc.wrap_stream if inspect.isasyncgenfunction(behavior) else rpc.wrap_call
        changes = {kind: wrap(behavior)}
        if kind.startswith("unary_") and handler.request_deserializer is not None:
            changes["request_deserializer"] = _tolerant(handler.request_deserializer)
        return handler._replace(**changes)


class _Rpc:
    def __init__(self, details: grpc.HandlerCallDetails, grpc_type: str):
        service, _, method = details.method.lstrip("/").rpartition("/")
        self.labels = (grpc_type, service, method)
        self.metadata = {k: v for k, v in details.invocation_metadata or ()
                         if isinstance(v, str)}
        self.code = grpc.StatusCode.OK

    def wrap_call(self, behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            start, request_id = await self._begin(request, context)
            with structlog.contextvars.bound_contextvars(request_id=request_id):
                try:
                    _check_parsed(request)
                    return await behavior(request, context)
                except BaseException as exc:
                    await self._fail(exc, context)
                    raise
                finally:
                    self._end(start)

        return call

    def wrap_stream(self, behavior: Callable[..., AsyncIterator[Any]]
                    ) -> Callable[..., AsyncIterator[Any]]:
        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            start, request_id = await self._begin(request, context)
            with structlog.contextvars.bound_contextvars(request_id=request_id):
                try:
                    _check_parsed(request)
                    async for response in behavior(request, context):
                        yield response
                except BaseException as exc:
                    await self._fail(exc, context)
                    raise
                finally:
                    self._end(start)

        return stream

    async def _begin(self, request: Any, context: grpc.aio.ServicerContext) -> tuple[float, str]:
        metrics.GRPC_STARTED.labels(*self.labels).inc()
        if isinstance(request, _Malformed):
            request = None
        request_id = _request_id(getattr(request, "request_id", ""),
                                 self.metadata.get("x-request-id", ""))
        context.set_trailing_metadata((("x-request-id", request_id),))
        await context.send_initial_metadata((("x-request-id", request_id),))
        return time.perf_counter(), request_id

    async def _fail(self, exc: BaseException, context: grpc.aio.ServicerContext) -> None:
        """Records the RPC's code; a domain error or a bug becomes an abort with that code."""
        if isinstance(exc, asyncio.CancelledError):
            expired = deadline_passed(context)
            self.code = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
        elif isinstance(exc, grpc.aio.AbortError):
            self.code = context.code() or grpc.StatusCode.UNKNOWN
        elif isinstance(exc, Exception):
            self.code = status_for(exc)
            if isinstance(exc, ServiceError) and exc.rejection:
                metrics.REJECTED.labels(exc.rejection).inc()
            if self.code is grpc.StatusCode.INTERNAL:
                log.error("rpc.internal_error", method=self.labels[2], exc_info=exc)
            await context.abort(self.code, public_message(exc))

    def _end(self, start: float) -> None:
        elapsed_s = time.perf_counter() - start
        grpc_type, service, method = self.labels
        metrics.GRPC_HANDLED.labels(grpc_type, service, method, self.code.name).inc()
        metrics.GRPC_SECONDS.labels(*self.labels).observe(elapsed_s)
        emit = log.debug if service in _QUIET_SERVICES else log.info
        emit("rpc", method=f"{service}/{method}", code=self.code.name,
             elapsed_s=round(elapsed_s, 4))


def deadline_passed(context: grpc.aio.ServicerContext) -> bool:
    """Whether a cancelled call was ended by its deadline: grpc may cancel the handler a few
    milliseconds before its own clock reads zero."""
    remaining = context.time_remaining()
    return remaining is not None and remaining <= _DEADLINE_SLACK_S


def _request_id(field: str, header: str) -> str:
    """The client's id when it is a sane token, else a fresh one."""
    for candidate in (field, header):
        if isinstance(candidate, str) and _REQUEST_ID.fullmatch(candidate):
            return candidate
    return uuid.uuid4().hex


class _Malformed:
    def __init__(self, error: Exception):
        self.error = error


def _tolerant(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """grpcio answers a request that fails to parse with UNKNOWN and logs a traceback; this
    hands the failure to the handler, which refuses it as INVALID_ARGUMENT."""
    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError as exc:
            return _Malformed(exc)

    return parse


def _check_parsed(request: Any) -> None:
    if isinstance(request, _Malformed):
        raise InvalidRequest(f"the request is not a valid message: {request.error}")
