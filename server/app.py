"""Assembles and runs one server: gRPC service, health, reflection, metrics, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import importlib.metadata
import signal
import time
from collections.abc import Callable
from typing import Protocol

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from evaluator import EVALUATOR_VERSION, Evaluator
from protos.drkernel.v1 import optimizer_pb2 as pb
from protos.drkernel.v1 import optimizer_pb2_grpc as pb_grpc
from refine.backends import Backend, load_backend
from server import metrics
from server.admission import Admission
from server.auth import BearerAuth
from server.boundary import RequestContext
from server.config import ModelConfig, ServerConfig
from server.requests import MAX_TURNS
from server.service import Evaluator as ServiceEvaluator
from server.service import KernelOptimizerService

log = structlog.get_logger("drkernel.server")
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["KernelOptimizer"].full_name
_VERSIONED = ("drkernel", "grpcio", "protobuf", "torch", "triton", "transformers", "vllm")
_HEALTH_CHECK_S = 1.0
"""How often health re-reads the backend and the evaluator: an engine can die between calls."""


class Judge(ServiceEvaluator, Protocol):
    """An evaluator the server can start, report ready and close."""

    @property
    def device(self) -> str: ...

    @property
    def ready(self) -> bool: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class DrKernelServer:
    """One gRPC server; the caller owns (and closes) the backend and the evaluator."""

    def __init__(self, config: ServerConfig, backend: Backend, evaluator: Judge, model: str):
        self.config = config
        self.backend = backend
        self.evaluator = evaluator
        self.model = model
        self.admission = Admission(config.max_sessions, config.max_pending_evaluations,
                                   lambda: evaluator.queue_depth)
        self.health = HealthServicer()
        self.server = grpc.aio.server(interceptors=self._interceptors(), options=[
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ])
        self.port = 0
        self.metrics_port: int | None = None
        self._stop_metrics: Callable[[], None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self.info = self._info()

    async def start(self) -> None:
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        pb_grpc.add_KernelOptimizerServicer_to_server(self._service(), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME), self.server)
        self.port = self._add_port()
        await self.server.start()
        if self.config.metrics_port is not None:
            self._stop_metrics, self.metrics_port = metrics.serve_metrics(
                self.config.metrics_host, self.config.metrics_port)
        metrics.set_build_info(_version("drkernel") or "unknown", self.model, self.backend.name,
                               self.evaluator.device)
        metrics.track_queue_depth(lambda: self.evaluator.queue_depth)
        await self.evaluator.start()
        refused = self._check_sandbox()
        if refused:
            await self.server.stop(0)
            raise RuntimeError(refused)
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        self._watch = asyncio.create_task(self._watch_health())

    def _check_sandbox(self) -> str:
        """Report the evaluator's boundary; why serving is refused, if it is (no layer at all
        and no --insecure-sandbox)."""
        boundary = getattr(self.evaluator, "boundary", None)
        if boundary is None:
            return ""
        insecure = not boundary.kernel_layers
        self.info.sandbox.CopyFrom(pb.SandboxInfo(
            confined=boundary.confined, layers=list(boundary.kernel_layers),
            memory_limit=boundary.memory_limit, report_auth=boundary.report_auth,
            insecure=insecure, notes=list(boundary.notes)))
        (log.info if boundary.confined else log.warning)(
            "sandbox", confined=boundary.confined, layers=list(boundary.kernel_layers),
            memory_limit=boundary.memory_limit, report_auth=boundary.report_auth,
            notes=list(boundary.notes), insecure_sandbox=self.config.insecure_sandbox)
        if insecure and not self.config.insecure_sandbox:
            return ("no kernel sandbox is available on this host "
                    f"({'; '.join(boundary.notes) or 'no layer works'}): refusing untrusted "
                    "sources; start with --insecure-sandbox to serve anyway")
        return ""

    async def stop(self, grace_s: float | None = None) -> None:
        """Drain: health turns NOT_SERVING, new work is refused, running work gets `grace_s`.

        The port stays open while draining, so probes read NOT_SERVING and late clients get
        UNAVAILABLE from us rather than a refused connection.
        """
        grace_s = self.config.drain_grace_s if grace_s is None else grace_s
        started = time.monotonic()
        if self._watch is not None:
            self._watch.cancel()
        await self.health.enter_graceful_shutdown()
        self.admission.drain()
        await self.admission.wait_idle(grace_s)
        await self.server.stop(max(0.0, grace_s - (time.monotonic() - started)))
        if self._stop_metrics is not None:
            self._stop_metrics()
            self._stop_metrics = None

    async def _watch_health(self) -> None:
        """NOT_SERVING for good once the backend is dead or the evaluator closed: neither
        recovers, so probes should restart this replica and balancers route elsewhere."""
        while not self.backend.dead and self.evaluator.ready:
            await asyncio.sleep(_HEALTH_CHECK_S)
        log.error("not_serving", backend=self.backend.name, backend_dead=self.backend.dead,
                  evaluator_ready=self.evaluator.ready)
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)

    async def _set_health(self, status: health_pb2.HealthCheckResponse.ServingStatus) -> None:
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)

    def _interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        interceptors: list[grpc.aio.ServerInterceptor] = [RequestContext()]
        if self.config.auth_token is not None:
            interceptors.append(BearerAuth(self.config.auth_token.get_secret_value()))
        return interceptors

    def _add_port(self) -> int:
        address = f"{self.config.host}:{self.config.port}"
        tls = self.config.tls
        if not tls.enabled:
            return self.server.add_insecure_port(address)
        assert tls.cert_file is not None and tls.key_file is not None
        credentials = grpc.ssl_server_credentials(
            [(tls.key_file.read_bytes(), tls.cert_file.read_bytes())],
            root_certificates=tls.client_ca_file.read_bytes() if tls.client_ca_file else None,
            require_client_auth=tls.client_ca_file is not None,
        )
        return self.server.add_secure_port(address, credentials)

    def _service(self) -> KernelOptimizerService:
        c = self.config
        return KernelOptimizerService(
            backend=self.backend, evaluator=self.evaluator, admission=self.admission,
            loop_config=c.loop, eval_config=c.evaluator, reward_config=c.reward,
            deadline_margin_s=c.deadline_margin_s, info=self.info)

    def _info(self) -> pb.ServerInfo:
        c = self.config
        return pb.ServerInfo(
            version=_version("drkernel"), model=self.model, backend=self.backend.name,
            device=self.evaluator.device, evaluator_version=EVALUATOR_VERSION,
            versions={name: v for name in _VERSIONED if (v := _version(name))},
            limits=pb.Limits(
                max_sessions=c.max_sessions, max_source_bytes=c.evaluator.max_source_bytes,
                max_reward_items=c.max_reward_items, max_message_bytes=c.max_message_bytes,
                evaluator_workers=c.workers, max_pending_evaluations=c.max_pending_evaluations,
                max_evaluator_timeout_s=c.evaluator.timeout_s, max_turns=MAX_TURNS),
            default_policy=pb.TurnPolicy(
                max_turns=c.loop.max_turns, samples_per_turn=c.loop.samples_per_turn,
                history=pb.HISTORY_WINDOW if c.loop.history == "window" else pb.HISTORY_ALL),
        )


def _version(distribution: str) -> str:
    """The installed version; empty when not installed (a checkout run without `pip install`)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return ""


