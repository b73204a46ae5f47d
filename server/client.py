"""A small Python client for IDE tooling and scripts, sync (`Client`) and async (`AsyncClient`).

    with Client("localhost:50051") as client:
        for event in client.optimize(reference, policy={"max_turns": 3}, timeout_s=600):
            if event.HasField("finished"):
                print(event.finished.best.code)
        # or a class of the user's own code, which the server writes out as the problem:
        module = module_request(Path("model.py"), "RMSNorm", inputs="[[8, 64]]", init="[64]")
        events = client.optimize("", module=module)

Settings are protos or plain dicts of their fields (`policy`, `sampling`, `evaluator`).
Errors are `grpc.RpcError`s with the server's status code and message.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from protos.drkernel.v1 import optimizer_pb2 as pb
from protos.drkernel.v1 import optimizer_pb2_grpc as pb_grpc

Settings = Mapping[str, Any] | None


@dataclass(frozen=True, kw_only=True)
class Connection:
    """Where and how to connect; `root_certificates` turns TLS on, `client_cert` adds mTLS."""

    target: str
    token: str | None = None
    root_certificates: bytes | None = None
    client_cert: tuple[bytes, bytes] | None = None
    """(private key, certificate chain) in PEM."""
    server_name: str | None = None
    """Overrides the name checked against the server's certificate."""
    max_message_bytes: int = 64 << 20

    @classmethod
    def from_files(cls, target: str, token: str | None = None, ca_file: Path | None = None,
                   cert_file: Path | None = None, key_file: Path | None = None,
                   server_name: str | None = None) -> Connection:
        client_cert = None
        if cert_file is not None and key_file is not None:
            client_cert = (key_file.read_bytes(), cert_file.read_bytes())
        return cls(target=target, token=token, client_cert=client_cert, server_name=server_name,
                   root_certificates=ca_file.read_bytes() if ca_file else None)

    def options(self) -> list[tuple[str, Any]]:
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", self.max_message_bytes),
        ]
        if self.server_name:
            options.append(("grpc.ssl_target_name_override", self.server_name))
        return options

    def credentials(self) -> grpc.ChannelCredentials | None:
        if self.root_certificates is None and self.client_cert is None:
            return None
        key, chain = self.client_cert or (None, None)
        return grpc.ssl_channel_credentials(self.root_certificates, key, chain)

    def metadata(self, request_id: str = "") -> list[tuple[str, str]]:
        metadata = [("authorization", f"Bearer {self.token}")] if self.token else []
        return metadata + ([("x-request-id", request_id)] if request_id else [])


def optimize_request(reference: str, *, name: str = "", policy: Settings = None,
                     sampling: Settings = None, evaluator: Settings = None,
                     request_id: str = "", module: Settings = None) -> pb.OptimizeRequest:
    """`module` (with an empty `reference`): a `ModuleRequest` or its fields, see
    `module_request`."""
    return pb.OptimizeRequest(reference=reference, name=name, policy=policy, sampling=sampling,
                              evaluator=evaluator, request_id=request_id, module=module)


def module_request(path: Path, class_name: str, inputs: str, init: str = ""
                   ) -> pb.ModuleRequest:
    """A class in a file of the user's own code; `inputs` and `init` are JSON (see the
    proto), or `inputs` names a function in the file returning the inputs."""
    return pb.ModuleRequest(source=path.read_text(encoding="utf-8"), class_name=class_name,
                            init_json=init, inputs_json=inputs, file_name=path.name)


def evaluate_request(reference: str, candidate: str, *, name: str = "",
                     evaluator: Settings = None, request_id: str = "") -> pb.EvaluateRequest:
    return pb.EvaluateRequest(reference=reference, candidate=candidate, name=name,
                              evaluator=evaluator, request_id=request_id)


def reward_request(pairs: Iterable[tuple[str, str]], *, evaluator: Settings = None,
                   request_id: str = "") -> pb.RewardRequest:
    """`pairs` of (reference, model response)."""
    items = [pb.RewardItem(reference=ref, response=response) for ref, response in pairs]
    return pb.RewardRequest(items=items, evaluator=evaluator, request_id=request_id)


class Client:
    def __init__(self, target: str | Connection):
        self.connection = target if isinstance(target, Connection) else Connection(target=target)
        credentials = self.connection.credentials()
        options = self.connection.options()
        self.channel = (grpc.secure_channel(self.connection.target, credentials, options)
                        if credentials else grpc.insecure_channel(self.connection.target, options))
        self.stub = pb_grpc.KernelOptimizerStub(self.channel)

    def optimize(self, reference: str, *, timeout_s: float | None = None, **settings: Any
                 ) -> Iterator[pb.OptimizeEvent]:
        """Events as they happen; breaking out of the loop cancels the session."""
        request = optimize_request(reference, **settings)
        call = self.stub.Optimize(request, timeout=timeout_s,
                                  metadata=self.connection.metadata(request.request_id))
        try:
            yield from call
        finally:
            call.cancel()

    def evaluate(self, reference: str, candidate: str, *, timeout_s: float | None = None,
                 **settings: Any) -> pb.EvaluateResponse:
        request = evaluate_request(reference, candidate, **settings)
        return self.stub.Evaluate(request, timeout=timeout_s,
                                  metadata=self.connection.metadata(request.request_id))

    def compute_rewards(self, pairs: Iterable[tuple[str, str]], *,
                        timeout_s: float | None = None, **settings: Any) -> pb.RewardResponse:
        request = reward_request(pairs, **settings)
        return self.stub.ComputeRewards(request, timeout=timeout_s,
                                        metadata=self.connection.metadata(request.request_id))

    def info(self, timeout_s: float | None = 10.0) -> pb.ServerInfo:
        return self.stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=timeout_s,
                                       metadata=self.connection.metadata())

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient:
    def __init__(self, target: str | Connection):
        self.connection = target if isinstance(target, Connection) else Connection(target=target)
        credentials = self.connection.credentials()
        options = self.connection.options()
        self.channel = (
            grpc.aio.secure_channel(self.connection.target, credentials, options)
            if credentials else grpc.aio.insecure_channel(self.connection.target, options))
        self.stub = pb_grpc.KernelOptimizerStub(self.channel)

    async def optimize(self, reference: str, *, timeout_s: float | None = None,
                       **settings: Any) -> AsyncGenerator[pb.OptimizeEvent, None]:
        """Events as they happen; leaving the loop early cancels the session."""
        request = optimize_request(reference, **settings)
        call = self.stub.Optimize(request, timeout=timeout_s,
                                  metadata=self.connection.metadata(request.request_id))
        try:
            async for event in call:
                yield event
        finally:
            call.cancel()

    async def evaluate(self, reference: str, candidate: str, *, timeout_s: float | None = None,
                       **settings: Any) -> pb.EvaluateResponse:
        request = evaluate_request(reference, candidate, **settings)
        return await self.stub.Evaluate(request, timeout=timeout_s,
                                        metadata=self.connection.metadata(request.request_id))

    async def compute_rewards(self, pairs: Iterable[tuple[str, str]], *,
                              timeout_s: float | None = None, **settings: Any
                              ) -> pb.RewardResponse:
        request = reward_request(pairs, **settings)
        return await self.stub.ComputeRewards(
            request, timeout=timeout_s, metadata=self.connection.metadata(request.request_id))

    async def info(self, timeout_s: float | None = 10.0) -> pb.ServerInfo:
        return await self.stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=timeout_s,
                                             metadata=self.connection.metadata())

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
