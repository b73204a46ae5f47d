"""Code written for CUDA runs its CUDA path on a cpu judge, inside the child process only.

Public Triton code branches on `x.is_cuda`, calls `.cuda()`, allocates with `device="cuda"`
and asks `torch.cuda` about the device. On a cpu judge such code would take a torch fallback
(which the judge rightly calls a decoy) or stop with "Torch not compiled with CUDA enabled".
`install()` makes the child look like a one-GPU machine to the problem's and candidate's
code while every tensor stays on the host and Triton's interpreter runs the kernels:

- a torch-function mode maps CUDA devices in torch calls to the CPU, and answers
  `is_cuda`, `device` and `get_device()` as a GPU would, to the problem's and candidate's own
  frames only (torch, Triton and the judge still see the truth);
- `torch.cuda`'s device queries, synchronisation, streams and events behave as on one GPU,
  with one synchronous queue; side-stream work that nothing waits for is reported, since on
  a GPU its output would be read while it may still run;
- `tl.extra.libdevice`'s common math functions run under the interpreter (numpy);
- what cannot run without a GPU (inline PTX, other libdevice functions, CUDA extensions)
  raises `GpuRequired`, whose message names it.

The worker calls `install()` in each cpu child after the monitor's hooks and before any
untrusted code loads, so the emulation is part of the judge's identity baseline.
"""

from __future__ import annotations

import linecache
import math
import sys
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from evaluator.monitor import origin

DEVICE_NAME = "Triton interpreter (CUDA emulated on CPU)"
CAPABILITY = (8, 0)


class GpuRequired(RuntimeError):
    """The code needs a real GPU: the interpreter cannot run it."""


def _untrusted_caller(depth: int) -> bool:
    return origin(sys._getframe(depth + 1).f_code.co_filename) == "untrusted"


_host = ["cpu"]


@contextmanager
def placed_on(device: str) -> Iterator[None]:
    """Where CUDA allocations go meanwhile (the meta device, to size a problem up)."""
    _host.append(device)
    try:
        yield
    finally:
        _host.pop()


def _host_device(device: Any) -> Any:
    """CUDA device specifications become the host; anything else is left as it is."""
    if isinstance(device, torch.device):
        return torch.device(_host[-1]) if device.type == "cuda" else device
    if isinstance(device, str):
        return _host[-1] if device.split(":")[0] == "cuda" else device
    if isinstance(device, int) and not isinstance(device, bool):
        return _host[-1]  # a bare index means a CUDA device
    return device


_TensorBase = torch._C.TensorBase
_GETTERS: dict[Any, Callable[[Any], Any]] = {
    _TensorBase.__dict__["is_cuda"]: lambda real: real or True,
    _TensorBase.__dict__["is_cpu"]: lambda real: False,
    _TensorBase.__dict__["device"]: lambda real: torch.device("cuda", 0)
    if real.type == "cpu" else real,
}
_SAME_TENSOR = frozenset({_TensorBase.cuda, _TensorBase.pin_memory})
_NO_OP = frozenset({_TensorBase.record_stream})


class _CudaOnHost(TorchFunctionMode):
    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = dict(kwargs or {})
        getter = _GETTERS.get(getattr(func, "__self__", None))
        if getter is not None:
            real = func(*args, **kwargs)
            return getter(real) if _untrusted_caller(1) else real
        if func is _TensorBase.get_device and _untrusted_caller(1):
            return 0
        if func in _SAME_TENSOR:
            return args[0]
        if func in _NO_OP:
            return None
        if "device" in kwargs:
            kwargs["device"] = _host_device(kwargs["device"])
        if kwargs.get("pin_memory"):
            kwargs["pin_memory"] = False
        if func is _TensorBase.to:
            args = (args[0], *(_host_device(a) for a in args[1:]))
        elif func is _TensorBase.type and len(args) > 1 and isinstance(args[1], str):
            args = (args[0], args[1].replace(".cuda.", "."), *args[2:])
        return func(*args, **kwargs)


# ---------------------------------------------------------------- torch.cuda on one GPU


@dataclass(frozen=True)
class DeviceProperties:
    name: str = DEVICE_NAME
    major: int = CAPABILITY[0]
    minor: int = CAPABILITY[1]
    total_memory: int = 80 << 30
    multi_processor_count: int = 108
    warp_size: int = 32
    max_threads_per_multi_processor: int = 2048
    regs_per_multiprocessor: int = 65536
    L2_cache_size: int = 40 << 20
    is_integrated: bool = False
    is_multi_gpu_board: bool = False


