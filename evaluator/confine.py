"""Kernel-enforced confinement of a child that runs a reference or a candidate.

Layers, set up in a freshly forked (single-threaded) child, in this order:
1. an unprivileged uid (when the worker is root), then new user, mount, network, IPC and PID
   namespaces: the child is root only over its own namespaces;
2. a private mount tree: everything read-only and nosuid, a fresh tmpfs over the scratch
   directory's parent with only the scratch directory bound back (writable, noexec), a fresh
   /dev/shm, and a /proc of its own PID namespace only;
3. the PID namespace's pid 1 is a sleeping placeholder, the payload is pid 2; when the
   payload ends, the placeholder is killed and the kernel kills everything left in the
   namespace; nothing inside can see or signal a process outside;
4. resource limits, then a seccomp filter (libseccomp through `pyseccomp`), installed last so
   the setup above never needs allowing.

`probe()` tries each layer once in a throwaway child, so the worker reports (and only
attempts) what this host allows.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import os
import resource
import shutil
import signal
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Any

try:  # imported in the worker, before any fork: the children cannot read new modules
    import pyseccomp as _sc
except (ImportError, OSError):  # no binding or no libseccomp: the boundary says so
    _sc = None

_CLONE_NEWNS = 0x00020000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWPID = 0x20000000
_CLONE_NEWNET = 0x40000000
_CLONE_THREAD = 0x00010000
_NEW_NAMESPACES = (_CLONE_NEWNS, _CLONE_NEWIPC, _CLONE_NEWUSER, _CLONE_NEWPID, _CLONE_NEWNET,
                   0x02000000, 0x04000000, 0x00000080)  # + cgroup, uts, time
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_BIND, _MS_REC, _MS_PRIVATE = 4096, 16384, 1 << 18
_MOUNT_ATTR_RDONLY, _MOUNT_ATTR_NOSUID, _MOUNT_ATTR_NOEXEC = 0x1, 0x2, 0x8
_AT_RECURSIVE = 0x8000
_SYS_MOUNT_SETATTR = 442
_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_SET_NO_NEW_PRIVS = 38
_NOBODY = 65534
_TMPFS_BYTES = 64 << 20

_libc = ctypes.CDLL(None, use_errno=True)


class ConfineError(OSError):
    """A layer that the probe said works could not be set up in this child."""


@dataclass(frozen=True)
class Boundary:
    """Which protections are active around every child (what `probe` found on this host)."""

    user_ns: bool = False
    pid_ns: bool = False
    mount_ns: bool = False
    net_ns: bool = False
    ipc_ns: bool = False
    private_proc: bool = False
    seccomp: bool = False
    unprivileged_uid: bool = False
    memory_limit: str = "none"
    """`rlimit_as` on cpu; `rlimit_data` on cuda (address-space reservations stay free)."""
    report_auth: bool = True
    """Reports are authenticated with a per-run key sent after the last candidate call."""
    notes: tuple[str, ...] = ()

    @property
    def kernel_layers(self) -> tuple[str, ...]:
        names = ("user_ns", "pid_ns", "mount_ns", "net_ns", "ipc_ns", "private_proc", "seccomp")
        return tuple(n for n in names if getattr(self, n))

    @property
    def confined(self) -> bool:
        """Every kernel layer is active: the guarantees of the threat model hold."""
        return len(self.kernel_layers) == 7

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "notes": list(self.notes), "confined": self.confined}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Boundary:
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["notes"] = tuple(fields.get("notes", ()))
        return cls(**fields)


@dataclass(frozen=True)
class Plan:
    """What one child sets up: the probed boundary plus this run's paths and device."""

    boundary: Boundary
    scratch: str
    device: str
    reachable: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """(a directory the sandbox uid may not search, the paths below it that Python needs)."""
    lifetime_s: float = 3600.0
    """How long the PID namespace's placeholder init lives should nothing kill it first."""
    init_program: str = field(default_factory=lambda: shutil.which("sleep") or "/bin/sleep")


