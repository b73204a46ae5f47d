"""Run-time watch over a candidate, installed in the child before its source is loaded.

Every observation is attributed to the code that caused it: the nearest frame outside the
standard library. Frames of installed libraries (torch, Triton) and of the judge are
trusted; anything else (the candidate, the reference, code compiled at run time) is not.
Triton reading environment variables or opening cache files is not the candidate's doing.
Code objects cannot claim a trusted file name: compiling, creating code or functions from
untrusted code is refused, and any source compiled under a trusted path must be that file.
"""

from __future__ import annotations

import _thread
import functools
import os
import posix
import sys
import sysconfig
import threading
import time
import types
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import triton
from torch.utils._python_dispatch import TorchDispatchMode

from evaluator.gpu_compile import GpuCompileError, GpuCompiler
from evaluator.tracer_guard import Kept
from evaluator.work import GLUE_OPS, op_cost, tensors_in


def _dirs(*keys: str) -> tuple[str, ...]:
    return tuple(sorted({os.path.realpath(sysconfig.get_paths()[k]) + os.sep for k in keys}))


_LIBRARIES = _dirs("purelib", "platlib")
_STDLIB = _dirs("stdlib", "platstdlib")
_HERE = os.path.dirname(os.path.realpath(__file__)) + os.sep
_TRITON_DIR = os.path.dirname(os.path.realpath(triton.__file__)) + os.sep
_TORCH_DIR = os.path.dirname(os.path.realpath(torch.__file__)) + os.sep

_BLOCKED_PROCESS_EVENTS = (
    "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec", "os.system",
    "subprocess.Popen", "pty.spawn", "os.kill", "os.killpg", "signal.pthread_kill",
)
_BLOCKED_NET_EVENTS = ("socket.", "urllib.Request")
_FILE_EVENTS = ("open", "os.listdir", "os.scandir", "os.remove", "os.rename", "os.mkdir",
                "os.rmdir", "shutil.rmtree", "shutil.copyfile", "glob.glob", "os.chdir",
                "os.truncate", "os.chmod", "os.chown", "os.link", "os.symlink", "mmap.__new__",
                "os.walk", "os.fwalk", "os.utime")
_CODE_EVENTS = ("exec", "compile", "code.__new__", "function.__new__", "marshal.loads",
                "marshal.load")
_INTROSPECTION_EVENTS = ("sys._getframe", "sys._current_frames", "gc.get_objects",
                         "gc.get_referrers", "gc.get_referents", "sys.settrace", "sys.setprofile",
                         "sys._getframemodulename")
_FRAME_ATTRS = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_back", "f_locals",
                          "f_globals"})
_EMPTY_OPS = frozenset({"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided"})
_HOST_COMPUTE = ("numpy", "tolist", "__array__", "apply_", "map_", "map2_", "__dlpack__",
                 "__dlpack_device__")


class Blocked(PermissionError):
    """The sandbox refused an operation the candidate attempted."""


@dataclass
class Launch:
    name: str
    own: bool
    dtypes: list[str]
    side_stream: bool = False
    raised: str = ""