class Event:
    """A CUDA event on a synchronous device: recorded when asked, always complete."""

    def __init__(self, enable_timing: bool = False, blocking: bool = False,
                 interprocess: bool = False) -> None:
        self.enable_timing = enable_timing
        self.at: float | None = None
        self.stream: Stream | None = None
        self.mark = 0

    def record(self, stream: Any = None) -> None:
        self.at = time.perf_counter()
        self.stream = stream if isinstance(stream, Stream) else _current[-1]
        self.mark = self.stream.issued

    def wait(self, stream: Any = None) -> None:
        if self.stream is not None:
            _join(self.stream, self.mark, stream if isinstance(stream, Stream) else _current[-1])

    def query(self) -> bool:
        return True

    def synchronize(self) -> None:
        if self.stream is not None:
            _join(self.stream, self.mark, None)

    def elapsed_time(self, end_event: Event) -> float:
        if self.at is None or end_event.at is None:
            raise RuntimeError("elapsed_time: both events must be recorded first")
        return (end_event.at - self.at) * 1000.0


class Stream:
    """A CUDA stream on a synchronous device: work runs when issued, in order. What a GPU
    would leave unordered is still tracked: each use of a side stream counts as work issued,
    and the work counts as joined once the host, another stream or an event waited for it."""

    def __init__(self, device: Any = None, priority: int = 0, **_: Any) -> None:
        self.device = torch.device("cuda", 0)
        self.priority = priority
        self.cuda_stream = id(self)
        self.issued = self.joined = 0
        _streams.add(self)

    def query(self) -> bool:
        return True

    def synchronize(self) -> None:
        _join(self, self.issued, None)

    def wait_stream(self, stream: Any) -> None:
        if isinstance(stream, Stream):
            _join(stream, stream.issued, self)

    def wait_event(self, event: Any) -> None:
        if isinstance(event, Event):
            event.wait(self)

    def record_event(self, event: Event | None = None) -> Event:
        event = event or Event()
        event.record(self)
        return event

    def __enter__(self) -> Stream:
        _current.append(self)
        self.use()
        return self

    def __exit__(self, *exc: object) -> None:
        _current.pop()

    def use(self) -> None:
        if self is not _default:
            self.issued += 1


def _join(source: Stream, upto: int, into: Stream | None) -> None:
    """`into` (the host if None) waits for `source`'s work up to `upto`; waiting on a side
    stream makes that stream's later work depend on it, so it must be joined in turn."""
    if upto > source.joined:
        source.joined = upto
        if into is not None:
            into.use()


def unjoined() -> bool:
    """Whether work issued on a side stream was left without anything waiting for it (on a
    GPU, whatever reads its results races it); forgets that work."""
    left = [s for s in _streams if s.issued > s.joined]
    for stream in left:
        stream.joined = stream.issued
    return bool(left)


def _synchronize(device: Any = None) -> None:
    for stream in _streams:
        stream.synchronize()


_streams: weakref.WeakSet[Stream] = weakref.WeakSet()
_default = Stream()
_current: list[Stream] = [_default]


@contextmanager
def _stream(stream: Stream | None) -> Iterator[Stream | None]:
    if stream is None:
        yield None
        return
    with stream:
        yield stream


class _Device:
    """`torch.cuda.device(...)` / `device_of(...)`: there is one device, already current."""

    def __init__(self, device: Any = None) -> None:
        self.idx = 0

    def __enter__(self) -> _Device:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _set_stream(stream: Stream) -> None:
    _current[-1:] = [stream]
    stream.use()


