"""Optional bearer-token auth; health and reflection stay open for probes and tooling."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from server.errors import Unauthenticated

_EXEMPT = ("/grpc.health.v1.Health/", "/grpc.reflection.")
_KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")


class BearerAuth(grpc.aio.ServerInterceptor):
    def __init__(self, token: str):
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or details.method.startswith(_EXEMPT) or self._allowed(details):
            return handler
        kind = next(k for k in _KINDS if getattr(handler, k) is not None)
        # The body of a caller we do not know is never parsed: no parser detail leaks to it.
        return handler._replace(**{kind: _refuse, "request_deserializer": _unread})

    def _allowed(self, details: grpc.HandlerCallDetails) -> bool:
        values = [v for k, v in details.invocation_metadata or () if k == "authorization"]
        if len(values) != 1:
            return False
        value = values[0]
        given = value.encode() if isinstance(value, str) else bytes(value)
        return hmac.compare_digest(given, self._expected)


def _unread(data: bytes) -> None:
    return None


async def _refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
    raise Unauthenticated("missing or invalid bearer token in the authorization metadata")
