"""Compile interpreted Triton kernels for a real GPU target, on the CPU.

The interpreter runs any Python inside a kernel (numpy, plain helpers); the GPU compiler
does not. Every kernel the candidate launches on cpu is therefore also compiled, with the
signature and constexprs of that launch, to TTIR, PTX and a cubin for `sm_90`: a kernel the
compiler rejects fails as it would on a GPU, and what ptxas reports (registers, spills) and
the shared memory the kernel needs go into the profile.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import hashlib
import io
import os
import re
import resource
import subprocess
import sys
import tempfile
import types
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import triton.language.extra.cuda.libdevice  # noqa: F401  (its functions as imported)
from triton import knobs
from triton._C.libtriton import ir
from triton.backends.compiler import GPUTarget
from triton.backends.nvidia.compiler import get_ptxas, sm_arch_from_capability
from triton.compiler.compiler import ASTSource, make_backend
from triton.runtime.interpreter import InterpretedFunction
from triton.runtime.jit import JITFunction, create_function_from_signature

TARGET = GPUTarget("cuda", 90, 32)
_NOBODY = 65534
_CLONE_NEWUSER, _CLONE_NEWNET = 0x10000000, 0x40000000
_PTXAS_MEMORY_BYTES = 4 << 30
_PTXAS_OUTPUT_BYTES = 256 << 20
"""sm_90 (H100), the GPU KernelGYM and Dr.Kernel were measured on."""

_LAUNCH_ONLY = ("grid", "warmup")
_REGISTERS = re.compile(r"Used (\d+) registers")
_SPILLS = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")


@dataclass(frozen=True)
class KernelStats:
    """What the GPU compiler reported for one kernel specialisation."""

    name: str
    registers: int | None
    spill_bytes: int | None
    shared_bytes: int
    num_warps: int
    ptx: str = ""
    """The PTX, kept where ptxas is left to the worker (`assemble`)."""


class GpuCompileError(Exception):
    """The GPU compiler rejected a kernel that the interpreter ran."""


class GpuCompiler:
    """Compiles each (kernel, specialisation) once per child and remembers the outcome."""

    def __init__(self, assemble_here: bool = True) -> None:
        self.assemble_here = assemble_here
        """Run ptxas in this process; a cpu child may start no process, and leaves it to the
        worker (the PTX comes back in the stats)."""
        self.backend = make_backend(TARGET)
        self._twins: dict[int, tuple[InterpretedFunction[Any], JITFunction[Any]]] = {}
        """By id of the interpreted kernel, which is held here so that its id stays its own."""
        self._binders: dict[int, Any] = {}
        self._done: dict[tuple[int, str], KernelStats | GpuCompileError] = {}
        self.stats: list[KernelStats] = []
        self.unavailable = ""
        """Why cubins (and so register counts) could not be made here, if they could not."""

    def check(self, kernel: InterpretedFunction[Any], args: tuple[Any, ...],
              kwargs: dict[str, Any]) -> KernelStats:
        """Compile `kernel` as launched with `args`/`kwargs`; raise GpuCompileError if the
        compiler rejects it."""
        try:
            twin = self._twin(kernel)
        except (OSError, TypeError, ValueError) as exc:  # no source: the interpreter needs it too
            raise GpuCompileError(f"{kernel.__name__} cannot be compiled: {exc}") from exc
        kwargs = {k: v for k, v in kwargs.items() if k not in _LAUNCH_ONLY}
        binder = self._binders.get(id(kernel))
        if binder is None:
            binder = self._binders[id(kernel)] = create_function_from_signature(
                twin.signature, twin.params, self.backend)
        bound, specialization, options = binder(*args, **kwargs)
        options, signature, constexprs, attrs = twin._pack_args(
            self.backend, kwargs, bound, specialization, options)
        key = (id(kernel), repr((signature, sorted(constexprs.items()), sorted(attrs.items()),
                                 sorted(options.__dict__.items()))))
        outcome = self._done.get(key)
        if outcome is None:
            outcome = self._done[key] = self._compile(twin, signature, constexprs, attrs,
                                                      options)
            if isinstance(outcome, KernelStats):
                self.stats.append(outcome)
        if isinstance(outcome, GpuCompileError):
            raise outcome
        return outcome

    def _twin(self, kernel: InterpretedFunction[Any]) -> JITFunction[Any]:
        """A JITFunction of the same Python function, its jit callees made JITFunctions too."""
        held = self._twins.get(id(kernel))
        if held is None:
            fn = kernel.fn
            scope = dict(fn.__globals__)
            twin = JITFunction(_rebound(fn, scope), **kernel.kwargs)
            self._twins[id(kernel)] = (kernel, twin)
            replaced = _replaced()
            for name, value in scope.items():
                if isinstance(value, InterpretedFunction):
                    scope[name] = self._twin(value)
                elif id(value) in replaced:
                    scope[name] = replaced[id(value)]
            return twin
        return held[1]

    def _compile(self, twin: JITFunction[Any], signature: dict[str, str],
                 constexprs: dict[Any, Any], attrs: dict[Any, Any],
                 options: Any) -> KernelStats | GpuCompileError:
        try:
            with _library_compiled():
                ptx, metadata, make_cubin = self._ptx(twin, signature, constexprs, attrs, options)
        except Exception as exc:  # whatever the compiler raises, it raises on a GPU too
            return GpuCompileError(_message(twin, exc))
        if not self.assemble_here:
            return dataclasses.replace(_stats(twin, metadata, ""), ptx=str(ptx)[:MAX_PTX_CHARS])
        return self._cubin(twin, make_cubin, ptx, metadata)

    def _ptx(self, twin: JITFunction[Any], signature: dict[str, str],
             constexprs: dict[Any, Any], attrs: dict[Any, Any],
             options: Any) -> tuple[Any, dict[str, Any], Any]:
        """Triton's own pipeline (`triton.compile`) up to the PTX, without its disk cache, and
        without line info: it names the run's scratch directory, so the same kernel would
        give other PTX in every run."""
        with knobs.compilation.scope():
            knobs.compilation.disable_line_info = True
            return self._stages(twin, signature, constexprs, attrs, options)

    def _stages(self, twin: JITFunction[Any], signature: dict[str, str],
                constexprs: dict[Any, Any], attrs: dict[Any, Any],
                options: Any) -> tuple[Any, dict[str, Any], Any]:
        src = ASTSource(twin, signature, constexprs, attrs)
        metadata: dict[str, Any] = {"hash": "", "target": TARGET, **options.__dict__}
        stages: dict[str, Any] = {}
        self.backend.add_stages(stages, options, src.language)
        context = ir.context()
        ir.load_dialects(context)
        self.backend.load_dialects(context)
        module = src.make_ir(TARGET, options, self.backend.get_codegen_implementation(options),
                             self.backend.get_module_map(), context)
        for ext, stage in stages.items():
            if ext == "cubin":
                return module, metadata, stage
            module = stage(module, metadata)
        raise RuntimeError(f"no cubin stage for {TARGET}")

    def _cubin(self, twin: JITFunction[Any], make_cubin: Any, ptx: Any,
               metadata: dict[str, Any]) -> KernelStats | GpuCompileError:
        """ptxas, in a process of its own: the only stage that needs one. Where no process
        may be started, the PTX stands and the register counts are missing."""
        log = io.StringIO()
        try:
            with _printed_to(log), _ptxas_log():
                make_cubin(ptx, metadata)
        except OSError as exc:
            self.unavailable = f"ptxas could not run: {exc}"
            return _stats(twin, metadata, "")
        except RuntimeError as exc:  # PTXASError: ptxas rejected the PTX
            return GpuCompileError(_message(twin, exc))
        return _stats(twin, metadata, log.getvalue())


def _library_modules() -> dict[str, types.ModuleType]:
    return {name: module for name, module in list(sys.modules.items())
            if name.startswith("triton.language") and isinstance(module, types.ModuleType)}


_PRISTINE = {(module_name, name): value for module_name, module in _library_modules().items()
             for name, value in list(vars(module).items()) if callable(value)}
"""Triton's language as imported, before anything in a child (the interpreter's setup, the
cpu judge's libdevice emulation) replaced parts of it."""
_FOR_COMPILER: dict[tuple[str, str], Any] = {}


