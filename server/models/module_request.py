"""A module request (`Optimize` over gRPC): the user's file, a class, its constructor
arguments and input shapes, turned into a KernelBench problem by `server.models.build` in a
separate, sandboxed process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from dataclasses import asdict, dataclass

_MARGIN_S = 30.0
"""Beyond the child's own limit: the build process imports torch and probes the sandbox."""


class BuildError(ValueError):
    """The module could not be written as a problem; the message says why."""


@dataclass(frozen=True)
class ModuleSpec:
    source: str
    class_name: str
    init_json: str
    inputs_json: str
    file_name: str = "module.py"


@dataclass(frozen=True)
class BuildLimits:
    timeout_s: float
    memory_mb: int
    max_processes: int
    max_output_bytes: int


@dataclass(frozen=True)
class Built:
    reference: str
    how: str
    note: str


async def build_problem(spec: ModuleSpec, limits: BuildLimits) -> Built:
    job = json.dumps({**asdict(spec), **asdict(limits)}).encode()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server.models.build", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(job), limits.timeout_s + _MARGIN_S)
    except (TimeoutError, asyncio.CancelledError):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise
    try:
        reply = json.loads(out.decode().strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError, UnicodeDecodeError):
        raise BuildError(f"the problem builder failed (exit {proc.returncode})") from None
    if not reply.get("ok"):
        raise BuildError(str(reply.get("error", "unknown error")))
    return Built(reply["reference"], reply["how"], reply.get("note", ""))
