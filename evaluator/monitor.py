"""Run-time watch over a candidate, installed in the child before its source is loaded.

Every observation is attributed to the code that caused it: the first frame outside the
standard library. Only the candidate's own frames count as evidence; Triton and torch
reading environment variables or opening cache files are not the candidate's doing.
"""

from __future__ import annotations

import _thread
import os
import sys
import sysconfig
import threading
import time
import types
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
import triton
from torch.utils._python_dispatch import TorchDispatchMode

_STDLIB = tuple(
    os.path.realpath(sysconfig.get_paths()[k]) + os.sep for k in ("stdlib", "platstdlib")
)
_HERE = os.path.dirname(os.path.realpath(__file__)) + os.sep
_TRITON_DIR = os.path.dirname(os.path.realpath(triton.__file__)) + os.sep

_BLOCKED_PROCESS_EVENTS = (
    "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec", "os.system",
    "subprocess.Popen", "pty.spawn", "os.kill", "os.killpg",
)
_BLOCKED_NET_EVENTS = ("socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo",
                       "socket.gethostbyname", "socket.sendto", "socket.sendmsg")
_FILE_EVENTS = ("open", "os.listdir", "os.scandir", "os.remove", "os.rename", "os.mkdir",
                "os.rmdir", "shutil.rmtree", "shutil.copyfile", "glob.glob", "os.chdir")
_INTROSPECTION_EVENTS = ("sys._getframe", "sys._current_frames", "gc.get_objects",
                         "gc.get_referrers", "gc.get_referents", "sys.settrace", "sys.setprofile",
                         "sys._getframemodulename")
_BLOCKED_SYMBOLS = frozenset({
    "fork", "vfork", "clone", "clone3", "system", "execv", "execve", "execvp", "posix_spawn",
    "posix_spawnp", "socket", "connect", "setsid", "kill", "ptrace",
})
_EMPTY_OPS = frozenset({"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided"})


class Blocked(PermissionError):
    """The sandbox refused an operation the candidate attempted."""


@dataclass
class Launch:
    name: str
    own: bool
    dtypes: list[str]
    side_stream: bool = False
    raised: str = ""