def new_pid_namespace(plan: Plan) -> int | None:
    """As root, in the worker just before it forks a child: the worker's next fork lands in a
    fresh PID namespace as pid 2, after a placeholder pid 1 spawned here without copying the
    worker's heap (the kernel spares pid 1 from any signal it has no handler for, so the
    payload must not be pid 1). Returns the placeholder's pid; None where the child makes
    its own namespace (an unprivileged worker: its user namespace must come first)."""
    b = plan.boundary
    if not (b.pid_ns and b.unprivileged_uid):
        return None
    global _own_pid_ns
    if _own_pid_ns is None:
        _own_pid_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    _check(_libc.unshare(_CLONE_NEWPID), "unshare PID namespace")
    null = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_DUP2, 1, 2)]
    try:
        return os.posix_spawn(plan.init_program,
                              [plan.init_program, str(int(plan.lifetime_s) + 1)], {},
                              file_actions=null)
    except OSError:
        restore_pid_namespace()
        raise


def restore_pid_namespace() -> None:
    """After the fork: the worker's own later children go back to its own namespace (a
    second unshare(CLONE_NEWPID) is refused while the first one's is pending)."""
    if _own_pid_ns is not None:
        _check(_libc.setns(_own_pid_ns, _CLONE_NEWPID), "restore PID namespace")


_own_pid_ns: int | None = None


def enter(plan: Plan) -> None:
    """Confine the calling (freshly forked, single-threaded) process. As root it is already
    pid 2 of its PID namespace (`new_pid_namespace`); otherwise, with a PID namespace, this
    forks once more: the outer process forwards the inner one's exit and never returns."""
    b = plan.boundary
    uid, gid = os.geteuid(), os.getegid()
    flags = _flags(b)
    if b.unprivileged_uid:
        # As root: build the mount tree first (it can bind what only root can reach, and
        # mount this PID namespace's /proc), so the user namespace made below inherits it
        # with every flag locked.
        if b.mount_ns:
            _check(_libc.unshare(_CLONE_NEWNS), "unshare mount namespace")
            _private_mounts(plan.scratch, plan.reachable)
            if b.private_proc:
                _mount_proc()
        _drop_to_nobody(plan.scratch)
        uid = gid = _NOBODY
        flags &= ~_CLONE_NEWPID
    if flags:
        _check(_libc.unshare(flags), "unshare")
    if b.user_ns:
        _map_ids(uid, gid)
    if b.mount_ns and not b.unprivileged_uid:
        _private_mounts(plan.scratch, ())
    if b.pid_ns and not b.unprivileged_uid:
        _fork_into_pid_namespace(b.private_proc, plan.init_program, plan.lifetime_s)
    os.environ["HOME"] = os.environ["TMPDIR"] = plan.scratch
    import tempfile

    tempfile.tempdir = plan.scratch


def seal(plan: Plan) -> None:
    """The last step before the payload: no new privileges, then the seccomp filter."""
    _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    if plan.boundary.seccomp:
        seccomp_filter(plan.device).load()


def memory_limit(device: str, memory_mb: int | None) -> None:
    """RLIMIT_AS breaks CUDA's address-space reservations; RLIMIT_DATA counts only writable
    private memory, so it bounds what a cuda child allocates on the host without that."""
    if memory_mb is None:
        return
    if device == "cuda":
        limit = _private_writable_bytes() + memory_mb * (1 << 20)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    else:
        limit = _vm_bytes("VmSize") + memory_mb * (1 << 20)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _drop_to_nobody(scratch: str) -> None:
    os.chown(scratch, _NOBODY, _NOBODY)
    os.setgroups([])
    os.setresgid(_NOBODY, _NOBODY, _NOBODY)
    os.setresuid(_NOBODY, _NOBODY, _NOBODY)
    # A uid change makes /proc/self root-owned; the id maps are written there.
    _check(_libc.prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0), "dumpable")


def _flags(b: Boundary) -> int:
    flags = 0
    for on, flag in ((b.user_ns, _CLONE_NEWUSER), (b.mount_ns, _CLONE_NEWNS),
                     (b.net_ns, _CLONE_NEWNET), (b.ipc_ns, _CLONE_NEWIPC),
                     (b.pid_ns, _CLONE_NEWPID)):
        if on:
            flags |= flag
    return flags


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise ConfineError(err, f"{what}: {os.strerror(err)}")