def load_model(config: ModelConfig) -> tuple[Backend, str]:
    """The configured backend and the model name it reports; the tiny model when unset."""
    path = config.path
    if path is None:
        from server.default_model import tiny_model  # builds with torch and transformers

        path = str(tiny_model(config.cache_dir))
        log.warning("no model configured: serving the tiny TEST model (random weights, it "
                    "writes noise); set model.path for real use", path=path)
    api_key = config.api_key.get_secret_value() if config.api_key else None
    backend = load_backend(config.backend, path, base_url=config.base_url, api_key=api_key,
                           device=config.device, engine_args=config.engine_args)
    return backend, config.path or "tiny-test-model"


async def serve(config: ServerConfig) -> None:
    """`drkernel serve`: build, serve until SIGTERM or SIGINT, drain, always clean up."""
    backend, model = load_model(config.model)
    evaluator = Evaluator(workers=config.workers, config=config.evaluator,
                          reward_config=config.reward, gpus=config.evaluator_gpus or None)
    try:
        server = DrKernelServer(config, backend, evaluator, model)
        await server.start()
        log.info("serving", port=server.port, metrics_port=server.metrics_port, model=model,
                 backend=backend.name, device=evaluator.device, tls=config.tls.enabled,
                 auth=config.auth_token is not None)
        stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stopping.set)
        await stopping.wait()
        log.info("draining", grace_s=config.drain_grace_s, sessions=server.admission.sessions)
        await server.stop()
        log.info("stopped")
    finally:
        await evaluator.close()
        await backend.close()