def _compiler_view() -> dict[tuple[str, str], Any]:
    """What the GPU compiler must see in Triton's language modules: the imported functions,
    with the jit ones (`tl.zeros`, `tl.softmax`), made interpreted at import, as JITFunctions."""
    if not _FOR_COMPILER:
        for key, value in _PRISTINE.items():
            _FOR_COMPILER[key] = JITFunction(value.fn, **value.kwargs) \
                if isinstance(value, InterpretedFunction) else value
    return _FOR_COMPILER


def _replaced() -> dict[int, Any]:
    """Library functions replaced since import, by id, mapped to what the compiler needs."""
    view, modules = _compiler_view(), _library_modules()
    return {id(current): view[key] for key in view
            if (current := getattr(modules.get(key[0]), key[1], None)) is not view[key]
            and current is not None}


@contextlib.contextmanager
def _library_compiled() -> Iterator[None]:
    """Put the compiler's view of Triton's language in place for one compile, and back."""
    modules, saved = _library_modules(), {}
    for (module_name, name), value in _compiler_view().items():
        module = modules.get(module_name)
        current = getattr(module, name, None)
        if module is not None and current is not value:
            saved[module_name, name] = current
            setattr(module, name, value)
    try:
        yield
    finally:
        for (module_name, name), value in saved.items():
            setattr(modules[module_name], name, value)


