"""What runs inside a child: load the sources, run forwards under watch, send raw observations.

The child never judges: it reports outputs and what it saw, and the worker decides.
"""

from __future__ import annotations

import errno
import random
import re
import sys
import threading
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import numpy as np
import torch
import triton
import triton.language as tl

from evaluator import monitor, timing
from evaluator.sandbox import Channel
from evaluator.wire import pack

_equal = torch.equal
_Tensor = torch.Tensor
_no_grad = torch.no_grad


class Failure(Exception):
    """The candidate (or reference) could not be loaded or run; carries the verdict's error."""

    def __init__(self, status: str, exc: BaseException, path: str) -> None:
        super().__init__(str(exc))
        self.status = status
        self.error = describe(exc, path)


def describe(exc: BaseException, path: str) -> dict[str, str]:
    """Error type, message and a traceback cut down to the given source's own frames."""
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if f.filename == path]
    if frames and (not own or own[-1] is not frames[-1]):
        own.append(frames[-1])
    text = "".join(traceback.format_list(own)) + "".join(traceback.format_exception_only(exc))
    return {"type": type(exc).__name__, "message": str(exc)[:2000], "traceback": text[-4000:]}


def warm_up(device: str) -> None:
    """Pay one-off import costs in the worker, before it forks any child.

    Nothing here may touch CUDA: a forked child cannot use a CUDA context of its parent.
    """
    set_seed(0)  # torch swaps some functions on first use; do it before any snapshot
    with traced(poison=True):  # the first dispatch mode imports torch._dynamo (~1.5 s)
        x = torch.zeros(4)
    if device == "cpu":
        _warm_kernel[(1,)](x, 4, BLOCK=4)


