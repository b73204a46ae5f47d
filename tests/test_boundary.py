"""The kernel boundary around a child: each escape class probed from inside, through raw
syscalls (ctypes) where Python's own wrappers would be seen by the audit hook."""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import os
import re
import resource
import signal
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from evaluator import confine
from evaluator.sandbox import Channel, Limits, spawn
from evaluator.wire import ForgedReport, ReportTooLarge, key_request, unpack

LIMITS = Limits(timeout_s=20, memory_mb=512, max_processes=64, max_file_bytes=1 << 20)
BOUNDARY = confine.probe("cpu")
pytestmark = pytest.mark.skipif(not BOUNDARY.confined,
                                reason=f"this host allows only {BOUNDARY.kernel_layers}")
_libc = ctypes.CDLL(None, use_errno=True)


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[str]:
    path = tmp_path / "scratch"
    path.mkdir()
    yield str(path)


def _run(probe: Callable[[dict[str, Any]], Any], scratch: str,
         job: dict[str, Any] | None = None) -> tuple[Any, int | None, int | None]:
    """Run `probe` confined; its return value comes back through an authenticated report."""
    def target(chan: Channel, job: dict[str, Any]) -> None:
        chan.report({"value": probe(job)})

    plan = confine.Plan(BOUNDARY, scratch, "cpu", confine.python_paths())
    child = spawn(target, job or {}, LIMITS, scratch, plan, max_report_bytes=1 << 20)
    frame = child.report()
    outcome = child.finish()
    value = unpack(frame)[0]["value"] if frame is not None else None
    return value, outcome.exit_code, outcome.signal


def _errno_of(fn: Callable[[], int]) -> int:
    ctypes.set_errno(0)
    return 0 if fn() >= 0 else ctypes.get_errno()


def test_the_child_is_alone_in_its_pid_namespace(scratch: str) -> None:
    me = os.getpid()

    def probe(job: dict[str, Any]) -> Any:
        return {"pid": os.getpid(), "ppid": os.getppid(),
                "procs": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
                "kill": _errno_of(lambda: _libc.kill(job["worker"], 0)),
                "pidfd": _errno_of(lambda: _libc.syscall(434, job["worker"], 0))}

    value, code, _ = _run(probe, scratch, {"worker": me})
    assert code == 0
    assert value["pid"] == 2 and value["ppid"] == 0 and value["procs"] == [1, 2]
    assert value["kill"] == errno.ESRCH
    assert value["pidfd"] == errno.EPERM


def test_only_the_scratch_directory_is_writable(scratch: str) -> None:
    site = os.path.dirname(os.path.dirname(pytest.__file__))
    targets = [os.path.join(site, "drkernel-probe.pth"), "/tmp/drkernel-probe",
               os.path.join(os.path.dirname(scratch), "beside-scratch"), "/etc/drkernel-probe"]

    def probe(job: dict[str, Any]) -> Any:
        results: dict[str, int | None] = {}
        for path in [*job["targets"], os.path.join(os.getcwd(), "mine.txt")]:
            try:
                with open(path, "w") as f:
                    f.write("x")
                results[path] = 0
            except OSError as exc:
                results[path] = exc.errno
        return results

    value, code, _ = _run(probe, scratch, {"targets": targets})
    assert code == 0
    assert value.pop(os.path.join(scratch, "mine.txt")) == 0
    assert all(e in (errno.EROFS, errno.EACCES) for e in value.values()), value
    assert not any(os.path.exists(p) for p in targets)


def test_root_only_files_and_other_directories_stay_closed(scratch: str) -> None:
    def probe(job: dict[str, Any]) -> Any:
        import torch

        found: dict[str, Any] = {}
        for path in ("/etc/shadow", "/root"):
            try:
                if path == "/root":
                    found[path] = sorted(os.listdir(path))
                else:
                    torch.UntypedStorage.from_file(path, False, 16)
                    found[path] = "read"
            except (OSError, RuntimeError) as exc:
                found[path] = str(exc)[:80]
        return found

    value, code, _ = _run(probe, scratch)
    assert code == 0
    assert value["/etc/shadow"] != "read"
    assert value["/root"] in ([], [".pyenv"]), "only the Python prefix is bound back"