def _map_ids(uid: int, gid: int) -> None:
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"0 {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"0 {gid} 1")


def _mount(source: bytes | None, target: str, fstype: bytes | None, flags: int,
           data: bytes | None = None) -> None:
    _check(_libc.mount(source, target.encode(), fstype, flags, data), f"mount {target}")


def _setattr(path: str, set_: int, clear: int, recursive: bool) -> None:
    attr = (ctypes.c_uint64 * 4)(set_, clear, 0, 0)
    rc = _libc.syscall(_SYS_MOUNT_SETATTR, -100, path.encode(),
                       _AT_RECURSIVE if recursive else 0, ctypes.byref(attr), 32)
    _check(rc, f"mount_setattr {path}")


def _private_mounts(scratch: str, reachable: tuple[tuple[str, tuple[str, ...]], ...]) -> None:
    """Read-only view of everything, with only the scratch directory writable (and noexec):
    the other runs' scratch directories beside it are hidden under a fresh tmpfs, and so is
    every private directory (e.g. /root) except the Python paths below it."""
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    held = [(top, [(p, os.open(p, os.O_PATH)) for p in paths]) for top, paths in reachable]
    for top, paths in held:
        _mount(b"tmpfs", top, b"tmpfs", _MS_NOSUID | _MS_NODEV, b"size=65536,mode=0755")
        for path, fd in paths:
            os.makedirs(path, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}".encode(), path, None, _MS_BIND | _MS_REC)
            os.close(fd)
    # The tmpfs goes where the sandbox uid could not search anyway, or else on the parent.
    top = _first_private_ancestor(scratch) or os.path.dirname(scratch.rstrip("/"))
    hold = os.open(scratch, os.O_PATH | os.O_DIRECTORY)
    if top not in (t for t, _ in reachable) and top != "/":
        _mount(b"tmpfs", top, b"tmpfs", _MS_NOSUID | _MS_NODEV,
               f"size={_TMPFS_BYTES},mode=0755".encode())
    os.makedirs(scratch, 0o755, exist_ok=True)
    _mount(f"/proc/self/fd/{hold}".encode(), scratch, None, _MS_BIND)
    os.close(hold)
    if os.path.isdir("/dev/shm"):
        _mount(b"tmpfs", "/dev/shm", b"tmpfs", _MS_NOSUID | _MS_NODEV,
               f"size={_TMPFS_BYTES}".encode())
    _setattr("/", _MOUNT_ATTR_RDONLY | _MOUNT_ATTR_NOSUID, 0, recursive=True)
    _setattr(scratch, _MOUNT_ATTR_NOEXEC, _MOUNT_ATTR_RDONLY, recursive=False)
    _setattr("/proc", 0, _MOUNT_ATTR_RDONLY, recursive=False)  # the id maps; then replaced
    os.chdir(scratch)


def _fork_into_pid_namespace(private_proc: bool, init_program: str, lifetime_s: float) -> None:
    """The first process made after unshare(CLONE_NEWPID) is pid 1 of the new namespace. The
    kernel spares pid 1 from any signal it has no handler for (a payload raising SIGSEGV at
    itself would live on), so pid 1 is a placeholder: a small program spawned without copying
    this heap, which only sleeps. The payload is forked next, as pid 2; this outer process
    waits for it, then kills the placeholder (the kernel then kills everything left in the
    namespace) and exits as the payload did."""
    init = os.posix_spawn(init_program, [init_program, str(int(lifetime_s) + 1)], {})
    payload = os.fork()
    if payload == 0:
        _check(_libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "pdeathsig")
        if os.getppid() != 0:  # the outer process is outside: getppid() is 0 unless it died
            os._exit(70)
        if private_proc:
            _mount_proc()
        return
    _close_all_but(-1)
    _forward_exit(payload, init)