MAX_PTX_CHARS = 1 << 19


def assemble(ptx: str, timeout_s: float = 60.0) -> tuple[int | None, int | None]:
    """Registers and spilled bytes ptxas reports for `ptx` (None, None if it fails)."""
    return assemble_all([ptx], timeout_s)[0]


def assemble_all(ptxs: list[str], timeout_s: float = 60.0) -> list[tuple[int | None, int | None]]:
    """`assemble` for several kernels, their ptxas processes side by side; what ptxas
    reported for the same PTX before is remembered (resubmitted and shared kernels)."""
    keys = [hashlib.sha256(ptx.encode()).hexdigest() for ptx in ptxs]
    todo = {key: ptx for key, ptx in zip(keys, ptxs, strict=True) if key not in _ASSEMBLED}
    for key, counts in zip(todo, _run_ptxas(list(todo.values()), timeout_s), strict=True):
        if counts != (None, None):
            _ASSEMBLED[key] = counts
    while len(_ASSEMBLED) > _ASSEMBLED_KEPT:
        _ASSEMBLED.popitem(last=False)
    return [_ASSEMBLED.get(key, (None, None)) for key in keys]


_ASSEMBLED: OrderedDict[str, tuple[int | None, int | None]] = OrderedDict()
_ASSEMBLED_KEPT = 512