def test_processes_programs_and_namespaces_are_refused(scratch: str) -> None:
    def probe(job: dict[str, Any]) -> Any:
        return {
            "fork": _errno_of(lambda: _libc.syscall(57)),
            "clone": _errno_of(lambda: _libc.syscall(56, signal.SIGCHLD, 0, 0, 0, 0)),
            "clone3": _errno_of(lambda: _libc.syscall(435, 0, 0)),
            "execve": _errno_of(lambda: _libc.execve(b"/bin/sh", None, None)),
            "unshare": _errno_of(lambda: _libc.unshare(0x10000000)),
            "mount": _errno_of(lambda: _libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)),
            "umount": _errno_of(lambda: _libc.umount2(b"/proc", 2)),
            "setsid": _errno_of(lambda: _libc.setsid()),
            "io_uring": _errno_of(lambda: _libc.syscall(425, 8, None)),
            "inet": _errno_of(lambda: _libc.socket(2, 1, 0)),
            "memfd": _errno_of(lambda: _libc.memfd_create(b"x", 0)),
        }

    value, code, _ = _run(probe, scratch)
    assert code == 0
    enosys = {"clone3", "io_uring"}
    assert {k for k, v in value.items() if v == errno.ENOSYS} == enosys, value
    assert value["inet"] == errno.EAFNOSUPPORT
    assert all(v == errno.EPERM for k, v in value.items() if k not in enosys | {"inet"}), value


def test_threads_still_start(scratch: str) -> None:
    def probe(job: dict[str, Any]) -> Any:
        import threading

        out: list[int] = []
        t = threading.Thread(target=lambda: out.append(1))
        t.start()
        t.join()
        return out

    assert _run(probe, scratch)[0] == [1]


def test_ptrace_kills_the_child(scratch: str) -> None:
    def probe(job: dict[str, Any]) -> Any:
        _libc.ptrace(16, 1, 0, 0)  # PTRACE_ATTACH
        return "survived"

    value, _, sig = _run(probe, scratch)
    assert value is None and sig == signal.SIGSYS


def test_a_library_written_to_scratch_cannot_be_loaded(scratch: str) -> None:
    import _ctypes
    import shutil

    shutil.copy(_ctypes.__file__, os.path.join(scratch, "evil.so"))

    def probe(job: dict[str, Any]) -> Any:
        try:
            ctypes.CDLL(os.path.join(os.getcwd(), "evil.so"))
            return "loaded"
        except OSError as exc:
            return str(exc)

    value, code, _ = _run(probe, scratch)
    assert code == 0 and "failed to map segment" in value, value


def test_a_memory_bomb_stops_at_the_limit(scratch: str) -> None:
    def probe(job: dict[str, Any]) -> Any:
        try:
            blob = bytearray(2 << 30)
            return len(blob)
        except MemoryError:
            return "refused"

    assert _run(probe, scratch)[0] == "refused"


def test_everything_the_child_started_dies_with_it(scratch: str, tmp_path: Path) -> None:
    """On a GPU host fork stays allowed (ptxas): the PID namespace is what ends survivors."""
    def target(chan: Channel, job: dict[str, Any]) -> None:
        for _ in range(3):
            if os.fork() == 0:
                time.sleep(60)
                os._exit(0)
        chan.report({"value": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
                     "ns": os.readlink("/proc/self/ns/pid")})
        time.sleep(60)

    plan = confine.Plan(dataclasses.replace(BOUNDARY, seccomp=False), scratch, "cpu",
                        confine.python_paths())
    child = spawn(target, {}, Limits(timeout_s=3, memory_mb=None, max_processes=64,
                                     max_file_bytes=1 << 20), scratch, plan, 1 << 20)
    frame = child.report()
    assert frame is not None
    report = unpack(frame)[0]
    assert report["value"] == [1, 2, 3, 4, 5]
    assert len(_members(report["ns"])) == 5
    outcome = child.finish()
    assert outcome.timed_out
    time.sleep(0.2)
    assert _members(report["ns"]) == []


def _members(pid_ns: str) -> list[int]:
    """Host pids of live processes in the given PID namespace."""
    found = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                stat = Path(f"/proc/{p}/stat").read_text()
                if os.readlink(f"/proc/{p}/ns/pid") == pid_ns and \
                        stat.rsplit(")", 1)[1].split()[0] != "Z":
                    found.append(int(p))
            except OSError:
                continue
    return found


