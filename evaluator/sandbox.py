"""Fork a limited child from the warm worker, talk to it over pipes, always clean up after it."""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import select
import signal
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from evaluator.wire import MAX_FRAME_BYTES, write_frame

_CLONE_NEWNET = 0x40000000
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True)
class Limits:
    timeout_s: float
    memory_mb: int | None
    """Address space beyond what the worker maps already; None where CUDA needs it all."""
    max_processes: int
    max_file_bytes: int


@dataclass
class Channel:
    """The child's end: send frames to the worker, wait for its go-ahead."""

    out_fd: int
    in_fd: int

    def send(self, frame: bytes) -> None:
        write_frame(self.out_fd, frame)

    def wait_go(self) -> bool:
        return os.read(self.in_fd, 1) == b"1"


@dataclass
class ChildOutcome:
    exit_code: int | None = None
    signal: int | None = None
    timed_out: bool = False
    cancelled: bool = False
    output: str = ""
    """Tail of what the child printed."""


@dataclass
class Child:
    pid: int
    out_fd: int
    in_fd: int
    output_path: str
    deadline: float
    max_output_bytes: int
    _buffer: bytearray = field(default_factory=bytearray)
    cancelled: bool = False

    def recv(self) -> bytes | None:
        """Next frame, or None when the child ended, hung past its deadline or was cancelled."""
        while True:
            frame = self._take_frame()
            if frame is not None:
                return frame
            left = self.deadline - time.monotonic()
            if left <= 0 or self.cancelled:
                return None
            ready, _, _ = select.select([self.out_fd], [], [], min(left, 0.5))
            if not ready:
                continue
            chunk = os.read(self.out_fd, 1 << 20)
            if not chunk:
                return None
            self._buffer += chunk
            if len(self._buffer) > MAX_FRAME_BYTES + 8:
                return None

    def _take_frame(self) -> bytes | None:
        if len(self._buffer) < 8:
            return None
        (size,) = struct.unpack_from("<Q", self._buffer, 0)
        if len(self._buffer) < 8 + size:
            return None
        frame = bytes(self._buffer[8 : 8 + size])
        del self._buffer[: 8 + size]
        return frame

    def go(self, proceed: bool) -> None:
        with contextlib.suppress(OSError):
            os.write(self.in_fd, b"1" if proceed else b"0")

    def kill(self) -> None:
        _kill_session(self.pid)

    def finish(self) -> ChildOutcome:
        """Wait for the child (up to its deadline), then kill whatever it left behind."""
        outcome = ChildOutcome(cancelled=self.cancelled)
        status = self._wait_until_deadline()
        if status is None:
            outcome.timed_out = not self.cancelled
            _kill_session(self.pid)
            _, status = os.waitpid(self.pid, 0)
        _kill_session(self.pid)
        if _subreaper:
            reap_orphans()
        if os.WIFSIGNALED(status):
            outcome.signal = os.WTERMSIG(status)
        else:
            outcome.exit_code = os.WEXITSTATUS(status)
        for fd in (self.out_fd, self.in_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        outcome.output = _tail(self.output_path, self.max_output_bytes)
        return outcome

    def _wait_until_deadline(self) -> int | None:
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return status
            if time.monotonic() >= self.deadline or self.cancelled:
                return None
            time.sleep(0.005)


def spawn(
    target: Callable[[Channel, dict[str, Any]], None],
    job: dict[str, Any],
    limits: Limits,
    scratch: str,
) -> Child:
    out_r, out_w = os.pipe()
    in_r, in_w = os.pipe()
    output_path = os.path.join(scratch, "output.txt")
    pid = os.fork()
    if pid == 0:  # child: never returns
        code = 70
        try:
            os.close(out_r)
            os.close(in_w)
            _confine(limits, scratch, output_path, (out_w, in_r))
            target(Channel(out_w, in_r), job)
            code = 0
        finally:
            os._exit(code)
    os.close(out_w)
    os.close(in_r)
    return Child(pid=pid, out_fd=out_r, in_fd=in_w, output_path=output_path,
                 deadline=time.monotonic() + limits.timeout_s,
                 max_output_bytes=limits.max_file_bytes)


_subreaper = False
"""Only a subreaper's children are all its own runs' leftovers; any other caller of `spawn`
(a test, a trainer) may have children of its own that must not be killed."""


def become_subreaper() -> None:
    """Make the worker inherit whatever a child's descendants leave behind when they detach."""
    global _subreaper
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1)
    _subreaper = True


def reap_orphans(rounds: int = 50) -> None:
    """Kill and reap every process re-parented to this (subreaper) worker, and the
    descendants each of those re-parents in turn as it dies."""
    me = os.getpid()
    for _ in range(rounds):
        orphans = _processes(lambda fields: int(fields[1]) == me)
        if not orphans:
            return
        for pid in orphans:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        time.sleep(0.01)


def _confine(limits: Limits, scratch: str, output_path: str, keep: tuple[int, int]) -> None:
    _close_inherited(keep)
    os.setsid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    libc.unshare(_CLONE_NEWNET)  # no network where permitted; the audit hook blocks sockets too
    for sig in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    os.chdir(scratch)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    out = os.open(output_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(null)
    os.close(out)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.max_file_bytes, limits.max_file_bytes))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_processes, limits.max_processes))
    if limits.memory_mb is not None:
        allowed = _mapped_bytes() + limits.memory_mb * (1 << 20)
        resource.setrlimit(resource.RLIMIT_AS, (allowed, allowed))


def _close_inherited(keep: tuple[int, int]) -> None:
    """Only the two pipes to the worker survive: not the worker's own protocol stream."""
    low, high = sorted(keep)
    os.closerange(3, low)
    os.closerange(low + 1, high)
    os.closerange(high + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def _mapped_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _kill_session(sid: int) -> None:
    """Kill the child's process group and anything else left in its session."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(sid, signal.SIGKILL)
    for pid in _session_members(sid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _session_members(sid: int) -> list[int]:
    return [pid for pid in _processes(lambda fields: int(fields[3]) == sid) if pid != sid]


def _processes(match: Callable[[list[str]], bool]) -> list[int]:
    """Pids whose /proc stat fields (after the command name) satisfy `match`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if match(fields):
            found.append(int(entry))
    return found


def _tail(path: str, limit: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - min(limit, 4096)))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""