def _mount_proc() -> None:
    _check(_libc.mount(b"proc", b"/proc", b"proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None),
           "mount /proc")


def _close_all_but(fd: int) -> None:
    if fd >= 3:
        os.closerange(3, fd)
    os.closerange(max(fd + 1, 3), resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def _wait(pid: int) -> int:
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except InterruptedError:
            continue


def _forward_exit(payload: int, init: int) -> None:
    """Exit as the payload did, once the namespace (and so all it started) is gone."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    code = 70
    try:
        status = _wait(payload)
        with contextlib.suppress(OSError):
            os.kill(init, signal.SIGKILL)
        _wait(init)
        if os.WIFSIGNALED(status):
            number = os.WTERMSIG(status)
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            with contextlib.suppress(OSError, ValueError):
                signal.signal(number, signal.SIG_DFL)
                os.kill(os.getpid(), number)
            code = 128 + number
        else:
            code = os.WEXITSTATUS(status)
    finally:
        os._exit(code)


# ------------------------------------------------------------------------------ seccomp

_KILL = ("ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "bpf",
         "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module")
"""No library probes these: using one is an escape attempt, and the run dies of SIGSYS."""
_EPERM = (
    # other processes
    "pidfd_open", "pidfd_send_signal", "kcmp",
    # namespaces, mounts, sessions
    "setns", "unshare", "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount",
    "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr", "setsid", "setpgid",
    # kernel surface a kernel benchmark has no use for
    "userfaultfd", "keyctl", "add_key", "request_key", "open_by_handle_at", "name_to_handle_at",
    "mknod", "mknodat", "iopl", "ioperm", "modify_ldt", "swapon", "swapoff", "reboot",
    "syslog", "acct", "quotactl", "lookup_dcookie", "vhangup", "settimeofday", "clock_settime",
    "adjtimex", "clock_adjtime", "sethostname", "setdomainname", "fanotify_init",
    "personality",
)
_ENOSYS = ("clone3", "io_uring_setup", "io_uring_enter", "io_uring_register")
_CPU_ONLY_EPERM = ("execve", "execveat", "fork", "vfork", "memfd_create", "perf_event_open")
"""On cuda, Triton's compile step runs ptxas in a child, and CUDA needs memfd_create (and a
profiler perf events): those stay allowed there, inside the PID and mount namespaces."""
_TIOCSTI, _TIOCLINUX = 0x5412, 0x541C


def seccomp_filter(device: str) -> Any:
    """Default-allow with targeted denials (the IOI judge's layout), errno for what
    libraries probe, process kill for what only an escape would use."""
    sc = _sc
    if sc is None:
        raise ConfineError(errno.ENOSYS, "pyseccomp or libseccomp is not installed")
    f = sc.SyscallFilter(sc.ALLOW)
    for name in _KILL:
        _rule(f, sc.KILL_PROCESS, name)
    for name in _EPERM:
        _rule(f, sc.ERRNO(errno.EPERM), name)
    for name in _ENOSYS:
        _rule(f, sc.ERRNO(errno.ENOSYS), name)
    for flag in _NEW_NAMESPACES:
        f.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    if device != "cuda":
        for name in _CPU_ONLY_EPERM:
            _rule(f, sc.ERRNO(errno.EPERM), name)
        # Threads only: a clone without CLONE_THREAD is a new process.
        f.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, _CLONE_THREAD, 0))
    f.add_rule(sc.ERRNO(errno.EPERM), "prctl", sc.Arg(0, sc.EQ, _PR_SET_PDEATHSIG))
    for request in (_TIOCSTI, _TIOCLINUX):
        f.add_rule(sc.ERRNO(errno.EPERM), "ioctl", sc.Arg(1, sc.EQ, request))
    f.add_rule(sc.ERRNO(errno.EAFNOSUPPORT), "socket", sc.Arg(0, sc.NE, 1))  # AF_UNIX only
    return f


def _rule(f: Any, action: Any, name: str) -> None:
    with contextlib.suppress(ValueError, OSError, RuntimeError):
        f.add_rule(action, name)


# -------------------------------------------------------------------------------- probe


def python_paths() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Directories an unprivileged uid cannot search that lie above what Python imports
    from, each with the paths below it to bind back into the child's view."""
    needed = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, *sys.path)
              if p and os.path.isdir(p)}
    needed |= {os.path.dirname(os.path.realpath(sys.executable))}
    blocked: dict[str, set[str]] = {}
    for path in needed:
        top = _first_private_ancestor(path)
        if top is not None:
            blocked.setdefault(top, set()).add(path)
    return tuple((top, tuple(_outermost(paths))) for top, paths in sorted(blocked.items()))


