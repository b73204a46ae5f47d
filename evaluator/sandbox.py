"""Fork a confined child from the warm worker, read its one authenticated report, always
clean up after it. The kernel layers are in `evaluator.confine`; the protocol in `wire`."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import resource
import secrets
import select
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from evaluator import confine
from evaluator.wire import (
    KEY_BYTES,
    NONCE_BYTES,
    ReportReader,
    key_request,
    pack,
    seal_report,
    write_frame,
)

_CLONE_NEWNET = 0x40000000
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_TIMERS = (signal.ITIMER_REAL, signal.ITIMER_VIRTUAL, signal.ITIMER_PROF)


@dataclass(frozen=True)
class Limits:
    timeout_s: float
    memory_mb: int | None
    """Host memory beyond what the worker maps already (address space on cpu, private
    writable memory on cuda); None for no limit."""
    max_processes: int
    max_file_bytes: int
    device: str = "cpu"


@dataclass
class Channel:
    """The child's end: one authenticated report per phase, and the worker's go-ahead."""

    out_fd: int
    in_fd: int
    nonce: bytes
    """Drawn by the worker before the fork, held only here: code that wants the report key
    must first reach this object, through frames or `gc`, which the monitor refuses."""
    seq: int = 0
    threads: int = field(default_factory=lambda: _thread_count())
    """Threads before any untrusted code ran; more at report time is background work."""

    def report(self, header: dict[str, Any], tensors: list[Any] | None = None) -> None:
        """Send one report. Nothing the untrusted code left behind may run once the key is
        asked for: no gc callback, tracer, profiler or signal handler; threads are noted."""
        _quiesce()
        alive = _thread_count() - self.threads
        if alive > 0:
            header.setdefault("findings", []).append(
                ["background_work", f"{alive} threads still alive when the report was sent"])
        payload = pack(header, tensors)[8:]
        write_frame(self.out_fd, key_request(self.nonce))
        key = _read_exact(self.in_fd, KEY_BYTES)
        write_frame(self.out_fd, seal_report(key, self.seq, payload))
        self.seq += 1

    def wait_go(self) -> bool:
        return os.read(self.in_fd, 1) == b"1"


@dataclass
class ChildOutcome:
    exit_code: int | None = None
    signal: int | None = None
    timed_out: bool = False
    cancelled: bool = False
    leftover: bool = False
    """Bytes arrived after the last report: someone other than the harness wrote."""
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
    reader: ReportReader
    namespaced: bool = False
    cancelled: bool = False
    _inits: set[int] = field(default_factory=set)

    def report(self) -> bytes | None:
        """The next authenticated report, or None when the child ended, hung past its
        deadline or was cancelled. Raises `WireError` for a forged or oversized frame."""
        return self.reader.next_report(self.deadline, lambda: self.cancelled)

    def go(self, proceed: bool) -> None:
        with contextlib.suppress(OSError):
            os.write(self.in_fd, b"1" if proceed else b"0")

    def kill(self) -> None:
        """Kill the child's process group and its namespace's pid 1, which ends the rest."""
        if self.namespaced and not self._inits:  # pid 1 is the child's own child
            self._inits |= _children(self.pid)
        _kill_group(self.pid, self.namespaced)
        for init in self._inits:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(init, signal.SIGKILL)

    def finish(self) -> ChildOutcome:
        """Wait for the child (up to its deadline), then kill whatever it left behind."""
        outcome = ChildOutcome(cancelled=self.cancelled)
        status = self._wait_until_deadline()
        if status is None:
            outcome.timed_out = not self.cancelled
            self.kill()
            _, status = os.waitpid(self.pid, 0)
        self.kill()
        _await_exit(self._inits)  # pid 1 exits last, after all else in its namespace
        if _subreaper and not self.namespaced:
            reap_orphans()
        if os.WIFSIGNALED(status):
            outcome.signal = os.WTERMSIG(status)
        else:
            outcome.exit_code = os.WEXITSTATUS(status)
        outcome.leftover = self.reader.leftover()
        for fd in (self.out_fd, self.in_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        outcome.output = _tail(self.output_path, self.max_output_bytes)
        return outcome

    def _wait_until_deadline(self) -> int | None:
        with _ExitWatch(self.pid) as watch:
            while True:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    return status
                left = self.deadline - time.monotonic()
                if left <= 0 or self.cancelled:
                    return None
                watch.wait(min(left, 0.05))


def spawn(
    target: Callable[[Channel, dict[str, Any]], None],
    job: dict[str, Any],
    limits: Limits,
    scratch: str,
    plan: confine.Plan | None = None,
    max_report_bytes: int = 1 << 30,
) -> Child:
    """Fork the child. With a plan, it is confined by every layer the plan names before
    `target` runs; a layer that fails then ends the child (it never runs unconfined)."""
    out_r, out_w = os.pipe()
    in_r, in_w = os.pipe()
    output_path = os.path.join(scratch, "output.txt")
    init = confine.new_pid_namespace(plan) if plan is not None else None
    try:
        nonce = secrets.token_bytes(NONCE_BYTES)
        pid = os.fork()
    except OSError:
        if init is not None:
            os.kill(init, signal.SIGKILL)
            os.waitpid(init, 0)
            confine.restore_pid_namespace()
        raise
    if pid == 0:  # child: never returns
        code = 70
        try:
            os.close(out_r)
            os.close(in_w)
            _confine(limits, scratch, output_path, (out_w, in_r), plan)
            target(Channel(out_w, in_r, nonce), job)
            code = 0
        except BaseException as exc:
            print(f"the child stopped on {exc!r}", file=sys.stderr, flush=True)
            raise
        finally:
            os._exit(code)
    if init is not None:
        confine.restore_pid_namespace()
    os.close(out_w)
    os.close(in_r)
    return Child(pid=pid, out_fd=out_r, in_fd=in_w, output_path=output_path,
                 deadline=time.monotonic() + limits.timeout_s,
                 max_output_bytes=limits.max_file_bytes,
                 reader=ReportReader(out_r, in_w, max_report_bytes, nonce),
                 namespaced=plan is not None and plan.boundary.pid_ns,
                 _inits={init} if init is not None else set())


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


def _confine(limits: Limits, scratch: str, output_path: str, keep: tuple[int, int],
             plan: confine.Plan | None) -> None:
    _close_inherited(keep)
    os.setsid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
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
    if plan is not None:
        confine.enter(plan)  # with a PID namespace, only its first process returns
    else:
        libc.unshare(_CLONE_NEWNET)  # no network where permitted, nothing else
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.max_file_bytes, limits.max_file_bytes))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_processes, limits.max_processes))
    confine.memory_limit(limits.device, limits.memory_mb)
    if plan is not None:
        confine.seal(plan)


def _children(pid: int) -> set[int]:
    return set(_processes(lambda fields: int(fields[1]) == pid))


def _await_exit(pids: set[int], limit_s: float = 5.0) -> None:
    """Wait until each process has exited (reaping it where it was handed to this worker)."""
    deadline = time.monotonic() + limit_s
    for pid in pids:
        with _ExitWatch(pid) as watch:
            while time.monotonic() < deadline:
                with contextlib.suppress(ChildProcessError):
                    if os.waitpid(pid, os.WNOHANG)[0]:
                        break
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X") \
                                and not _subreaper:
                            break
                except OSError:
                    break
                watch.wait(min(deadline - time.monotonic(), 0.05))


class _ExitWatch:
    """Sleeps until a process exits (a pidfd), not in fixed polling steps; where there is no
    pidfd, or once it has fired, in steps of 2 ms."""

    def __init__(self, pid: int) -> None:
        try:
            self.fd: int | None = os.pidfd_open(pid)
        except (OSError, AttributeError):
            self.fd = None

    def __enter__(self) -> _ExitWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()

    def wait(self, timeout_s: float) -> None:
        if self.fd is None:
            time.sleep(max(min(timeout_s, 0.002), 0.0))
        elif select.select([self.fd], [], [], max(timeout_s, 0.0))[0]:
            self._close()  # exited: what is left is reaping, which the caller polls

    def _close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _quiesce() -> None:
    gc.disable()
    gc.callbacks.clear()
    sys.settrace(None)
    sys.setprofile(None)
    for timer in _TIMERS:
        signal.setitimer(timer, 0)
    for sig in signal.valid_signals():
        with contextlib.suppress(OSError, ValueError):
            if callable(signal.getsignal(sig)):
                signal.signal(sig, signal.SIG_DFL)


def _thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        import threading

        return threading.active_count()


def _read_exact(fd: int, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            raise EOFError("the worker closed the channel")
        data += chunk
    return data


def _close_inherited(keep: tuple[int, int]) -> None:
    """Only the two pipes to the worker survive: not the worker's own protocol stream."""
    low, high = sorted(keep)
    os.closerange(3, low)
    os.closerange(low + 1, high)
    os.closerange(high + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def _kill_group(sid: int, namespaced: bool) -> None:
    """Kill the child's process group: in a PID namespace that kills its first process,
    and the kernel then kills everything else in it. Without one, also every process still
    in the child's session. Stopped processes are continued first, so a kill lands."""
    for sig in (signal.SIGCONT, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(sid, sig)
    if namespaced:
        return
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