def _cuda_api() -> dict[str, Any]:
    props = DeviceProperties()
    return {
        "is_available": lambda: True, "is_initialized": lambda: True, "init": lambda: None,
        "device_count": lambda: 1, "current_device": lambda: 0,
        "set_device": lambda device: None,
        "get_device_name": lambda device=None: DEVICE_NAME,
        "get_device_capability": lambda device=None: CAPABILITY,
        "get_device_properties": lambda device=None: props,
        "is_bf16_supported": lambda including_emulation=True: True,
        "synchronize": _synchronize, "empty_cache": lambda: None,
        "ipc_collect": lambda: None,
        "manual_seed": lambda seed: None, "manual_seed_all": lambda seed: None,
        "seed": lambda: None, "seed_all": lambda: None,
        "memory_allocated": lambda device=None: 0, "max_memory_allocated": lambda device=None: 0,
        "memory_reserved": lambda device=None: 0, "max_memory_reserved": lambda device=None: 0,
        "reset_peak_memory_stats": lambda device=None: None,
        "mem_get_info": lambda device=None: (props.total_memory, props.total_memory),
        "Stream": Stream, "Event": Event, "device": _Device, "device_of": _Device,
        "stream": _stream, "set_stream": _set_stream,
        "current_stream": lambda device=None: _current[-1],
        "default_stream": lambda device=None: _default,
    }


# ---------------------------------------------------------------- libdevice under the interpreter


def _erf(x: np.ndarray) -> np.ndarray:
    return np.frompyfunc(math.erf, 1, 1)(x).astype(np.float64)


def _round_half_away(x: np.ndarray) -> np.ndarray:
    return np.copysign(np.floor(np.abs(x) + 0.5), x)


def _divide(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.divide(x, y)


_UNARY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "tanh": np.tanh, "exp": np.exp, "exp2": np.exp2, "expm1": np.expm1, "log": np.log,
    "log2": np.log2, "log10": np.log10, "log1p": np.log1p, "sqrt": np.sqrt,
    "rsqrt": lambda x: 1.0 / np.sqrt(x), "sin": np.sin, "cos": np.cos, "tan": np.tan,
    "asin": np.arcsin, "acos": np.arccos, "atan": np.arctan, "sinh": np.sinh,
    "cosh": np.cosh, "asinh": np.arcsinh, "acosh": np.arccosh, "atanh": np.arctanh,
    "abs": np.abs, "floor": np.floor, "ceil": np.ceil, "trunc": np.trunc, "rint": np.rint,
    "nearbyint": np.rint, "round": _round_half_away, "cbrt": np.cbrt,
    "rcbrt": lambda x: 1.0 / np.cbrt(x), "erf": _erf, "erfc": lambda x: 1.0 - _erf(x),
    "exp10": lambda x: np.power(10.0, x), "rcp_rn": lambda x: 1.0 / x,
    "saturatef": lambda x: np.clip(x, 0.0, 1.0), "sinpi": lambda x: np.sin(np.pi * x),
    "cospi": lambda x: np.cos(np.pi * x),
    "normcdf": lambda x: 0.5 * (1.0 - _erf(-x / math.sqrt(2.0))),
    "fast_expf": np.exp, "fast_logf": np.log, "fast_log2f": np.log2,
    "fast_log10f": np.log10, "fast_sinf": np.sin, "fast_cosf": np.cos, "fast_tanf": np.tan,
    "fast_exp10f": lambda x: np.power(10.0, x),
}
for _mode in ("rn", "rz", "rd", "ru"):
    _UNARY[f"sqrt_{_mode}"] = np.sqrt
_BINARY: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "pow": np.power, "powf": np.power, "fast_powf": np.power, "atan2": np.arctan2,
    "fmod": np.fmod, "hypot": np.hypot, "rhypot": lambda x, y: 1.0 / np.hypot(x, y),
    "copysign": np.copysign, "fdim": lambda x, y: np.maximum(x - y, 0.0),
    "nextafter": np.nextafter, "fast_dividef": _divide, "fmax": np.fmax, "fmin": np.fmin,
}
for _mode in ("rn", "rz", "rd", "ru"):
    _BINARY[f"div_{_mode}"] = _divide
    _BINARY[f"add_{_mode}"] = np.add
    _BINARY[f"sub_{_mode}"] = np.subtract
    _BINARY[f"mul_{_mode}"] = np.multiply
_PREDICATES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "isnan": np.isnan, "isinf": np.isinf, "finitef": np.isfinite, "isfinited": np.isfinite,
    "signbit": np.signbit,
}