def _first_private_ancestor(path: str) -> str | None:
    parts = path.strip("/").split("/")
    for i in range(1, len(parts)):
        ancestor = "/" + "/".join(parts[:i])
        if not os.stat(ancestor).st_mode & 0o001:
            return ancestor
    return None


def _outermost(paths: set[str]) -> list[str]:
    ordered = sorted(paths)
    return [p for i, p in enumerate(ordered)
            if not any(p.startswith(q.rstrip("/") + "/") for q in ordered[:i])]


_scratch_root: str | None = None


def new_scratch(prefix: str) -> str:
    """A fresh scratch directory for one child, inside this process's private root (mode
    0700). The child's tmpfs goes over that root, never over the shared temporary folder,
    where the project or its environment may live (a checkout under /tmp)."""
    global _scratch_root
    if _scratch_root is None or not os.path.isdir(_scratch_root):
        _scratch_root = tempfile.mkdtemp(prefix="drkernel-sandbox-")
        atexit.register(shutil.rmtree, _scratch_root, True)
    return tempfile.mkdtemp(prefix=prefix, dir=_scratch_root)


def probe(device: str) -> Boundary:
    """Set up every layer in a throwaway child and report which ones held."""
    import json

    scratch = new_scratch("probe-")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        found: dict[str, Any] = {}
        try:
            found = _probe_child(device, scratch)
        finally:
            os.write(w, json.dumps(found).encode())
            os._exit(0)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    os.rmdir(scratch)
    try:
        found = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        found = {}
    found["memory_limit"] = "rlimit_data" if device == "cuda" else "rlimit_as"
    return Boundary.from_dict(found)


def _probe_child(device: str, scratch: str) -> dict[str, Any]:
    """Runs in a forked child: each layer is kept only if it and all before it worked."""
    found: dict[str, Any] = {"notes": []}
    try:
        return _probe_layers(device, scratch, found)
    except Exception as exc:  # the report names what failed; the worker runs degraded
        found["notes"].append(f"{type(exc).__name__}: {exc}")
        return found


def _probe_layers(device: str, scratch: str, found: dict[str, Any]) -> dict[str, Any]:
    if os.geteuid() == 0:
        found["unprivileged_uid"] = True
    trial = Boundary(user_ns=True, mount_ns=True, net_ns=True, ipc_ns=True, pid_ns=True,
                     private_proc=True, unprivileged_uid=found.get("unprivileged_uid", False))
    layers = ("user_ns", "net_ns", "ipc_ns", "pid_ns", "mount_ns", "private_proc")
    plan = Plan(trial, scratch, device, python_paths(), lifetime_s=10)
    try:
        init = new_pid_namespace(plan)
        if init is not None:  # the probe goes on as pid 2 of the namespace
            payload = os.fork()
            if payload != 0:
                _forward_exit(payload, init)
        enter(plan)
        found.update({k: True for k in layers})
    except (OSError, ConfineError) as exc:
        found["notes"].append(f"namespaces unavailable ({exc})")
        found["unprivileged_uid"] = False
        return found
    if os.getpid() != 2 or _pids() != [1, 2]:
        found["private_proc"] = False
        found["notes"].append("the PID namespace's /proc shows other processes")
    try:
        seccomp_filter(device)  # built, not loaded: the probe still has to answer
        found["seccomp"] = True
    except Exception as exc:  # a missing library means no filter
        found["notes"].append(f"seccomp unavailable ({type(exc).__name__}: {exc})")
    return found


def _pids() -> list[int]:
    return sorted(int(p) for p in os.listdir("/proc") if p.isdigit())


def _vm_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _private_writable_bytes() -> int:
    """What RLIMIT_DATA counts: private writable mappings (not stacks)."""
    total = 0
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if "w" in parts[1] and parts[1].endswith("p") and "[stack" not in line:
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                total += hi - lo
    return total