@dataclass
class Monitor:
    candidate_path: str
    launches: list[Launch] = field(default_factory=list)
    findings: list[tuple[str, str]] = field(default_factory=list)
    """(hack kind, evidence) seen at run time."""
    suppress_own_launches: bool = False
    active: bool = False
    """Record candidate activity only while its code runs (load, construction, forwards)."""
    _in_hook: bool = False
    on_gpu: bool = False

    def flag(self, kind: str, evidence: str) -> None:
        if (kind, evidence) not in self.findings and len(self.findings) < 64:
            self.findings.append((kind, evidence))

    def culprit(self, depth: int = 2, skip_stdlib: bool = True) -> str | None:
        """File of the first frame outside stdlib and this package, or None for the harness."""
        frame: types.FrameType | None = sys._getframe(depth)
        while frame is not None:
            name = frame.f_code.co_filename
            if name.startswith("<frozen importlib"):
                return None  # an import statement: the import system opens files
            if name.startswith(_HERE):
                return None
            if not (skip_stdlib and (name.startswith(_STDLIB) or name.startswith("<frozen"))):
                return name
            frame = frame.f_back
        return None

    def by_candidate(self, depth: int = 3, skip_stdlib: bool = True) -> bool:
        return self.active and self.culprit(depth, skip_stdlib) == self.candidate_path

    def audit(self, event: str, args: tuple[Any, ...]) -> None:
        # The hook itself walks frames, which raises audit events: do not recurse.
        if not self.active or self._in_hook:
            return
        self._in_hook = True
        try:
            self._audit(event, args)
        finally:
            self._in_hook = False

    def _audit(self, event: str, args: tuple[Any, ...]) -> None:
        if event.startswith(_BLOCKED_PROCESS_EVENTS) and self.by_candidate(4):
            self.flag("background_work", f"{event} {_short(args)}")
            raise Blocked(f"sandbox: {event} is not allowed")
        if event.startswith(_BLOCKED_NET_EVENTS) and self.by_candidate(4):
            self.flag("io_access", f"network: {event} {_short(args)}")
            raise Blocked(f"sandbox: {event} is not allowed")
        if event in _FILE_EVENTS and self.by_candidate(4):
            self.flag("io_access", f"file: {event} {_short(args)}")
            raise Blocked(f"sandbox: {event} is not allowed")
        if event in _INTROSPECTION_EVENTS and self._direct_candidate_call():
            self.flag("introspection", event)
        elif event == "object.__getattr__" and _frame_attr(args) and self._direct_candidate_call():
            self.flag("introspection", f"read {_frame_attr(args)}")
        elif event == "ctypes.dlsym" and _symbol(args) in _BLOCKED_SYMBOLS and self.by_candidate(4):
            self.flag("background_work", f"ctypes lookup of {_symbol(args)}")
            raise Blocked(f"sandbox: ctypes {_symbol(args)} is not allowed")
        elif event == "sys.addaudithook" and self.by_candidate(4):
            self.flag("patching", "installed an audit hook")

    def _direct_candidate_call(self) -> bool:
        # Only the direct caller (or `inspect` on its behalf) counts: `typing` and
        # `collections.namedtuple` call sys._getframe for the candidate legitimately.
        frame = sys._getframe(3)
        while frame is not None and frame.f_code.co_filename.endswith(f"{os.sep}inspect.py"):
            frame = frame.f_back  # type: ignore[assignment]
        return frame is not None and frame.f_code.co_filename == self.candidate_path

    def on_launch(self, fn: Any, args: tuple[Any, ...]) -> bool:
        """Record a Triton launch; False means skip it (ghost run)."""
        code = getattr(getattr(fn, "fn", fn), "__code__", None)
        own = code is not None and code.co_filename == self.candidate_path
        dtypes = sorted({str(a.dtype).removeprefix("torch.") for a in args
                         if isinstance(a, torch.Tensor)})
        side = self.on_gpu and torch.cuda.current_stream() != torch.cuda.default_stream()
        name = getattr(getattr(fn, "fn", fn), "__name__", "kernel")
        self.launches.append(Launch(name=name, own=own, dtypes=dtypes, side_stream=side))
        return not (own and self.suppress_own_launches)


def _short(args: tuple[Any, ...]) -> str:
    return repr(args)[:200]


def _frame_attr(args: tuple[Any, ...]) -> str:
    name = str(args[1]) if len(args) > 1 else ""
    return name if name in ("tb_frame", "gi_frame", "cr_frame", "f_back", "f_locals") else ""


def _symbol(args: tuple[Any, ...]) -> str:
    return str(args[1]) if len(args) > 1 else ""


class OpTracer(TorchDispatchMode):
    """Counts the aten ops a forward executes; optionally poisons fresh allocations."""

    def __init__(self, poison: bool = False) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()
        self.poison = poison
        self.downcasts: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if _called_from_triton():
            return out  # autotune benchmarking and the interpreter's own tensor work
        name = func.overloadpacket.__name__
        self.ops[name] += 1
        if name == "_to_copy" and isinstance(out, torch.Tensor):
            src = args[0].dtype if args and isinstance(args[0], torch.Tensor) else None
            if src in (torch.float32, torch.float64) and out.dtype in (torch.float16,
                                                                       torch.bfloat16):
                self.downcasts.append(f"{src} -> {out.dtype}")
        if self.poison and name in _EMPTY_OPS and isinstance(out, torch.Tensor):
            _fill_poison(out)
        return out


def _called_from_triton() -> bool:
    frame: types.FrameType | None = sys._getframe(2)
    for _ in range(40):
        if frame is None:
            return False
        if frame.f_code.co_filename.startswith(_TRITON_DIR):
            return True
        frame = frame.f_back
    return False