def _fma(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    return x * y + z


def _libdevice_table() -> dict[str, tuple[Callable[..., np.ndarray], bool]]:
    """name -> (numpy function, whether it returns an int32 predicate)."""
    table: dict[str, tuple[Callable[..., np.ndarray], bool]] = {}
    table.update({k: (f, False) for k, f in _UNARY.items()})
    table.update({k: (f, False) for k, f in _BINARY.items()})
    table.update({k: (f, True) for k, f in _PREDICATES.items()})
    table.update({f"fma{m}": (_fma, False) for m in ("", "_rn", "_rz", "_rd", "_ru")})
    return table


def _interpreted(name: str, fn: Callable[..., np.ndarray], predicate: bool) -> Callable[..., Any]:
    def libdevice_fn(*args: Any, **_: Any) -> Any:
        import triton.language as tl
        from triton.runtime.interpreter import TensorHandle, _get_np_dtype

        tensors = [a for a in args if isinstance(a, tl.tensor)]
        if not tensors:
            raise GpuRequired(f"tl.extra.libdevice.{name} needs a tensor argument")
        floats = [t.dtype for t in tensors if t.dtype.is_floating()]
        dtype = tl.int32 if predicate else (floats[0] if floats else tensors[0].dtype)
        data = [a.handle.data if isinstance(a, tl.tensor) else getattr(a, "value", a)
                for a in args]
        with np.errstate(all="ignore"):
            value = np.asarray(fn(*data)).astype(_get_np_dtype(dtype))
        block = any(t.type.is_block() for t in tensors)
        ty = tl.block_type(dtype, list(value.shape)) if block else dtype
        return tl.tensor(TensorHandle(value, dtype), ty)

    libdevice_fn.__name__ = name
    return libdevice_fn


def _needs_gpu(name: str) -> Callable[..., Any]:
    def libdevice_fn(*args: Any, **kwargs: Any) -> Any:
        raise GpuRequired(f"tl.extra.libdevice.{name} needs a GPU: it has no implementation "
                          "under the Triton interpreter (the cpu judge)")

    libdevice_fn.__name__ = name
    return libdevice_fn


def _install_libdevice() -> None:
    import triton.language.extra.cuda.libdevice as cuda_libdevice
    import triton.language.extra.libdevice as libdevice

    table = _libdevice_table()
    for module in (libdevice, cuda_libdevice):
        for name, value in list(vars(module).items()):
            if name.startswith("_") or not callable(value) or isinstance(value, type):
                continue
            if getattr(value, "__module__", None) != module.__name__ \
                    and not hasattr(value, "__triton_builtin__"):
                continue  # something the module imported, not a libdevice function
            spec = table.get(name)
            setattr(module, name, _interpreted(name, *spec) if spec else _needs_gpu(name))


def _install_gpu_only_refusals() -> None:
    from triton.runtime.interpreter import InterpreterBuilder

    def inline_asm(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise GpuRequired("inline assembly (tl.inline_asm_elementwise, PTX) needs a GPU: the "
                          "Triton interpreter of the cpu judge cannot run it")

    def extern(self: Any, lib_name: str, lib_path: str, symbol: str, *args: Any) -> Any:
        raise GpuRequired(f"the external function {symbol} ({lib_name}) needs a GPU: the "
                          "Triton interpreter of the cpu judge cannot run it")

    InterpreterBuilder.create_inline_asm = inline_asm
    InterpreterBuilder.create_extern_elementwise = extern
    import torch.utils.cpp_extension as cpp_extension

    for name in ("load_inline", "load"):
        setattr(cpp_extension, name, _cuda_extension_refusal(name, getattr(cpp_extension, name)))


def _cuda_extension_refusal(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    def build(*args: Any, **kwargs: Any) -> Any:
        sources = kwargs.get("sources", args[1] if len(args) > 1 else [])
        sources = [sources] if isinstance(sources, str) else list(sources or [])
        if kwargs.get("cuda_sources") or kwargs.get("with_cuda") \
                or any(str(s).endswith(".cu") for s in sources):
            raise GpuRequired(f"a CUDA extension (torch.utils.cpp_extension.{name}) needs a "
                              "GPU and nvcc: the cpu judge cannot build or run it")
        return original(*args, **kwargs)

    build.__name__ = name
    return build


_installed: list[_CudaOnHost] = []


def install() -> None:
    """Make this (child) process a one-GPU machine whose data stays on the host."""
    if _installed:
        return
    # A torch warning raised under the mode points at this file; Python's warnings read the
    # line through linecache, which must not open a judge file while the candidate runs.
    linecache.getlines(__file__)
    for name, value in _cuda_api().items():
        setattr(torch.cuda, name, value)
    _install_libdevice()
    _install_gpu_only_refusals()
    mode = _CudaOnHost()
    mode.__enter__()
    _installed.append(mode)