@triton.jit
def _warm_kernel(x_ptr, n, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    tl.store(x_ptr + offs, tl.load(x_ptr + offs, mask=offs < n) + 1, mask=offs < n)


def set_seed(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % (2**32))


def trial_seeds(seed: int, n: int) -> list[int]:
    set_seed(seed)
    return [int(s) for s in torch.randint(0, 2**31 - 1, (n,))]


def load_module(source: str, path: str, name: str, status: str = "compile_error") -> ModuleType:
    """Run `source` as module `name`, from memory: the file at `path` (which Triton and
    tracebacks read) is not trusted to still hold what the worker wrote."""
    try:
        code = compile(source, path, "exec")
        module = ModuleType(name)
        module.__file__ = path
        sys.modules[name] = module  # Triton's JIT looks kernels' globals up through the module
        exec(code, module.__dict__)
        return module
    except BaseException as exc:
        raise Failure(status, exc, path) from exc


def require(module: ModuleType, names: tuple[str, ...], path: str) -> None:
    missing = [n for n in names if not hasattr(module, n)]
    if missing:
        exc = AttributeError(f"source does not define {', '.join(missing)}")
        raise Failure("compile_error", exc, path)


def device_of(job: dict[str, Any]) -> torch.device:
    return torch.device("cuda" if job["device"] == "cuda" else "cpu")


def init_inputs(ref: ModuleType, seed: int) -> tuple[list[Any], dict[str, Any]]:
    set_seed(seed)
    init = list(ref.get_init_inputs())
    if len(init) == 2 and init[0] == [] and isinstance(init[1], dict):
        return [], init[1]  # KernelBench's [[], {kwargs}] form
    return init, {}


def build(cls: type, init: tuple[list[Any], dict[str, Any]], seed: int,
          device: torch.device) -> torch.nn.Module:
    args, kwargs = init
    set_seed(seed)
    with _no_grad():
        model = cls(*args, **kwargs)
    return model.to(device)


def make_inputs(ref: ModuleType, seed: int, dist: str, device: torch.device) -> list[Any]:
    set_seed(seed)
    inputs = list(ref.get_inputs())
    if dist != "native":
        set_seed(seed + 1)
        inputs = [_redraw(x, dist) for x in inputs]
    return [_place(x, device) for x in inputs]


def _redraw(x: Any, dist: str) -> Any:
    if not (isinstance(x, torch.Tensor) and x.is_floating_point()):
        return x
    return torch.randn_like(x) if dist == "normal" else torch.rand_like(x)


def _place(x: Any, device: torch.device) -> Any:
    if not isinstance(x, torch.Tensor):
        return x
    if device.type == "cpu" and x.dtype == torch.bfloat16:
        x = x.float()  # the interpreter computes bf16 wrongly; both sides run in fp32
    return x.to(device)


def flatten(out: Any) -> list[Any]:
    if isinstance(out, (tuple, list)):
        return [y for item in out for y in flatten(item)]
    return [out]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@contextmanager
def traced(poison: bool = False, output_numel: int = 0) -> Iterator[monitor.OpTracer]:
    tracer = monitor.OpTracer(poison=poison, output_numel=output_numel)
    with tracer:
        yield tracer


def tensors_only(values: list[Any], path: str) -> list[torch.Tensor]:
    for v in values:
        if not isinstance(v, torch.Tensor):
            raise Failure("runtime_error", TypeError(f"forward returned {type(v).__name__}, "
                                                     "expected a torch.Tensor"), path)
    return values


# ---------------------------------------------------------------- reference child


def reference_main(chan: Channel, job: dict[str, Any]) -> None:
    device = device_of(job)
    mon = monitor.Monitor(candidate_path=job["reference_path"])
    monitor.install(mon)  # the sandbox's refusals hold for the problem's code too
    mon.active = True
    try:
        header, tensors = run_reference(job, device)
    except Failure as failure:
        chan.send(pack({"ok": False, "status": failure.status, "error": failure.error}))
        return
    chan.send(pack(header, tensors))


def run_reference(job: dict[str, Any], device: torch.device) -> tuple[dict[str, Any], list[Any]]:
    path, cfg = job["reference_path"], job["config"]
    with traced() as loading:
        ref = load_module(job["reference"], path, "drkernel_reference", status="runtime_error")
    require(ref, ("Model", "get_inputs", "get_init_inputs"), path)
    try:
        with traced() as building:
            model = build(ref.Model, init_inputs(ref, cfg["seed"]), cfg["seed"], device)
        plan, outputs, counts, ops = [], [], [], Counter[str]()
        trial_inputs: list[list[Any]] = []
        for i, seed in enumerate(trial_seeds(cfg["seed"], cfg["correct_trials"])):
            dist = cfg["distributions"][i % len(cfg["distributions"])]
            inputs, ys, tracer = _reference_trial(model, ref, seed, dist, device)
            if dist != "native" and not all(bool(torch.isfinite(y).all()) for y in ys):
                dist = "native"  # the problem's domain needs its own inputs (e.g. log of x)
                inputs, ys, tracer = _reference_trial(model, ref, seed, dist, device)
            plan.append(dist)
            trial_inputs.append(inputs)
            outputs += ys
            counts.append(len(ys))
            ops.update(tracer.ops)
        input_dtypes = {str(x.dtype).removeprefix("torch.") for inputs in trial_inputs
                        for x in inputs if isinstance(x, torch.Tensor)}
        header: dict[str, Any] = {"ok": True, "plan": plan, "counts": counts, "ops": dict(ops),
                                  "input_dtypes": sorted(input_dtypes),
                                  "load_ops": dict(loading.ops + building.ops),
                                  "state_numel": max((t.numel() for t in [
                                      *model.parameters(), *model.buffers()]), default=0),
                                  "state_dtypes": sorted({str(t.dtype).removeprefix("torch.")
                                                          for t in [*model.parameters(),
                                                                    *model.buffers()]}),
                                  "output_dtypes": sorted({str(y.dtype).removeprefix("torch.")
                                                           for y in outputs})}
        if job.get("time"):
            header["timing"], _ = timing.time_forward(model, trial_inputs, cfg)
    except BaseException as exc:
        raise Failure("runtime_error", exc, path) from exc
    return header, outputs


def _reference_trial(model: torch.nn.Module, ref: ModuleType, seed: int, dist: str,
                     device: torch.device
                     ) -> tuple[list[Any], list[torch.Tensor], monitor.OpTracer]:
    inputs = make_inputs(ref, seed, dist, device)
    with _no_grad(), traced() as tracer:
        ys = flatten(model(*timing.clones(inputs)))
    sync(device)
    return inputs, [y.detach() for y in tensors_only(ys, "")], tracer


# ---------------------------------------------------------------- candidate child


def candidate_main(chan: Channel, job: dict[str, Any]) -> None:
    # What the report depends on is bound here, before any candidate code runs: the
    # candidate can replace module and class attributes (which the snapshot reveals),
    # not these locals.
    send, pack_, snapshot, patched = chan.send, pack, monitor.snapshot, monitor.patched
    device = device_of(job)
    mon = monitor.Monitor(candidate_path=job["candidate_path"])
    monitor.install(mon)
    try:
        run = _CandidateRun(job, device, mon)
    except Failure as failure:
        send(pack_({"ok": False, "status": failure.status, "error": failure.error}))
        return
    before = snapshot()
    try:
        header, tensors = run.correctness()
    except Failure as failure:
        header = {"ok": False, "status": failure.status, "error": failure.error}
        tensors = []
    mon.active = False
    header["patched"] = patched(before, snapshot())
    header["findings"] = list(mon.findings)
    send(pack_(header, tensors))
    if header["ok"] and device.type == "cuda" and chan.wait_go():
        try:
            perf, timed = run.performance()
        except Failure as failure:
            perf, timed = {"ok": False, "status": failure.status, "error": failure.error}, []
        perf["patched"] = patched(before, snapshot())
        perf["findings"] = list(mon.findings)
        send(pack_(perf, timed))


class _CandidateRun:
    """One candidate's trials and probes. Every input is made before the candidate's code
    is loaded, so nothing it does (e.g. wrapping the reference's `get_inputs`) changes them."""

    def __init__(self, job: dict[str, Any], device: torch.device, mon: monitor.Monitor) -> None:
        self.job, self.device, self.mon = job, device, mon
        self.cfg = job["config"]
        self.path = job["candidate_path"]
        self.plan: list[str] = job["plan"]
        ref = load_module(job["reference"], job["reference_path"], "drkernel_reference",
                          "runtime_error")
        self.init = init_inputs(ref, self.cfg["seed"])
        seeds = trial_seeds(self.cfg["seed"], self.cfg["correct_trials"])
        self.trial_inputs = [make_inputs(ref, seed, dist, device)
                             for seed, dist in zip(seeds, self.plan, strict=True)]
        # Skipping an in-place kernel leaves its input untouched, which is the right answer
        # for e.g. ReLU on non-negative inputs: probe on normal inputs where there are some.
        self.ghost_trial = self.plan.index("normal") if "normal" in self.plan else 0

    def correctness(self) -> tuple[dict[str, Any], list[torch.Tensor]]:
        threads = threading.active_count()
        self.mon.active = True
        with traced() as loading:
            cand = load_module(self.job["candidate"], self.path, "drkernel_candidate")
            require(cand, ("ModelNew",), self.path)
            self.model = self._guard(lambda: build(cand.ModelNew, self.init, self.cfg["seed"],
                                                   self.device))
        outputs: list[torch.Tensor] = []
        counts, ops, full_size, downcasts, own = [], Counter[str](), Counter[str](), [], []
        state_ops = Counter[str]()
        largest: dict[str, int] = {}
        for k in range(len(self.trial_inputs)):
            start = len(self.mon.launches)
            ys, tracer = self._trial(self.inputs(k))
            outputs += ys
            counts.append(len(ys))
            ops.update(tracer.ops)
            state_ops.update(tracer.state_ops)
            full_size.update(tracer.full_size)
            for op, n in tracer.largest.items():
                largest[op] = max(largest.get(op, 0), n)
            downcasts += tracer.downcasts
            own.append(sum(launch.own for launch in self.mon.launches[start:]))
        probes = self._probes()
        if threading.active_count() > threads:
            self.mon.flag("background_work", "threads still running after the forwards")
        header = {
            "ok": True, "counts": counts, "ops": dict(ops), "largest": largest,
            "full_size": dict(full_size), "state_ops": dict(state_ops),
            "load_ops": dict(loading.ops),
            "downcasts": (downcasts + self.mon.kernel_downcasts)[:8],
            "own_launches_per_trial": own,
            "launches": _launch_summary(self.mon.launches),
            "own_launches_grad": self.own_launches_grad, "ghost_trial": self.ghost_trial,
            "groups": {k: len(v) for k, v in probes.items()},
        }
        return header, outputs + [t for group in probes.values() for t in group]

    def inputs(self, trial: int) -> list[Any]:
        """Fresh copies of a trial's inputs (the candidate may have written to earlier ones)."""
        return timing.clones(self.trial_inputs[trial])

    def _guard(self, fn: Callable[[], Any]) -> Any:
        try:
            result = fn()
            sync(self.device)
            return result
        except Failure:
            raise
        except MemoryError as exc:
            raise Failure("crashed", exc, self.path) from exc
        except OSError as exc:
            if exc.errno == errno.EFBIG:
                exc = OSError(exc.errno, "output limit exceeded: the candidate printed too much")
                raise Failure("crashed", exc, self.path) from exc
            raise Failure("runtime_error", exc, self.path) from exc
        except BaseException as exc:
            status = "compile_error" if _is_compile_error(exc) else "runtime_error"
            raise Failure(status, exc, self.path) from exc

    def _forward(self, inputs: list[Any], poison: bool = False,
                 grad: bool = False) -> tuple[list[torch.Tensor], monitor.OpTracer]:
        def call() -> tuple[list[torch.Tensor], monitor.OpTracer]:
            with torch.set_grad_enabled(grad), \
                    traced(poison, self.job.get("output_numel", 0)) as tracer:
                tracer.state_ptrs = {t.untyped_storage().data_ptr() for t in
                                     [*self.model.parameters(), *self.model.buffers()]}
                tracer.launches, tracer.launch_start = self.mon.launches, len(self.mon.launches)
                ys = flatten(self.model(*inputs))
            return tensors_only(ys, self.path), tracer

        result: tuple[list[torch.Tensor], monitor.OpTracer] = self._guard(call)
        return result

    def _trial(self, inputs: list[Any]) -> tuple[list[torch.Tensor], monitor.OpTracer]:
        saved = timing.clones(inputs)
        ys, tracer = self._forward(inputs)
        for y in ys:
            if type(y) is not _Tensor:
                self.mon.flag("lazy_tensor", f"forward returned {type(y).__qualname__}")
            if any(isinstance(x, torch.Tensor) and _overlaps(y, x) for x in inputs):
                self.mon.flag("output_aliasing", "output shares storage with an input")
        for i, (x, s) in enumerate(zip(inputs, saved, strict=True)):
            if isinstance(x, torch.Tensor) and not _equal(x, s):
                self.mon.flag("input_mutation", f"input {i} changed during forward")
        return [_plain_copy(y) for y in ys], tracer

    def _probes(self) -> dict[str, list[torch.Tensor]]:
        """Extra forwards on trial 0's inputs that expose caching, garbage reads and decoys."""
        last = len(self.trial_inputs) - 1
        probes: dict[str, list[torch.Tensor]] = {}
        start = len(self.mon.launches)
        self._forward(self.inputs(0), grad=True)
        self.own_launches_grad = sum(launch.own for launch in self.mon.launches[start:])
        reused = self.inputs(0)
        self._forward(reused)
        for x, fresh in zip(reused, self.inputs(last), strict=True):
            if isinstance(x, torch.Tensor) and x.shape == fresh.shape:
                x.copy_(fresh)
        probes["same_objects"] = [_plain_copy(y) for y in self._forward(reused)[0]]
        probes["poisoned"] = [_plain_copy(y)
                              for y in self._forward(self.inputs(0), poison=True)[0]]
        self.mon.suppress_own_launches = True
        try:
            ghost = self._forward(self.inputs(self.ghost_trial), poison=True)[0]
            probes["ghost"] = [_plain_copy(y) for y in ghost]
        except Failure:
            probes["ghost"] = []
        finally:
            self.mon.suppress_own_launches = False
        return probes

    def performance(self) -> tuple[dict[str, Any], list[torch.Tensor]]:
        """Timing and profile, plus the outputs of the last timed calls for the judge."""
        input_sets = [self.inputs(k) for k in range(len(self.trial_inputs))]
        self.mon.active = True
        start = len(self.mon.launches)
        stats, timed = self._guard(lambda: timing.time_forward(self.model, input_sets, self.cfg))
        header: dict[str, Any] = {"timing": stats}
        if self.cfg["profile"]:
            own = {launch.name for launch in self.mon.launches[start:] if launch.own}
            header["profile"] = self._guard(
                lambda: timing.profile_forward(self.model, input_sets[0], own))
        header["side_stream"] = any(launch.side_stream for launch in self.mon.launches[start:])
        self.mon.active = False
        outputs = {k: [_plain_copy(y) for y in tensors_only(ys, self.path)]
                   for k, ys in timed.items()}
        header["timed_counts"] = {str(k): len(ys) for k, ys in outputs.items()}
        return header, [y for ys in outputs.values() for y in ys]


def _launch_summary(launches: list[monitor.Launch]) -> list[dict[str, Any]]:
    summary: dict[tuple[str, bool], dict[str, Any]] = {}
    for launch in launches:
        row = summary.setdefault((launch.name, launch.own), {
            "name": launch.name, "own": launch.own, "count": 0, "dtypes": [], "raised": [],
            "side_stream": False})
        row["count"] += 1
        row["dtypes"] = sorted(set(row["dtypes"]) | set(launch.dtypes))
        row["side_stream"] |= launch.side_stream
        if launch.raised and launch.raised not in row["raised"]:
            row["raised"].append(launch.raised)
    return list(summary.values())


def _overlaps(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.numel() == 0 or b.numel() == 0 or a.device != b.device:
        return False
    try:
        sa, sb = a.untyped_storage(), b.untyped_storage()
    except (RuntimeError, NotImplementedError):
        return False
    a0, b0 = sa.data_ptr(), sb.data_ptr()
    return a0 < b0 + sb.nbytes() and b0 < a0 + sa.nbytes()


def _plain_copy(y: torch.Tensor) -> torch.Tensor:
    """A materialised, plain-tensor copy on the CPU (subclasses are unwrapped here)."""
    with torch._C.DisableTorchFunctionSubclass():
        return torch.Tensor.detach(y).to("cpu", copy=True).contiguous().as_subclass(_Tensor)


def _is_compile_error(exc: BaseException) -> bool:
    """Triton rejected the kernel itself (on GPU at compile time, on CPU in the interpreter)."""
    names = {type(e).__name__ for e in (exc, exc.__cause__) if e is not None}
    if names & {"CompilationError", "CompileTimeAssertionFailure"}:
        return True
    return "InterpreterError" in names and bool(
        _TL_ERROR.search(str(exc)) or isinstance(exc.__cause__, NameError))


_TL_ERROR = re.compile(r"module 'triton\.language[\w.]*' has no attribute")
