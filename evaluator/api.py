"""`Evaluator`: a pool of warm worker processes behind one async `evaluate` call."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import struct
import sys
import tempfile
import threading
import weakref
from collections.abc import Coroutine
from typing import Any, TypeVar

from evaluator.config import EvalConfig, Problem, resolve_device
from evaluator.confine import Boundary
from evaluator.result import ErrorInfo, EvalResult, Status
from evaluator.reward import RewardConfig, reward
from evaluator.wire import pack, unpack

T = TypeVar("T")
_START_TIMEOUT_S = 120.0


class EvaluatorError(Exception):
    """Base of the evaluator's own errors."""


class ProblemError(EvaluatorError):
    """The reference is not a usable problem (it failed to load or run)."""

    def __init__(self, error: ErrorInfo) -> None:
        super().__init__(f"{error.type}: {error.message}")
        self.error = error


class EvaluatorClosed(EvaluatorError):
    """The evaluator was closed or its workers could not start."""


class _Worker:
    def __init__(self, device: str, gpu: str | None) -> None:
        self.device, self.gpu = device, gpu
        self.proc: asyncio.subprocess.Process | None = None
        self.boundary = Boundary()

    async def start(self) -> None:
        env = _worker_env(self.device, self.gpu)
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "evaluator.worker", self.device,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=None if os.environ.get("DRKERNEL_WORKER_STDERR") else asyncio.subprocess.DEVNULL,
            env=env, start_new_session=True,
        )
        ready = await asyncio.wait_for(self.read(), _START_TIMEOUT_S)
        if not ready.get("ready"):
            raise EvaluatorClosed("evaluator worker did not start")
        self.boundary = Boundary.from_dict(ready.get("boundary", {}))

    async def send(self, job: dict[str, Any]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(pack(job))
        await self.proc.stdin.drain()

    async def read(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        head = await self.proc.stdout.readexactly(8)
        (size,) = struct.unpack("<Q", head)
        header, _ = unpack(await self.proc.stdout.readexactly(size))
        return header

    def interrupt(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGUSR1)

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()


class Evaluator:
    """Judges candidates on a pool of warm workers; safe to share between many loops.

    Usage::

        async with Evaluator(workers=2, config=EvalConfig(device="cpu")) as ev:
            result = await ev.evaluate(Problem(reference_src), candidate_src)
    """

    def __init__(self, workers: int = 1, config: EvalConfig | None = None,
                 reward_config: RewardConfig | None = None,
                 gpus: list[str] | None = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.config = config or EvalConfig()
        self.reward_config = reward_config or RewardConfig()
        self.device = resolve_device(self.config.device)
        gpus = gpus or []
        self._workers = [_Worker(self.device, gpus[i % len(gpus)] if gpus else None)
                         for i in range(workers)]
        self._idle: asyncio.Queue[_Worker] | None = None
        self._started: asyncio.Task[None] | None = None
        self._waiting = 0
        self._busy = 0
        self._closed = False
        self._background: set[asyncio.Task[Any]] = set()

    @property
    def workers(self) -> int:
        return len(self._workers)

    @property
    def queue_depth(self) -> int:
        """Evaluations waiting for a free worker."""
        return self._waiting

    @property
    def in_flight(self) -> int:
        return self._busy

    @property
    def boundary(self) -> Boundary:
        """Which kernel protections confine every child (known once the workers started);
        the weakest worker's, should hosts differ."""
        return min((w.boundary for w in self._workers), key=lambda b: len(b.kernel_layers))

    @property
    def ready(self) -> bool:
        return self._started is not None and self._started.done() and not self._closed \
            and self._started.exception() is None

    async def start(self) -> None:
        if self._closed:
            raise EvaluatorClosed("evaluator is closed")
        if self._started is None:
            self._idle = asyncio.Queue()
            self._started = asyncio.ensure_future(self._start_all())
        await asyncio.shield(self._started)

    async def _start_all(self) -> None:
        await asyncio.gather(*(w.start() for w in self._workers))
        assert self._idle is not None
        for w in self._workers:
            self._idle.put_nowait(w)

    async def evaluate(self, problem: Problem | str, candidate: str,
                       config: EvalConfig | None = None) -> EvalResult:
        cfg = self._checked(config, problem, candidate)
        reference = problem.reference if isinstance(problem, Problem) else problem
        job = {"reference": reference, "candidate": candidate, "config": cfg.to_dict()}
        result = await self._run(job)
        if result.speedup is not None and result.speedup > cfg.rerun_speedup_above:
            result = await self._run({**job, "fresh_reference": True})
        result.reward = reward(result, self.reward_config)
        return result

    def _checked(self, config: EvalConfig | None, problem: Problem | str,
                 candidate: str) -> EvalConfig:
        cfg = config or self.config
        if cfg.device != "auto" and cfg.device != self.device:
            raise ValueError(f"this evaluator runs on {self.device}, not {cfg.device}")
        reference = problem.reference if isinstance(problem, Problem) else problem
        for name, source in (("reference", reference), ("candidate", candidate)):
            if len(source.encode("utf-8", "surrogatepass")) > cfg.max_source_bytes:
                raise ValueError(f"{name} source exceeds {cfg.max_source_bytes} bytes")
        return cfg

    async def _run(self, job: dict[str, Any]) -> EvalResult:
        await self.start()
        assert self._idle is not None
        self._waiting += 1
        try:
            worker = await self._idle.get()
        finally:
            self._waiting -= 1
        self._busy += 1
        try:
            reply = await self._request(worker, job)
        finally:
            self._busy -= 1
        if "problem_error" in reply:
            raise ProblemError(ErrorInfo(**reply["problem_error"]))
        if "result" not in reply:  # cancelled by a signal nobody here sent: still a verdict
            return EvalResult(status=Status.CRASHED, compiled=True, device=self.device,
                              error=ErrorInfo(type="crashed", message="the evaluation was "
                                              "interrupted inside the worker"))
        return EvalResult.from_dict(reply["result"])

    async def _request(self, worker: _Worker, job: dict[str, Any]) -> dict[str, Any]:
        timeout = 3 * job["config"]["timeout_s"] + 60
        try:
            await worker.send(job)
            reply = await asyncio.wait_for(worker.read(), timeout)
        except asyncio.CancelledError:
            worker.interrupt()
            self._spawn_background(self._recover(worker, drain=True))
            raise
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, BrokenPipeError) as exc:
            self._spawn_background(self._recover(worker, drain=False))
            status = Status.TIMEOUT if isinstance(exc, asyncio.TimeoutError) else Status.CRASHED
            return {"result": EvalResult(
                status=status, compiled=True, device=self.device,
                error=ErrorInfo(type=status.value, message="the evaluator worker stopped "
                                "responding and was replaced")).to_dict()}
        self._release(worker)
        return reply

    async def _recover(self, worker: _Worker, drain: bool) -> None:
        """Return a worker to the pool: read the interrupted job's reply, or restart it."""
        if drain:
            try:
                await asyncio.wait_for(worker.read(), 10)
                self._release(worker)
                return
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                pass
        await worker.stop()
        if not self._closed:
            await worker.start()
            self._release(worker)

    def _release(self, worker: _Worker) -> None:
        if self._idle is not None and not self._closed:
            self._idle.put_nowait(worker)

    def _spawn_background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in list(self._background):
            task.cancel()
        if self._started is not None and not self._started.done():
            self._started.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._started
        await asyncio.gather(*(w.stop() for w in self._workers))

    async def __aenter__(self) -> Evaluator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _worker_env(device: str, gpu: str | None) -> dict[str, str]:
    keep = ("PATH", "LD_LIBRARY_PATH", "CUDA_HOME", "TRITON_CACHE_DIR", "TRITON_PTXAS_PATH",
            "LANG", "LC_ALL", "DRKERNEL_SANDBOX")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env["HOME"] = env["TMPDIR"] = tempfile.gettempdir()
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if device == "cpu":
        env["TRITON_INTERPRET"] = "1"
        env["CUDA_VISIBLE_DEVICES"] = ""
    elif gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    elif "CUDA_VISIBLE_DEVICES" in os.environ:
        env["CUDA_VISIBLE_DEVICES"] = os.environ["CUDA_VISIBLE_DEVICES"]
    return env


# ------------------------------------------------------------ one-call forms for trainers

_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Evaluator] = (
    weakref.WeakKeyDictionary())
_sync_lock = threading.Lock()
_sync_loop: asyncio.AbstractEventLoop | None = None


async def evaluate_async(problem: Problem | str, candidate: str,
                         config: EvalConfig | None = None) -> EvalResult:
    """Evaluate on a shared per-event-loop evaluator (one worker per device, started lazily)."""
    loop = asyncio.get_running_loop()
    device = resolve_device((config or EvalConfig()).device)
    ev = _per_loop.get(loop)
    if ev is None or ev.device != device:
        ev = Evaluator(workers=1, config=EvalConfig(device=device))
        _per_loop[loop] = ev
    return await ev.evaluate(problem, candidate, config)


def evaluate(problem: Problem | str, candidate: str,
             config: EvalConfig | None = None) -> EvalResult:
    """Blocking form: runs on a private background event loop kept for the process."""
    return _run_sync(evaluate_async(problem, candidate, config))


def _run_sync(coro: Coroutine[Any, Any, T]) -> T:
    global _sync_loop
    with _sync_lock:
        if _sync_loop is None:
            _sync_loop = asyncio.new_event_loop()
            threading.Thread(target=_sync_loop.run_forever, name="drkernel-evaluator",
                             daemon=True).start()
    return asyncio.run_coroutine_threadsafe(coro, _sync_loop).result()