def test_a_frame_written_by_the_child_itself_is_refused(scratch: str) -> None:
    def target(chan: Channel, job: dict[str, Any]) -> None:
        forged = b'{"header": {"ok": true}, "tensors": []}'
        body = struct.pack("<Q", len(forged)) + forged
        os.write(chan.out_fd, struct.pack("<Q", len(body)) + body)
        chan.report({"ok": False})

    plan = confine.Plan(BOUNDARY, scratch, "cpu", confine.python_paths())
    child = spawn(target, {}, LIMITS, scratch, plan, 1 << 20)
    with pytest.raises(ForgedReport):
        child.report()
    child.kill()
    child.finish()


def test_a_second_key_request_leaves_bytes_after_the_report(scratch: str) -> None:
    def target(chan: Channel, job: dict[str, Any]) -> None:
        chan.report({"ok": True})
        os.write(chan.out_fd, key_request(chan.nonce))

    plan = confine.Plan(BOUNDARY, scratch, "cpu", confine.python_paths())
    child = spawn(target, {}, LIMITS, scratch, plan, 1 << 20)
    assert child.report() is not None
    assert child.finish().leftover


def test_an_oversized_frame_is_refused_before_it_is_read(scratch: str) -> None:
    def target(chan: Channel, job: dict[str, Any]) -> None:
        os.write(chan.out_fd, key_request(chan.nonce))
        os.read(chan.in_fd, 32)
        os.write(chan.out_fd, struct.pack("<Q", 768 << 20))
        chunk = b"\0" * (1 << 20)
        for _ in range(768):
            os.write(chan.out_fd, chunk)

    plan = confine.Plan(BOUNDARY, scratch, "cpu", confine.python_paths())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child = spawn(target, {}, LIMITS, scratch, plan, 1 << 20)
    with pytest.raises(ReportTooLarge):
        child.report()
    child.kill()
    child.finish()
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 64 << 10  # KiB


def test_the_probe_reports_every_layer() -> None:
    d = BOUNDARY.to_dict()
    assert d["confined"] and d["report_auth"] and d["memory_limit"] == "rlimit_as"
    assert confine.Boundary.from_dict(d) == BOUNDARY


def test_a_signal_the_payload_raises_at_itself_still_ends_it(scratch: str) -> None:
    """pid 1 of a namespace ignores such signals: the payload must not be pid 1."""
    def probe(job: dict[str, Any]) -> Any:
        import faulthandler

        faulthandler._sigsegv()  # type: ignore[attr-defined]
        return "survived"

    value, _, sig = _run(probe, scratch)
    assert value is None and sig == signal.SIGSEGV


def test_the_namespace_init_holds_no_channel(scratch: str) -> None:
    """pid 1 is a placeholder program: none of the worker's pipes are open in it."""
    def probe(job: dict[str, Any]) -> Any:
        try:
            fds: Any = [os.readlink(f"/proc/1/fd/{fd}") for fd in os.listdir("/proc/1/fd")]
        except OSError as exc:
            fds = exc.errno
        return {"cmd": Path("/proc/1/cmdline").read_bytes().split(b"\0")[0].decode(),
                "fds": fds}

    value = _run(probe, scratch)[0]
    assert value["cmd"].endswith("sleep")
    assert value["fds"] in (errno.EACCES, ["/dev/null"] * 3), value["fds"]


# ----------------------------------------------------------- the attacks, end to end

ATTACKS = sorted((Path(__file__).parent / "fixtures" / "hacks").glob("boundary_*.py"))


@pytest.fixture(scope="module")
def judge() -> Iterator[Any]:
    from tests.judge_support import Judge

    j = Judge(workers=1)
    yield j
    j.close()


def _outside_scratch() -> set[str]:
    """Names in the places a child could have written to, were it not confined."""
    import sysconfig

    found = set()
    for place in ("/tmp", sysconfig.get_paths()["purelib"], "/etc", os.path.expanduser("~")):
        with contextlib.suppress(OSError):
            found |= {os.path.join(place, name) for name in os.listdir(place)
                      if place != "/tmp" or _ATTACKS_TMP.search(name)}
    return found


_ATTACKS_TMP = re.compile(r"evil|storage|forged|survivor")
"""What the attacks try to leave in /tmp (other users share it on this host)."""


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.mark.parametrize("path", ATTACKS, ids=lambda p: p.stem)
def test_an_attack_on_the_boundary_fails_and_leaves_nothing(judge: Any, path: Path) -> None:
    from tests.judge_support import EXAMPLES

    worker = judge.evaluator._workers[0].proc.pid
    files, rss = _outside_scratch(), _rss_kib(worker)
    result = judge.run(path)
    assert result.status.value != "correct" and result.reward == 0.0
    assert judge.evaluator._workers[0].proc.pid == worker, "the same worker, still alive"
    assert _descendants(worker) == []
    assert _outside_scratch() - files == set()
    assert _rss_kib(worker) - rss < 256 << 10
    assert judge.run(EXAMPLES / "relu" / "solution.py").status.value == "correct"