def _fill_poison(t: torch.Tensor) -> None:
    if t.is_floating_point() or t.is_complex():
        t.fill_(float("nan"))
    elif t.dtype == torch.bool:
        t.fill_(True)
    else:
        t.fill_(torch.iinfo(t.dtype).max // 3)


class _RecordingEnviron(os._Environ):
    monitor: Monitor | None = None

    def __getitem__(self, key: str) -> str:
        self._note(f"environment read {key!r}")
        return super().__getitem__(key)

    def __iter__(self):
        self._note("environment listed")
        return super().__iter__()

    def _note(self, evidence: str) -> None:
        mon = _RecordingEnviron.monitor
        if mon is not None and mon.by_candidate(depth=4):
            mon.flag("io_access", evidence)


def install(monitor: Monitor) -> None:
    """Hooks that live for the rest of the child's life (audit hooks cannot be removed)."""
    monitor.on_gpu = torch.cuda.is_available()
    sys.addaudithook(monitor.audit)
    _RecordingEnviron.monitor = monitor
    os.environ.__class__ = _RecordingEnviron
    _hook_threads(monitor)
    _hook_launches(monitor)
    _first_autotune_config_only_without_gpu()


def _hook_threads(monitor: Monitor) -> None:
    start = threading.Thread.start
    start_new = _thread.start_new_thread

    def checked_start(self: threading.Thread) -> None:
        if monitor.by_candidate():
            monitor.flag("background_work", f"started thread {self.name}")
        start(self)

    def checked_start_new(*args: Any, **kwargs: Any) -> Any:
        if monitor.by_candidate():
            monitor.flag("background_work", "started a raw thread")
        return start_new(*args, **kwargs)

    threading.Thread.start = checked_start  # type: ignore[method-assign]
    _thread.start_new_thread = checked_start_new


def _hook_launches(monitor: Monitor) -> None:
    from triton.runtime import interpreter, jit

    for cls in (interpreter.InterpretedFunction, jit.JITFunction):
        original = cls.run

        def run(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            if not monitor.on_launch(self, args):
                return None
            try:
                return _original(self, *args, **kwargs)
            except BaseException as exc:
                monitor.launches[-1].raised = type(exc).__name__
                raise

        cls.run = run


def _first_autotune_config_only_without_gpu() -> None:
    # Benchmarking configs needs a GPU driver; the interpreter can run only one config.
    if torch.cuda.is_available():
        return
    from triton.runtime import autotuner

    original = autotuner.autotune

    def autotune(configs: list[Any], *args: Any, **kwargs: Any) -> Any:
        return original(list(configs)[:1], *args, **kwargs)

    autotuner.autotune = autotune
    triton.autotune = autotune


def snapshot() -> dict[str, int]:
    """Identity of the callables a candidate could patch to fool the judge."""
    import builtins

    spaces: dict[str, Any] = {
        "torch": torch, "torch.Tensor": torch.Tensor, "torch.nn.functional": torch.nn.functional,
        "torch.testing": torch.testing, "torch.cuda": torch.cuda, "torch.cuda.Event":
        torch.cuda.Event, "time": time, "builtins": builtins, "triton": triton,
        "torch.nn.Module": torch.nn.Module, "os": os, "sys": sys,
    }
    if "triton.testing" in sys.modules:
        spaces["triton.testing"] = sys.modules["triton.testing"]
    for name, module in list(sys.modules.items()):
        if name.startswith("evaluator.") and module is not None:
            spaces[name] = module
    ids = {}
    for prefix, space in spaces.items():
        for key, value in list(vars(space).items()):
            if callable(value) or isinstance(value, types.ModuleType):
                ids[f"{prefix}.{key}"] = id(value)
    return ids


_MUTABLE = frozenset({"os.environ", "sys.stdout", "sys.stderr", "sys.stdin"})


def patched(before: dict[str, int], after: dict[str, int]) -> list[str]:
    return sorted(k for k, v in before.items() if after.get(k) != v and k not in _MUTABLE)