def _run_ptxas(ptxs: list[str], timeout_s: float) -> list[tuple[int | None, int | None]]:
    """ptxas on each PTX, side by side. The PTX is the compiler's output for a candidate's
    kernels: data for ptxas, run without a shell."""
    if not ptxs:
        return []
    ptxas = get_ptxas(TARGET.arch).path
    arch = f"--gpu-name={sm_arch_from_capability(TARGET.arch)}"
    nobody = _NOBODY if os.geteuid() == 0 else None
    with tempfile.TemporaryDirectory(prefix="drkernel-ptxas-") as tmp:
        if nobody is not None:
            os.chown(tmp, nobody, nobody)
        running: list[subprocess.Popen[str] | None] = []
        for i, ptx in enumerate(ptxs):
            src = os.path.join(tmp, f"k{i}.ptx")
            with open(src, "w", encoding="utf-8") as f:
                f.write(ptx)
            try:
                running.append(subprocess.Popen(
                    [ptxas, "-v", arch, src, "-o", os.path.join(tmp, f"k{i}.cubin")],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                    stdin=subprocess.DEVNULL, close_fds=True, start_new_session=True,
                    env={"PATH": "/usr/bin:/bin"}, cwd=tmp, preexec_fn=_confine_ptxas,
                    user=nobody, group=nobody, extra_groups=None if nobody is None else []))
            except OSError:
                running.append(None)
        return [_finish(proc, timeout_s) for proc in running]


def _confine_ptxas() -> None:
    """In ptxas's child before exec (PTX from a candidate's process is its input): no
    network, no privileges, bounded memory, CPU time and output."""
    for limit, value in ((resource.RLIMIT_AS, _PTXAS_MEMORY_BYTES), (resource.RLIMIT_CPU, 120),
                         (resource.RLIMIT_FSIZE, _PTXAS_OUTPUT_BYTES), (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(limit, (value, value))
    ctypes.CDLL(None, use_errno=True).unshare(_CLONE_NEWUSER | _CLONE_NEWNET)


def _finish(proc: subprocess.Popen[str] | None,
            timeout_s: float) -> tuple[int | None, int | None]:
    if proc is None:
        return None, None
    try:
        _, log = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None, None
    return _stats_from_log(log) if proc.returncode == 0 else (None, None)


def _stats_from_log(log: str) -> tuple[int | None, int | None]:
    registers = [int(n) for n in _REGISTERS.findall(log)]
    spills = [int(a) + int(b) for a, b in _SPILLS.findall(log)]
    return (max(registers) if registers else None, max(spills) if spills else None)


def _rebound(fn: types.FunctionType, scope: dict[str, Any]) -> types.FunctionType:
    """`fn` with its globals read from `scope` (where jit callees are being replaced)."""
    twin = types.FunctionType(fn.__code__, scope, fn.__name__, fn.__defaults__, fn.__closure__)
    twin.__kwdefaults__, twin.__annotations__ = fn.__kwdefaults__, fn.__annotations__
    twin.__module__, twin.__qualname__, twin.__doc__ = fn.__module__, fn.__qualname__, fn.__doc__
    return twin


def _stats(twin: JITFunction[Any], metadata: dict[str, Any], log: str) -> KernelStats:
    registers, spills = _stats_from_log(log)
    return KernelStats(name=twin.fn.__name__, registers=registers, spill_bytes=spills,
                       shared_bytes=int(metadata.get("shared", 0)),
                       num_warps=int(metadata.get("num_warps", 0)))


def _message(twin: JITFunction[Any], exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return f"{twin.fn.__name__} does not compile for {TARGET.backend} sm_{TARGET.arch}: {text}"


@contextlib.contextmanager
def _printed_to(buffer: io.StringIO) -> Iterator[None]:
    saved = sys.stdout
    sys.stdout = buffer
    try:
        yield
    finally:
        sys.stdout = saved


@contextlib.contextmanager
def _ptxas_log() -> Iterator[None]:
    saved = knobs.nvidia.dump_ptxas_log
    knobs.nvidia.dump_ptxas_log = True
    try:
        yield
    finally:
        knobs.nvidia.dump_ptxas_log = saved


def warm_up(kernel: InterpretedFunction[Any], args: tuple[Any, ...],
            kwargs: dict[str, Any]) -> None:
    """Pay the compiler's one-off costs (backend, dialects, Triton's own jit functions) in
    the worker, before it forks children."""
    GpuCompiler().check(kernel, args, kwargs)