def _descendants(root: int) -> list[int]:
    parents = {}
    for p in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError, IndexError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                parents[int(p)] = int(fields[1])
    found = []
    for pid in parents:
        ancestor = parents[pid]
        while ancestor in parents and ancestor != root:
            ancestor = parents[ancestor]
        if ancestor == root:
            found.append(pid)
    return found


def test_the_cuda_memory_limit_bounds_host_memory_without_capping_address_space(
        scratch: str) -> None:
    """On cuda, RLIMIT_DATA (private writable memory) stands in for RLIMIT_AS, which breaks
    CUDA's large PROT_NONE reservations."""
    import mmap

    def probe(job: dict[str, Any]) -> Any:
        # What CUDA reserves: address space with no access (PROT_NONE).
        reserved = mmap.mmap(-1, 64 << 30, flags=mmap.MAP_PRIVATE, prot=0)
        try:
            bytearray(2 << 30)
            return "allocated"
        except MemoryError:
            return f"refused with {len(reserved) >> 30} GiB reserved"

    limits = dataclasses.replace(LIMITS, device="cuda")
    plan = confine.Plan(BOUNDARY, scratch, "cpu", confine.python_paths())
    child = spawn(lambda chan, job: chan.report({"value": probe(job)}), {}, limits, scratch,
                  plan, 1 << 20)
    frame = child.report()
    outcome = child.finish()
    assert frame is not None, outcome
    assert unpack(frame)[0]["value"] == "refused with 64 GiB reserved"


def test_a_red_team_round_of_raw_syscalls_is_refused(scratch: str) -> None:
    """The second round's attempts against the boundary itself, each as raw native code."""
    def probe(job: dict[str, Any]) -> Any:
        import socket

        def opened(path: str, mode: str) -> int:
            try:
                with open(path, mode):
                    return 0
            except OSError as exc:
                return exc.errno or -1

        return {
            "kill -1": _errno_of(lambda: _libc.kill(-1, 0)),
            "/proc/1/mem": opened("/proc/1/mem", "rb"),
            "setns via /proc/1/ns/pid": opened("/proc/1/ns/pid", "rb"),
            "vfork": _errno_of(lambda: _libc.syscall(58)),
            "execveat": _errno_of(lambda: _libc.syscall(322, -100, b"/bin/sh", None, None, 0)),
            "remount / rw": _errno_of(lambda: _libc.mount(None, b"/", None, 32 | 4096, None)),
            "/dev/shm": opened("/dev/shm/x", "w"),
            "/var/tmp": opened("/var/tmp/x", "w"),
            "netlink": _errno_of(lambda: _libc.socket(16, 3, 0)),
            "keyctl": _errno_of(lambda: _libc.syscall(250, 0, 0, 0, 0, 0)),
            "userfaultfd": _errno_of(lambda: _libc.syscall(323, 0)),
            "perf_event_open": _errno_of(lambda: _libc.syscall(298, 0, 0, -1, -1, 0)),
            "undo pdeathsig": _errno_of(lambda: _libc.prctl(1, 0, 0, 0, 0)),
            "mknod": _errno_of(lambda: _libc.mknod(b"x", 0o20666, os.makedev(1, 3))),
            "personality": _errno_of(lambda: _libc.personality(0x0008)),
            "exec from scratch": _errno_of(lambda: _libc.execve(b"./x", None, None)),
            "abstract socket": socket.socket(socket.AF_UNIX).connect_ex("\0drkernel-probe"),
        }

    value, code, _ = _run(probe, scratch)
    assert code == 0
    assert value.pop("kill -1") == errno.ESRCH  # nothing else exists in its namespace
    assert value.pop("/proc/1/mem") == value.pop("setns via /proc/1/ns/pid") == errno.EACCES
    assert value.pop("/dev/shm") == value.pop("/var/tmp") == errno.EROFS
    assert value.pop("netlink") == errno.EAFNOSUPPORT
    assert value.pop("abstract socket") == errno.ECONNREFUSED  # its own network namespace
    assert set(value.values()) == {errno.EPERM}, value