@functools.lru_cache(maxsize=4096)
def origin(filename: str) -> str:
    """Who wrote the code in `filename`: stdlib, harness, library or untrusted."""
    if not filename.startswith("<"):
        filename = os.path.normpath(filename)  # `<triton>/../../scratch/x.py` is not Triton's
    if filename.startswith(_HERE):
        return "harness"
    if filename.startswith(_LIBRARIES):
        return "library"
    if filename.startswith(_STDLIB) or filename.startswith("<frozen"):
        return "stdlib"
    return "untrusted"


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
    kernel_downcasts: list[str] = field(default_factory=list)
    """Casts of fp32 values to fp16/bf16 inside kernels, seen by the interpreter."""
    compiler: GpuCompiler | None = None
    """On cpu, compiles each launched kernel for a GPU target as well (set by the harness)."""
    compile_errors: list[str] = field(default_factory=list)

    def flag(self, kind: str, evidence: str) -> None:
        if (kind, evidence) not in self.findings and len(self.findings) < 64:
            self.findings.append((kind, evidence))

    def refuse(self, kind: str, evidence: str) -> None:
        self.flag(kind, evidence)
        raise Blocked(f"sandbox: {evidence} is not allowed")

    def by_untrusted(self, depth: int) -> bool:
        """Whether the nearest non-stdlib frame from `depth` up is untrusted code.

        Depth counts from this method's own frame (0): 2 is its caller's caller.
        """
        if not self.active:
            return False
        for frame in _frames(sys._getframe(depth)):
            if _is_import(frame):
                return False  # an import statement: the import system opens files
            kind = origin(frame.f_code.co_filename)
            if kind != "stdlib":
                return kind == "untrusted"
        return False

    def unguarded(self, depth: int, program: str | None = None) -> bool:
        """For processes and threads: refuse unless Triton itself acts, and then run only
        its compiler tools (ptxas, a C compiler) as programs.

        Untrusted code can hand a builtin such as `os.system` to a torch utility
        (`tree_map`) or to a finalizer that runs in the judge's frame: neither is Triton.
        """
        if not self.active:
            return False
        if not _triton_acts(sys._getframe(depth)):
            return True
        return program is not None and not _compiler_tool(program)

    def direct_untrusted(self, depth: int) -> bool:
        """Whether the frame at `depth` (or the one `inspect` acts for) is untrusted code.

        For frames, gc and run-time code only the direct caller counts: `typing`,
        `dataclasses` and `collections.namedtuple` do these things for honest code.
        """
        frame: types.FrameType | None = sys._getframe(depth)
        while frame is not None and frame.f_code.co_filename.endswith(f"{os.sep}inspect.py"):
            frame = frame.f_back
        return frame is not None and origin(frame.f_code.co_filename) == "untrusted"

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
        # Frames from a check: 0 the check, 1 here, 2 audit, 3 the frame that raised it.
        if event in _CODE_EVENTS:
            self._check_code(event, args)
        elif event.startswith("ctypes.") and self.by_untrusted(3):
            self.refuse("sandbox_escape", f"{event} (ctypes)")
        elif event.startswith(_BLOCKED_PROCESS_EVENTS) and self.unguarded(3, _program(event, args)):
            self.refuse("background_work", f"{event} {_short(args)}")
        elif event.startswith(_BLOCKED_NET_EVENTS):
            self.refuse("io_access", f"network {event} {_short(args)}")
        elif event in _FILE_EVENTS and self._file_refused(args):
            self.refuse("io_access", f"file {event} {_short(args)}")
        elif event in _INTROSPECTION_EVENTS and self.direct_untrusted(3):
            self.flag("introspection", event)
        elif event == "object.__getattr__" and _attr(args) in _FRAME_ATTRS \
                and self.direct_untrusted(3):
            self.flag("introspection", f"read {_attr(args)}")
        elif event == "object.__setattr__" and _guarded_type(args) and self.direct_untrusted(3):
            self.refuse("patching", f"set {_guarded_type(args)}.{_attr(args)}")
        elif event == "sys.addaudithook" and self.by_untrusted(3):
            self.flag("patching", "installed an audit hook")

    def _file_refused(self, args: tuple[Any, ...]) -> bool:
        """Untrusted code's own file access, or any access it routes through a library
        (Triton's own cache and source reads excepted), or another process's /proc."""
        if _other_process(args):
            return True
        if _own_source_read(args, self.candidate_path) or _library_source_read(args):
            return False
        if self.by_untrusted(4):
            return True
        site = sys._getframe(3)  # 0 here, 1 _audit, 2 audit, 3 the frame that raised it
        frames = list(_frames(site))
        untrusted_below = any(origin(f.f_code.co_filename) == "untrusted" for f in frames)
        return untrusted_below and not _triton_acts(site) and not any(map(_is_import, frames))

    def _check_code(self, event: str, args: tuple[Any, ...]) -> None:
        if self.direct_untrusted(4):
            self.refuse("sandbox_escape", f"{event} of code at run time")
        if event == "compile" and len(args) > 1:
            filename = os.fsdecode(args[1]) if isinstance(args[1], (str, bytes)) else ""
            if filename and filename[0] != "<" and filename != os.path.normpath(filename):
                self.refuse("sandbox_escape", f"code compiled under the name {filename}")
            if origin(filename) != "untrusted" and not _is_source_of(args[0], filename):
                self.refuse("sandbox_escape", f"code compiled under the name {filename}")

    def on_launch(self, fn: Any, args: tuple[Any, ...],
                  kwargs: dict[str, Any] | None = None) -> bool:
        """Record a Triton launch; False means skip it (ghost run)."""
        kwargs = kwargs or {}
        if self.active and getattr(fn, "pre_run_hooks", None):
            # Triton calls these from its own frames with the kernel's arguments, so a C
            # callable (`torch.matmul`, `os.system`, `exec`) would act under Triton's name.
            self.refuse("sandbox_escape", "a pre-run hook on a kernel")
        if self.active:
            _check_arguments(self, fn, args, kwargs)
        code = getattr(getattr(fn, "fn", fn), "__code__", None)
        own = code is not None and code.co_filename == self.candidate_path
        dtypes = sorted({str(a.dtype).removeprefix("torch.") for a in args
                         if isinstance(a, torch.Tensor)})
        side = self.on_gpu and torch.cuda.current_stream() != torch.cuda.default_stream()
        name = getattr(getattr(fn, "fn", fn), "__name__", "kernel")
        self.launches.append(Launch(name=name, own=own, dtypes=dtypes, side_stream=side))
        if own and self.suppress_own_launches:
            return False
        if self.compiler is not None and self.active:
            self._compile_for_gpu(fn, args, kwargs)
        return True

    def _compile_for_gpu(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Compile an interpreted kernel as a GPU would, before the interpreter runs it; a
        rejection stands even if the candidate catches it."""
        from triton.runtime.interpreter import InterpretedFunction

        if _type(fn) is not InterpretedFunction or self.compiler is None:
            return
        try:
            self.compiler.check(fn, args, kwargs)
        except GpuCompileError as exc:
            if str(exc) not in self.compile_errors:
                self.compile_errors.append(str(exc))
            raise


_type = type  # bound before any candidate code can swap `builtins.type`
_LAUNCH_OPTIONS = frozenset({"grid", "warmup"})


def _argument_types() -> frozenset[type]:
    """What a kernel may be given: plain tensors, Python and numpy scalars, and Triton's own
    values (dtypes, constexprs, tensor descriptors)."""
    import triton.language as tl

    kinds: set[type] = {int, float, bool, str, _type(None), torch.Tensor, torch.nn.Parameter,
                        torch.dtype, tl.constexpr}
    kinds |= {k for k in vars(tl.core).values() if isinstance(k, type) and issubclass(k, tl.dtype)}
    kinds |= {k for k in np.sctypeDict.values() if isinstance(k, type)}
    try:
        from triton.tools.tensor_descriptor import TensorDescriptor
        kinds.add(TensorDescriptor)
    except ImportError:
        pass
    return frozenset(kinds)


_ARGUMENT_TYPES = _argument_types()
_QUALNAME = type.__dict__["__qualname__"]


_TENSOR_ATTRS = frozenset(dir(torch.Tensor))


def _plain_argument(value: Any) -> bool:
    kind = _type(value)
    if kind in (tuple, list):
        return all(_plain_argument(v) for v in value)
    if kind in (torch.Tensor, torch.nn.Parameter):
        # An instance attribute can shadow a method Triton calls (`untyped_storage`, `cpu`).
        return not any(key in _TENSOR_ATTRS for key in _instance_dict(value))
    return kind in _ARGUMENT_TYPES


def _instance_dict(value: Any) -> dict[str, Any]:
    try:
        space = object.__getattribute__(value, "__dict__")
    except AttributeError:
        return {}
    return space if _type(space) is dict else {"__dict__": space}


def _check_arguments(monitor: Monitor, fn: Any, args: tuple[Any, ...],
                     kwargs: dict[str, Any]) -> None:
    """Refuse anything but real tensors and scalars: Triton reads a tensor-like object's data
    (`data_ptr`, `.cpu()`) from its own frames, where torch work would go unseen."""
    values = [*args, *(v for k, v in kwargs.items() if k not in _LAUNCH_OPTIONS)]
    for value in values:
        if not _plain_argument(value):
            kernel = getattr(getattr(fn, "fn", fn), "__name__", "kernel")
            kind = _QUALNAME.__get__(_type(value), type)
            if _type(value) in (torch.Tensor, torch.nn.Parameter):
                kind += " whose own attributes shadow its methods"
            monitor.refuse("lazy_tensor", f"kernel {kernel} was given a {kind}: kernel "
                           "arguments must be plain tensors or scalars")


def _short(args: tuple[Any, ...]) -> str:
    return repr(args)[:200]


_COMPILER_TOOLS = frozenset({"ptxas", "ptxas-blackwell", "cuobjdump", "nvdisasm", "nvlink",
                             "fatbinary", "gcc", "cc", "clang", "g++", "c++", "ld", "ld.lld"})


def _program(event: str, args: tuple[Any, ...]) -> str:
    """The program a `subprocess.Popen` (or the `os.posix_spawn` it makes) would run; '' for
    any other process event (a shell, a fork, a signal), which no tool of Triton's needs."""
    if event == "os.posix_spawn":
        return os.fsdecode(args[0]) if args and isinstance(args[0], (str, bytes)) else ""
    if event != "subprocess.Popen":
        return ""
    first = args[0] if args else None
    if first is None and len(args) > 1 and isinstance(args[1], (list, tuple)) and args[1]:
        first = args[1][0]
    return os.fsdecode(first) if isinstance(first, (str, bytes)) else ""


def _compiler_tool(program: str) -> bool:
    if not program:
        return False
    return os.path.basename(program) in _COMPILER_TOOLS or \
        os.path.realpath(program).startswith(_TRITON_DIR)


def _frames(frame: types.FrameType | None) -> Iterator[types.FrameType]:
    while frame is not None:
        yield frame
        frame = frame.f_back


def _triton_acts(frame: types.FrameType) -> bool:
    """Whether the nearest frame outside the standard library, from `frame` up, is Triton's."""
    nearest = next((f for f in _frames(frame) if origin(f.f_code.co_filename) != "stdlib"),
                   None)
    return nearest is not None and nearest.f_code.co_filename.startswith(_TRITON_DIR)


def _is_import(frame: types.FrameType) -> bool:
    """An import in progress: not merely a loader method called from anywhere."""
    code = frame.f_code
    return code.co_name == "_find_and_load" and code.co_filename.startswith("<frozen importlib")


def _other_process(args: tuple[Any, ...]) -> bool:
    """A path into another process's /proc entry (e.g. the worker's pipes)."""
    path = args[0] if args else None
    if not isinstance(path, (str, bytes)):
        return False
    real = os.path.realpath(os.fsdecode(path))
    if not real.startswith("/proc/"):
        return False
    head = real.split("/")[2]
    return head.isdigit() and int(head) != os.getpid()


def _own_source_read(args: tuple[Any, ...], own: str) -> bool:
    """A read-only open of the source the child was given (linecache, for a warning)."""
    path = args[0] if args else None
    mode = args[1] if len(args) > 1 else "r"
    if not isinstance(path, (str, bytes)) or not isinstance(mode, str):
        return False
    return set(mode) <= set("rbt") and os.path.realpath(os.fsdecode(path)) == \
        os.path.realpath(own)


def _library_source_read(args: tuple[Any, ...]) -> bool:
    """linecache reading an installed library's or the stdlib's own .py source (a warning
    attributed, via stacklevel, to a torch frame)."""
    path = args[0] if args else None
    mode = args[1] if len(args) > 1 else "r"
    if not isinstance(path, (str, bytes)) or not isinstance(mode, str) or \
            not set(mode) <= set("rbt"):
        return False
    real = os.path.realpath(os.fsdecode(path))
    if not real.endswith(".py") or origin(real) not in ("library", "stdlib"):
        return False
    frame: types.FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename.endswith(f"{os.sep}linecache.py"):
            return True
        frame = frame.f_back
    return False


def _attr(args: tuple[Any, ...]) -> str:
    return str(args[1]) if len(args) > 1 else ""


_GUARDED_MODULES = ("torch", "triton", "evaluator", "numpy", "builtins", "time")


def _guarded_type(args: tuple[Any, ...]) -> str:
    """The name of a judge-relevant class whose attribute is being set, or ''."""
    target = args[0] if args else None
    module = getattr(target, "__module__", "") if isinstance(target, type) else ""
    if isinstance(module, str) and module.split(".")[0] in _GUARDED_MODULES:
        return f"{module}.{target.__qualname__}"  # type: ignore[union-attr]
    return ""


def _is_source_of(source: Any, filename: str) -> bool:
    """Whether `source` is the text of the real file `filename` (an import of it)."""
    if not isinstance(source, (str, bytes)):
        return False
    try:
        with open(filename, "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data == (source.encode() if isinstance(source, str) else source)


class OpTracer(TorchDispatchMode):
    """Counts the aten ops a forward executes and the work they do (`evaluator.work`);
    keeps what torch computed from the inputs alone, so that an output Triton only copied can
    be told apart; optionally poisons fresh allocations."""

    def __init__(self, poison: bool = False, output_numel: int = 0,
                 follow_kernels: bool = True) -> None:
        super().__init__()
        self.follow_kernels = follow_kernels
        """Look at what each own kernel wrote (the provenance behind the work account); the
        probes, whose work is not counted, skip it."""
        self.ops: Counter[str] = Counter()
        self.output_numel = output_numel
        self.work: dict[str, float] = {}
        """Per op, estimated nanoseconds of work on data derived from the inputs."""
        self.work_alone: dict[str, float] = {}
        """The part of `work` done on data no kernel of the candidate's had a hand in."""
        self.computed: dict[int, str] = {}
        """Storages holding what torch computed from the inputs alone, and the op that did."""
        self.poison = poison
        self.downcasts: list[str] = []
        self.state_ptrs: set[int] = set()
        """Storages of the module's parameters and buffers (set by the harness)."""
        self.derived: set[int] = set()
        """Storages computed from module state alone during this forward."""
        self.from_triton: set[int] = set()
        """Storages the candidate's own kernels wrote results of their own into, and what
        torch computed from them."""
        self.torch_only = Kept(_KEPT_OUTPUTS * max(output_numel, 1))
        """Copies of what torch computed from the inputs with no kernel's data, output-sized or
        smaller, newest last."""
        self.forward = False
        """Set for a forward: then arithmetic on constants (a shape tuple made a tensor) is no
        work either; while loading, everything is counted."""
        self.constants: set[int] = set()
        self.kernel_elements = 0
        """Elements the candidate's own kernels computed (not merely copied)."""
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __enter__(self) -> OpTracer:
        _TRACERS.append(self)
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        if self in _TRACERS:
            _TRACERS.remove(self)
        super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if _called_from_triton():
            return out  # autotuning, the interpreter's tensor work
        name = _op_name(func)
        self.ops[name] += 1
        self._account(name, func, args, kwargs or {}, out)
        if isinstance(out, torch.Tensor):
            self._note_downcast(name, args, out)
        if self.poison and name in _EMPTY_OPS and isinstance(out, torch.Tensor):
            _fill_poison(out)
        return out

    def _is_state(self, t: torch.Tensor) -> bool:
        ptr = _storage_ptr(t)
        return ptr is not None and (ptr in self.state_ptrs or ptr in self.derived)

    def _account(self, name: str, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                 out: Any) -> None:
        """Weigh one op: arithmetic on module state alone (folding parameters) is no work on
        the inputs; an op reading a kernel's data passes that on; an op on the inputs alone
        that could be an output is kept."""
        sources = tensors_in((args, {k: v for k, v in kwargs.items() if k != "out"}))
        outs = tensors_in(out)
        out_ptrs = {p for p in map(_storage_ptr, outs) if p is not None}
        if not sources or name.startswith("lift_fresh") or (
                self.forward and all(_storage_ptr(t) in self.constants for t in sources)):
            self.constants |= out_ptrs  # a factory, or arithmetic on what factories made
            if self.forward:
                return
        self.constants -= out_ptrs
        if not sources:
            return
        if all(self._is_state(t) for t in sources):
            self.derived |= out_ptrs
            return
        self.state_ptrs -= out_ptrs  # a state storage written from the inputs is state no more
        self.derived -= out_ptrs
        cost = op_cost(name, func, args, kwargs, out)
        self.work[name] = self.work.get(name, 0.0) + cost
        source_ptrs = {_storage_ptr(t) for t in sources}
        if source_ptrs & self.from_triton:
            self.from_triton |= out_ptrs
            for ptr in out_ptrs:
                self.computed.pop(ptr, None)
            return
        self.work_alone[name] = self.work_alone.get(name, 0.0) + cost
        # Moving torch's own result (stack, cat, a copy) keeps it torch's; a view is no new one.
        moved_from = [self.computed[p] for p in source_ptrs if p in self.computed]
        if name not in GLUE_OPS or (moved_from and not out_ptrs <= source_ptrs):
            op = name if name not in GLUE_OPS else moved_from[0]
            self.computed.update(dict.fromkeys(out_ptrs, op))
            self._keep(op, outs)

    def before_launch(self, tensors: list[torch.Tensor]) -> None:
        """Copies of what an own kernel is given, to see afterwards what it wrote."""
        with _unwatched(), _unwatched_dispatch():
            self._pending = [(t, t.detach().clone()) for t in tensors if not t.is_complex()]

    def after_launch(self) -> None:
        """A storage the kernel changed holds its work, unless it was a copy or a re-layout
        (as many values as its largest argument, every one of them a value it was given):
        then the data keeps its origin, so moving torch's own result, or the inputs into a
        buffer for torch, is no kernel's work."""
        try:
            with _unwatched(), _unwatched_dispatch():
                self._written()
        finally:
            self._pending = []

    def _written(self) -> None:
        given = [(t, old) for t, old in self._pending if old.numel()]
        written = [t for t, old in given if not _unchanged(t, old)]
        if not written:
            return
        pool = _cat([old.reshape(-1).double() for _, old in given])
        origins = {_storage_ptr(t) for t, _ in given}
        largest = max(old.numel() for _, old in given)
        for t in written:
            ptr = _storage_ptr(t)
            if ptr is None:
                continue
            moved = t.numel() >= largest and _all_given(t, given, pool)
            if moved and origins & self.from_triton:
                self.from_triton.add(ptr)
            elif moved and origins & self.computed.keys():
                op = next(self.computed[p] for p in origins if p in self.computed)
                self.computed[ptr] = op
                self._keep(op, [t])
            elif not moved:
                self.kernel_elements += t.numel()
                self.from_triton.add(ptr)
                self.computed.pop(ptr, None)
            self.state_ptrs.discard(ptr)
            self.derived.discard(ptr)

    def _keep(self, name: str, outs: list[torch.Tensor]) -> None:
        for t in outs:
            if 0 < t.numel() <= max(self.output_numel, 1) and not t.is_complex():
                self.torch_only.keep(name, t.detach().clone())

    def torch_made(self, outputs: list[torch.Tensor], atol: float, rtol: float,
                   scaled: bool = False) -> str:
        """The torch op whose own result every output is (up to layout and tolerance; with
        `scaled`, up to a scalar scale and shift instead), or ''."""
        same = _affine_of if scaled else _same_values
        names = []
        for y in outputs:
            name = next((n for n, t in reversed(self.torch_only) if same(t, y, atol, rtol)), "")
            if not name:
                return ""
            names.append(name)
        return ", ".join(dict.fromkeys(names))

    def _note_downcast(self, name: str, args: tuple[Any, ...], out: torch.Tensor) -> None:
        if name == "copy_" and len(args) > 1 and isinstance(args[1], torch.Tensor):
            src, dst = args[1].dtype, out.dtype
        elif name in ("_to_copy", "view.dtype") and args and isinstance(args[0], torch.Tensor):
            src, dst = args[0].dtype, out.dtype
        else:
            return
        if src in (torch.float32, torch.float64) and dst in _LOW_FLOATS:
            self.downcasts.append(f"{name} {src} -> {dst}")


def _all_given(t: torch.Tensor, given: list[tuple[torch.Tensor, torch.Tensor]],
               pool: torch.Tensor) -> bool:
    """Every value of `t` is one the kernel was given. Cheap steps first: values an argument
    of the same size holds at the same place need no search (a copy leaves none); a sample of
    the rest missing from the pool means real work; only then the full membership test."""
    flat = t.detach().reshape(-1).double()
    unplaced = _ones_like(flat, dtype=torch.bool)
    for _, old in given:
        if old.numel() == flat.numel():
            unplaced &= flat != old.reshape(-1).double()
    rest = flat[unplaced]
    if not rest.numel():
        return True
    sample = rest[_linspace(0, rest.numel() - 1, min(16, rest.numel())).long()]
    if not _each_in(sample, pool):
        return False
    values = _unique(rest)
    return _each_in(values, pool) if values.numel() <= 64 else bool(_isin(values, pool).all())


def _each_in(values: torch.Tensor, pool: torch.Tensor) -> bool:
    """Membership one value at a time: for a few values far cheaper than `isin`, which
    sorts the pool whatever it is asked."""
    return all(bool((pool == value).any()) for value in values)


def _unchanged(t: torch.Tensor, old: torch.Tensor) -> bool:
    if bool(_equal(t, old)):
        return True
    if not t.is_floating_point():
        return False
    return bool(((t == old) | (_isnan(t) & _isnan(old))).all())  # NaN-filled, untouched


_KEPT_OUTPUTS = 16
"""How many outputs' worth of torch results a forward keeps for `torch_made`."""


def _same_values(kept: torch.Tensor, y: torch.Tensor, atol: float, rtol: float) -> bool:
    """Equal within tolerance as laid out, or as a multiset (a kernel that only re-lays out)."""
    if kept.numel() != y.numel() or y.is_complex():
        return False
    a, b = kept.detach().reshape(-1).double(), y.detach().reshape(-1).double()
    if not bool(_isfinite(b).all()):
        return False
    return _allclose(b, a, atol=atol, rtol=rtol) or _allclose(
        _sort(b).values, _sort(a).values, atol=atol, rtol=rtol)


def _affine_of(kept: torch.Tensor, y: torch.Tensor, atol: float, rtol: float) -> bool:
    """y = a·kept + b within tolerance, for scalars a != 0 and b (least squares)."""
    if kept.numel() != y.numel() or kept.numel() < 2 or y.is_complex() or kept.is_complex():
        return False
    a, b = kept.detach().reshape(-1).double(), y.detach().reshape(-1).double()
    if not bool(_isfinite(a).all() and _isfinite(b).all()):
        return False
    centred = a - a.mean()
    spread = float((centred * centred).sum())
    if spread == 0.0:
        return False
    scale = float((centred * (b - b.mean())).sum()) / spread
    return scale != 0.0 and _allclose(b, scale * centred + b.mean(), atol=atol, rtol=rtol)


_allclose, _isfinite, _sort = torch.allclose, torch.isfinite, torch.sort
_equal, _cat, _isin, _isnan = torch.equal, torch.cat, torch.isin, torch.isnan
_linspace, _unique, _ones_like = torch.linspace, torch.unique, torch.ones_like
_unwatched, _unwatched_dispatch = torch._C.DisableTorchFunction, torch._C._DisableTorchDispatch
"""For the judge's own tensor work inside a forward: no mode sees it."""
_TRACERS: list[OpTracer] = []
"""The op tracers in force, innermost last: own launches report to the innermost."""


def _storage_ptr(t: torch.Tensor) -> int | None:
    """Where a tensor's data lives; None for tensors without plain storage (sparse, meta)."""
    try:
        return int(t.untyped_storage().data_ptr())
    except (RuntimeError, NotImplementedError):
        return None


_LOW_FLOATS = (torch.float16, torch.bfloat16)


def _op_name(func: Any) -> str:
    name = func.overloadpacket.__name__
    if func.namespace != "aten":
        return f"{func.namespace}::{name}"
    if name == "view" and func._overloadname == "dtype":
        return "view.dtype"  # reinterpreting bits is not a layout change
    return str(name)


def _called_from_triton() -> bool:
    """Whether the nearest frame outside torch, stdlib and the judge is Triton's."""
    for frame in _frames(sys._getframe(2)):
        name = frame.f_code.co_filename
        if not (name.startswith((_TORCH_DIR, _HERE)) or origin(name) == "stdlib"):
            return name.startswith(_TRITON_DIR)
    return False


def _fill_poison(t: torch.Tensor) -> None:
    if t.is_floating_point() or t.is_complex():
        t.fill_(float("nan"))
    elif t.dtype == torch.bool:
        t.fill_(True)
    else:
        t.fill_(torch.iinfo(t.dtype).max // 3)


class _RecordingEnviron(os._Environ):
    def __getitem__(self, key: str) -> str:
        _note_env(f"environment read {key!r}")
        return super().__getitem__(key)

    def __iter__(self):
        _note_env("environment listed")
        return super().__iter__()


class _RecordingDict(dict):
    """Stands in for `posix.environ`, which `os.environ` copied at start-up."""

    def __getitem__(self, key: Any) -> Any:
        _note_env(f"environment read {key!r}")
        return super().__getitem__(key)

    def __iter__(self):
        _note_env("environment listed")
        return super().__iter__()


_env_monitor: list[Monitor] = []


def _note_env(evidence: str) -> None:
    if _env_monitor and _env_monitor[0].by_untrusted(3):
        _env_monitor[0].flag("io_access", evidence)


def install(monitor: Monitor) -> None:
    """Hooks that live for the rest of the child's life (audit hooks cannot be removed)."""
    monitor.on_gpu = torch.cuda.is_available()
    sys.addaudithook(monitor.audit)
    _env_monitor[:] = [monitor]
    os.environ.__class__ = _RecordingEnviron
    posix.environ = _RecordingDict(posix.environ)
    _hook_threads(monitor)
    _hook_host_compute(monitor)
    _hook_dispatch_escapes(monitor)
    _hook_launches(monitor)
    _first_autotune_config_only_without_gpu()
    _hook_interpreter_casts(monitor)


def _hook_threads(monitor: Monitor) -> None:
    start = threading.Thread.start
    start_new = _thread.start_new_thread

    def checked_start(self: threading.Thread) -> None:
        if monitor.unguarded(2):
            monitor.flag("background_work", f"started thread {self.name}")
        start(self)

    def checked_start_new(*args: Any, **kwargs: Any) -> Any:
        if monitor.unguarded(2):
            monitor.flag("background_work", "started a raw thread")
        return start_new(*args, **kwargs)

    threading.Thread.start = checked_start  # type: ignore[method-assign]
    _thread.start_new_thread = checked_start_new


def _hook_host_compute(monitor: Monitor) -> None:
    """Tensor methods that hand data to Python or numpy: work outside Triton and torch."""
    for name in _HOST_COMPUTE:
        setattr(torch.Tensor, name, _watched(monitor, name, getattr(torch.Tensor, name)))


def _watched(monitor: Monitor, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    def watched(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if monitor.by_untrusted(2):
            monitor.flag("framework_compute", f"computed on the host through Tensor.{name}")
        return method(self, *args, **kwargs)

    return watched


_DISPATCH_ESCAPES = {
    "torch.utils._python_dispatch": ("_disable_current_modes", "_pop_mode",
                                     "_pop_mode_temporarily", "_disable_infra_mode",
                                     "_get_current_dispatch_mode",
                                     "_get_current_dispatch_mode_stack"),
    "torch._C": ("_pop_torch_dispatch_stack", "_unset_dispatch_mode", "_DisableTorchDispatch",
                 "_get_dispatch_mode", "_set_dispatch_mode", "_push_on_torch_dispatch_stack",
                 "_DisablePythonDispatcher", "_disabled_torch_dispatch_impl",
                 "_get_dispatch_stack_at", "_get_current_dispatch_mode",
                 "_get_current_dispatch_mode_stack", "_len_torch_dispatch_stack",
                 "_dispatch_library"),
    "torch.library": ("Library", "impl", "define", "custom_op", "register_kernel",
                      "register_fake", "register_autograd", "register_torch_dispatch"),
    "torch.utils.dlpack": ("to_dlpack", "from_dlpack"),
}


def _hook_dispatch_escapes(monitor: Monitor) -> None:
    """Ways to step outside the op tracer: torch itself may use them, the candidate may not."""
    import torch.library
    import torch.utils.dlpack  # noqa: F401

    for module_name, names in _DISPATCH_ESCAPES.items():
        module = sys.modules[module_name]
        for name in names:
            if hasattr(module, name):
                setattr(module, name, _refused(monitor, name, getattr(module, name)))


def _refused(monitor: Monitor, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if monitor.by_untrusted(2):
            monitor.refuse("patching", f"{name}: stepping outside the judge's op tracing")
        return fn(*args, **kwargs)

    return guarded


def _hook_launches(monitor: Monitor) -> None:
    from triton.runtime import interpreter, jit

    for cls in (interpreter.InterpretedFunction, jit.JITFunction):
        original = cls.run

        def run(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            if not monitor.on_launch(self, args, kwargs):
                return None
            tracer = _TRACERS[-1] if _TRACERS and monitor.launches[-1].own else None
            if tracer is not None and not tracer.follow_kernels:
                tracer = None
            if tracer is not None:
                tracer.before_launch(tensors_in((args, kwargs)))
            try:
                result = _original(self, *args, **kwargs)
            except BaseException as exc:
                monitor.launches[-1].raised = type(exc).__name__
                raise
            if tracer is not None:
                tracer.after_launch()
            return result

        cls.run = run
    _hook_grid_executor(monitor)


def _hook_grid_executor(monitor: Monitor) -> None:
    """The interpreter's executor runs a kernel without `run`, so without the launch checks
    (arguments, the GPU compile): only Triton may call it."""
    from triton.runtime import interpreter

    execute = interpreter.GridExecutor.__call__

    def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
        if monitor.by_untrusted(2):
            monitor.refuse("sandbox_escape", "ran a kernel through the interpreter's executor, "
                           "around the judge's launch checks")
        with _unwatched(), _unwatched_dispatch():
            return execute(self, *args, **kwargs)

    interpreter.GridExecutor.__call__ = guarded


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


def _hook_interpreter_casts(monitor: Monitor) -> None:
    """In the interpreter, every in-kernel cast goes through these two builder methods."""
    if torch.cuda.is_available():
        return
    import triton.language as tl
    from triton.runtime.interpreter import InterpreterBuilder

    full, low = (tl.float32, tl.float64), (tl.float16, tl.bfloat16)

    def watched(method: Callable[..., Any]) -> Callable[..., Any]:
        def cast(self: Any, src: Any, dst_type: Any, *args: Any) -> Any:
            if monitor.active and src.dtype.scalar in full and dst_type.scalar in low \
                    and not _lossless(src.data, dst_type.scalar):
                note = f"kernel cast {src.dtype.scalar} -> {dst_type.scalar}"
                if note not in monitor.kernel_downcasts:
                    monitor.kernel_downcasts.append(note)
            return method(self, src, dst_type, *args)

        return cast

    InterpreterBuilder.cast_impl = watched(InterpreterBuilder.cast_impl)
    InterpreterBuilder.create_fp_to_fp = watched(InterpreterBuilder.create_fp_to_fp)


def _lossless(data: Any, dst: Any) -> bool:
    """Whether casting these values loses nothing (e.g. a load's `other=0.0` made fp16)."""
    try:
        t = torch.from_numpy(np.asarray(data, dtype=np.float64))
    except (TypeError, ValueError):
        return False
    low = torch.float16 if str(dst) == "fp16" else torch.bfloat16
    back = t.to(low).to(torch.float64)
    return bool(torch.equal(back, t) | (back.isnan() & t.isnan()).all())


def snapshot() -> dict[tuple[str, str], Any]:
    """The callables a candidate could patch to fool the judge, by (namespace, name): the
    objects themselves, since `id` raises an audit event and thousands of them cost the hook
    milliseconds."""
    import builtins

    spaces: dict[str, Any] = {
        "torch": torch, "torch.Tensor": torch.Tensor, "torch.nn.functional": torch.nn.functional,
        "torch.testing": torch.testing, "torch.cuda": torch.cuda, "torch.cuda.Event":
        torch.cuda.Event, "time": time, "builtins": builtins, "triton": triton,
        "torch.nn.Module": torch.nn.Module, "os": os, "sys": sys,
    }
    if "triton.testing" in sys.modules:
        spaces["triton.testing"] = sys.modules["triton.testing"]
    from triton.runtime import autotuner, interpreter, jit

    for cls in (TorchDispatchMode, jit.JITFunction, interpreter.InterpretedFunction,
                autotuner.Autotuner, threading.Thread):
        spaces[f"{cls.__module__}.{cls.__qualname__}"] = cls
    for name, module in list(sys.modules.items()):
        if name.startswith("evaluator.") and module is not None:
            spaces[name] = module
            for value in list(vars(module).values()):
                if isinstance(value, type) and value.__module__ == name:
                    spaces[f"{name}.{value.__qualname__}"] = value
    found: dict[tuple[str, str], Any] = {}
    for prefix, space in spaces.items():
        for key, value in list(vars(space).items()):
            if callable(value) or isinstance(value, types.ModuleType):
                found[prefix, key] = value
    return found


_MUTABLE = frozenset({"os.environ", "sys.stdout", "sys.stderr", "sys.stdin"})


def patched(before: dict[tuple[str, str], Any], after: dict[tuple[str, str], Any]) -> list[str]:
    names = (f"{space}.{name}" for (space, name), v in before.items()
             if after.get((space, name)) is not v)
    return sorted(n for n in names if n not in _MUTABLE)
