"""What runs inside a child: load the sources, run forwards under watch, send raw observations.

The child never judges: it reports outputs and what it saw, and the worker decides.
"""

from __future__ import annotations

import dataclasses
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

from evaluator import (
    callbacks,
    cuda_on_cpu,
    gpu_compile,
    monitor,
    scaling,
    timing,
    tracer_guard,
)
from evaluator.config import LARGE_MAGNITUDE
from evaluator.sandbox import Channel

_equal = torch.equal
_Tensor = torch.Tensor
# The judge's own references, taken before any candidate code can swap a builtin.
_isinstance, _len, _type = isinstance, len, type
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
        from torch.utils import cpp_extension  # noqa: F401  (wrapped in each child: 60 ms)

        _interpret_as_compiled()
        _warm_kernel[(1,)](x, 4, BLOCK=4)
        gpu_compile.warm_up(_warm_kernel, (x, 4), {"BLOCK": 4})


def _interpret_as_compiled() -> None:
    """The interpreter builds integer-overflow checks into every int32 add, sub and mul, then
    drops their assert because it never runs in debug mode; compiled kernels outside debug
    mode have none. Turning them off changes no result and halves a simple kernel's time."""
    from triton.runtime import interpreter

    builder = interpreter.interpreter_builder
    builder.options = dataclasses.replace(builder.options, sanitize_overflow=False)


@triton.jit
def _warm_kernel(x_ptr, n, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    tl.store(x_ptr + offs, tl.load(x_ptr + offs, mask=offs < n) + 1, mask=offs < n)


def set_seed(seed: int) -> None:
    """What `torch.manual_seed` seeds for the devices used here (the host; CUDA where there
    is one), without its lazy seeding of xpu and mtia, which records a stack trace per call:
    milliseconds each under the audit hook."""
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    torch.default_generator.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % (2**32))


def trial_seeds(seed: int, n: int) -> list[int]:
    set_seed(seed)
    return [int(s) for s in torch.randint(0, 2**31 - 1, (n,))]


def trial_plan(cfg: dict[str, Any]) -> list[str]:
    """Each trial's input distribution: the configured ones cycled; under `standard` and
    `strict` the last trial (of two or more) at large magnitudes."""
    n, dists = cfg["correct_trials"], cfg["distributions"]
    plan = [dists[i % len(dists)] for i in range(n)]
    if cfg.get("policy", "standard") != "kernelgym" and n >= 2:
        plan[-1] = "large"
    return plan


def job_trial_seed(job: dict[str, Any]) -> int:
    """Where the trials' inputs come from: the worker's per-evaluation draw, else the seed."""
    seed = job.get("trial_seed")
    return int(seed) if seed is not None else int(job["config"]["seed"])


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
    except cuda_on_cpu.GpuRequired as exc:
        raise Failure("runtime_error", exc, path) from exc
    except BaseException as exc:
        raise Failure(status, exc, path) from exc


def require(module: ModuleType, names: tuple[str, ...], path: str) -> None:
    missing = [n for n in names if not hasattr(module, n)]
    if missing:
        exc = AttributeError(f"source does not define {', '.join(missing)}")
        raise Failure("compile_error", exc, path)


def device_of(job: dict[str, Any]) -> torch.device:
    return torch.device("cuda" if job["device"] == "cuda" else "cpu")


def emulate_gpu(device: torch.device) -> None:
    """On cpu, code written for CUDA runs its CUDA path; installed after the monitor's hooks
    (which ask whether a GPU is really there) and before any untrusted code loads."""
    if device.type == "cpu":
        cuda_on_cpu.install()


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
    if dist == "large":
        return (torch.rand_like(x) * 2 - 1) * LARGE_MAGNITUDE
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


def structure(out: Any) -> str:
    """The nesting of a forward's result: `T` a tensor, `(T,T)` a tuple, `[T]` a list, so
    that `([y],)` is not taken for `y`."""
    if _isinstance(out, tuple):
        return "(" + ",".join(structure(y) for y in out) + ("," if _len(out) == 1 else "") + ")"
    if _isinstance(out, list):
        return "[" + ",".join(structure(y) for y in out) + "]"
    return "T"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@contextmanager
def traced(poison: bool = False, output_numel: int = 0, mon: monitor.Monitor | None = None,
           follow_kernels: bool = True) -> Iterator[monitor.OpTracer]:
    """Trace the ops of a call; with `mon`, flag a tracer the call removed or whose records
    it altered (candidate code can reach the tracer through torch's mode stack)."""
    tracer = monitor.OpTracer(poison, output_numel, follow_kernels)
    held = tracer_guard.guard(tracer)
    with tracer:
        yield tracer
        on_top = tracer_guard.on_top(tracer)
        held.closing = True
    problem = held.check() if on_top else "the judge's op tracer was taken off torch's mode stack"
    if problem and mon is not None:
        mon.flag("patching", problem)


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
    emulate_gpu(device)
    mon.active = True
    report = chan.report
    try:
        header, tensors = run_reference(job, device)
    except Failure as failure:
        report({"ok": False, "status": failure.status, "error": failure.error})
        return
    report(header, tensors)


def run_reference(job: dict[str, Any], device: torch.device) -> tuple[dict[str, Any], list[Any]]:
    path, cfg = job["reference_path"], job["config"]
    source, scaled = reference_source(job)
    with traced() as loading:
        ref = load_module(source, path, "drkernel_reference", status="runtime_error")
    require(ref, ("Model", "get_inputs", "get_init_inputs"), path)
    try:
        with traced() as building:
            model = build(ref.Model, init_inputs(ref, cfg["seed"]), cfg["seed"], device)
        plan, outputs, counts, ops, work = [], [], [], Counter[str](), dict[str, float]()
        trial_inputs: list[list[Any]] = []
        structures: list[str] = []
        seeds = trial_seeds(job_trial_seed(job), cfg["correct_trials"])
        for seed, dist in zip(seeds, trial_plan(cfg), strict=True):
            inputs, ys, tracer, shape = _reference_trial(model, ref, seed, dist, device)
            if dist != "native" and not all(bool(torch.isfinite(y).all()) for y in ys):
                dist = "native"  # the problem's domain needs its own inputs (e.g. log of x)
                inputs, ys, tracer, shape = _reference_trial(model, ref, seed, dist, device)
            plan.append(dist)
            structures.append(shape)
            trial_inputs.append(inputs)
            outputs += ys
            counts.append(len(ys))
            ops.update(tracer.ops)
            _add_work(work, tracer.work)
        input_dtypes = {str(x.dtype).removeprefix("torch.") for inputs in trial_inputs
                        for x in inputs if isinstance(x, torch.Tensor)}
        header: dict[str, Any] = {"ok": True, "plan": plan, "counts": counts, "ops": dict(ops),
                                  "structures": structures,
                                  "work": dict(work), "params": fingerprints(model),
                                  "input_dtypes": sorted(input_dtypes),
                                  "load_ops": dict(loading.ops + building.ops),
                                  "state_numel": max((t.numel() for t in [
                                      *model.parameters(), *model.buffers()]), default=0),
                                  "state_dtypes": sorted({str(t.dtype).removeprefix("torch.")
                                                          for t in [*model.parameters(),
                                                                    *model.buffers()]}),
                                  "output_dtypes": sorted({str(y.dtype).removeprefix("torch.")
                                                           for y in outputs})}
        if scaled is not None:
            header["scaling"] = scaled.report()
        if job.get("time"):
            header["timing"], _ = timing.time_forward(model, trial_inputs, cfg)
    except BaseException as exc:
        raise Failure("runtime_error", exc, path) from exc
    return header, outputs


def reference_source(job: dict[str, Any]) -> tuple[str, scaling.Plan | None]:
    """The reference as it will run: on cpu, sized down to the judge's budget if needed."""
    source = job["reference"]
    if job["device"] != "cpu" or not job["config"].get("scale", True):
        return source, None

    def measure(text: str, budget: scaling.Budget) -> scaling.Cost | None:
        try:
            module = load_module(text, job["reference_path"], "drkernel_reference",
                                 "runtime_error")
        except Failure:
            return None
        with cuda_on_cpu.placed_on("meta"):
            return scaling.measure_on_meta(module, budget)

    plan = scaling.fit(source, measure)
    return (plan.source, plan) if plan else (source, None)


def scaled_sources(job: dict[str, Any]) -> tuple[str, str]:
    """Reference and candidate with the sizes the reference ran at (both see the same)."""
    constants = {k: (v[0], v[1]) for k, v in (job.get("scaling") or {}).get("constants",
                                                                              {}).items()}
    if not constants:
        return job["reference"], job["candidate"]
    return scaling.apply(job["reference"], constants), scaling.apply(job["candidate"], constants)


def _reference_trial(model: torch.nn.Module, ref: ModuleType, seed: int, dist: str,
                     device: torch.device
                     ) -> tuple[list[Any], list[torch.Tensor], monitor.OpTracer, str]:
    inputs = make_inputs(ref, seed, dist, device)
    with _no_grad(), traced() as tracer:
        tracer.state_ptrs = _storages([*model.parameters(), *model.buffers()])
        tracer.forward = True
        out = model(*timing.clones(inputs))
        ys = flatten(out)
    sync(device)
    return inputs, [y.detach() for y in tensors_only(ys, "")], tracer, structure(out)


# ---------------------------------------------------------------- candidate child


def candidate_main(chan: Channel, job: dict[str, Any]) -> None:
    # What the report depends on is bound here, before any candidate code runs: the
    # candidate can replace module and class attributes (which the snapshot reveals),
    # not these locals.
    report, snapshot, patched = chan.report, monitor.snapshot, monitor.patched
    device = device_of(job)
    mon = monitor.Monitor(candidate_path=job["candidate_path"])
    monitor.install(mon)
    if device.type == "cpu":
        mon.compiler = gpu_compile.GpuCompiler(assemble_here=False)
    emulate_gpu(device)
    try:
        run = _CandidateRun(job, device, mon)
    except Failure as failure:
        report({"ok": False, "status": failure.status, "error": failure.error})
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
    report(header, tensors)
    if header["ok"] and device.type == "cuda" and chan.wait_go():
        try:
            perf, timed = run.performance()
        except Failure as failure:
            perf, timed = {"ok": False, "status": failure.status, "error": failure.error}, []
        perf["patched"] = patched(before, snapshot())
        perf["findings"] = list(mon.findings)
        report(perf, timed)


class _CandidateRun:
    """One candidate's trials and probes. Every input is made before the candidate's code
    is loaded, so nothing it does (e.g. wrapping the reference's `get_inputs`) changes them."""

    def __init__(self, job: dict[str, Any], device: torch.device, mon: monitor.Monitor) -> None:
        self.job, self.device, self.mon = job, device, mon
        self.cfg = job["config"]
        self.path = job["candidate_path"]
        self.plan: list[str] = job["plan"]
        reference, self.source = scaled_sources(job)
        ref = load_module(reference, job["reference_path"], "drkernel_reference",
                          "runtime_error")
        self.init = init_inputs(ref, self.cfg["seed"])
        seeds = trial_seeds(job_trial_seed(job), self.cfg["correct_trials"])
        self.trial_inputs = [make_inputs(ref, seed, dist, device)
                             for seed, dist in zip(seeds, self.plan, strict=True)]
        # Skipping an in-place kernel leaves its input untouched, which is the right answer
        # for e.g. ReLU on non-negative inputs: probe on normal inputs where there are some.
        self.ghost_trial = self.plan.index("normal") if "normal" in self.plan else 0
        self.structure = "T"
        """The nesting of the last forward's result."""

    def correctness(self) -> tuple[dict[str, Any], list[torch.Tensor]]:
        threads = threading.active_count()
        self.mon.active = True
        self.base = callbacks.baseline(self.mon)
        with traced(mon=self.mon) as loading:
            cand = load_module(self.source, self.path, "drkernel_candidate")
            callbacks.settle(self.base, self.mon)
            require(cand, ("ModelNew",), self.path)
            self.model = self._guard(lambda: build(cand.ModelNew, self.init, self.cfg["seed"],
                                                   self.device))
        outputs: list[torch.Tensor] = []
        counts, ops, work, downcasts, own = [], Counter[str](), dict[str, float](), [], []
        alone: dict[str, float] = {}
        kernel_elements: list[int] = []
        torch_made: list[str] = []
        torch_scaled: list[str] = []
        structures: list[str] = []
        for k in range(len(self.trial_inputs)):
            start = len(self.mon.launches)
            last_inputs = self.inputs(k)
            ys, tracer = self._trial(last_inputs)
            structures.append(self.structure)
            outputs += ys
            counts.append(len(ys))
            ops.update(tracer.ops)
            _add_work(work, tracer.work)
            _add_work(alone, tracer.work_alone)
            kernel_elements.append(tracer.kernel_elements)
            torch_made.append(tracer.torch_made(ys, self.cfg["atol"], self.cfg["rtol"]))
            torch_scaled.append(tracer.torch_made(ys, self.cfg["atol"], self.cfg["rtol"], True))
            downcasts += tracer.downcasts
            own.append(sum(launch.own for launch in self.mon.launches[start:]))
        probes = self._probes(last_inputs)
        if self.mon.compile_errors:  # a refusal the candidate caught still stands
            raise self._compile_failure()
        if threading.active_count() > threads:
            self.mon.flag("background_work", "threads still running after the forwards")
        header = {
            "ok": True, "counts": counts, "structures": structures, "ops": dict(ops),
            "work": work, "work_alone": alone, "kernel_elements": kernel_elements,
            "torch_made": torch_made, "torch_scaled": torch_scaled,
            "params": fingerprints(self.model),
            "load_ops": dict(loading.ops), "load_work": dict(loading.work),
            "downcasts": (downcasts + self.mon.kernel_downcasts)[:8],
            "own_launches_per_trial": own,
            "launches": _launch_summary(self.mon.launches),
            "own_launches_grad": self.own_launches_grad, "ghost_trial": self.ghost_trial,
            "groups": {k: len(v) for k, v in probes.items()},
            "compiled": _compiled_summary(self.mon.compiler),
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
        except BaseException as exc:
            raise self._failure(exc) from exc
        finally:
            callbacks.settle(self.base, self.mon)

    def _failure(self, exc: BaseException) -> Failure:
        if _isinstance(exc, MemoryError):
            return Failure("crashed", exc, self.path)
        if _isinstance(exc, OSError):
            if exc.errno == errno.EFBIG:  # type: ignore[attr-defined]
                big = OSError(errno.EFBIG, "output limit exceeded: the candidate printed too much")
                return Failure("crashed", big, self.path)
            return Failure("runtime_error", exc, self.path)
        if self.mon.compile_errors:  # however the candidate wrapped the compiler's refusal
            return self._compile_failure()
        status = "compile_error" if _is_compile_error(exc) else "runtime_error"
        return Failure(status, exc, self.path)

    def _compile_failure(self) -> Failure:
        return Failure("compile_error", gpu_compile.GpuCompileError(self.mon.compile_errors[0]),
                       self.path)

    def _forward(self, inputs: list[Any], poison: bool = False, grad: bool = False,
                 counted: bool = False) -> tuple[list[torch.Tensor], monitor.OpTracer]:
        """One call of the candidate; `counted` for a trial, whose work goes into the account."""
        def call() -> tuple[list[torch.Tensor], monitor.OpTracer]:
            with torch.set_grad_enabled(grad), traced(
                    poison, self.job.get("output_numel", 0), self.mon, counted) as tracer:
                tracer.state_ptrs = _storages([*self.model.parameters(), *self.model.buffers()])
                tracer.forward = True
                out = self.model(*inputs)
                callbacks.settle(self.base, self.mon)  # before anything of the judge's runs
                if cuda_on_cpu.unjoined():
                    self.mon.flag("side_stream", "work issued on a side CUDA stream was not "
                                  "waited for before the forward returned: on a GPU, reading "
                                  "its output races it")
                self.structure = structure(out)
                ys = flatten(out)
            return tensors_only(ys, self.path), tracer

        result: tuple[list[torch.Tensor], monitor.OpTracer] = self._guard(call)
        return result

    def _trial(self, inputs: list[Any]) -> tuple[list[torch.Tensor], monitor.OpTracer]:
        saved = timing.clones(inputs)
        ys, tracer = self._forward(inputs, counted=True)
        for y in ys:
            if _type(y) is not _Tensor:
                self.mon.flag("lazy_tensor", f"forward returned {_type(y).__qualname__}")
            if any(isinstance(x, torch.Tensor) and _overlaps(y, x) for x in inputs):
                self.mon.flag("output_aliasing", "output shares storage with an input")
        for i, (x, s) in enumerate(zip(inputs, saved, strict=True)):
            if isinstance(x, torch.Tensor) and not _equal(x, s):
                self.mon.flag("input_mutation", f"input {i} changed during forward")
        return [_plain_copy(y) for y in ys], tracer

    def _probes(self, reused: list[Any]) -> dict[str, list[torch.Tensor]]:
        """Extra forwards on trial 0's inputs that expose caching, garbage reads and decoys.
        The first gives trial 0's values in the very tensors the last trial was called with;
        the second, with fresh allocations poisoned, is also KernelGYM's grad-mode pass (a
        candidate whose kernels run only without grad is a decoy there anyway)."""
        probes: dict[str, list[torch.Tensor]] = {}
        for x, fresh in zip(reused, self.inputs(0), strict=True):
            if isinstance(x, torch.Tensor) and x.shape == fresh.shape:
                x.copy_(fresh)
        probes["same_objects"] = [_plain_copy(y) for y in self._forward(reused)[0]]
        start = len(self.mon.launches)
        poisoned = self._forward(self.inputs(0), poison=True, grad=True)[0]
        self.own_launches_grad = sum(launch.own for launch in self.mon.launches[start:])
        probes["poisoned"] = [_plain_copy(y) for y in poisoned]
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


def _compiled_summary(compiler: gpu_compile.GpuCompiler | None) -> dict[str, Any]:
    """Per kernel, the heaviest specialisation the GPU compiler made (cpu only)."""
    if compiler is None:
        return {}
    kernels: dict[str, dict[str, Any]] = {}
    for stats in compiler.stats:
        row = dataclasses.asdict(stats)
        best = kernels.setdefault(stats.name, row)
        if (row["registers"] or 0, row["shared_bytes"]) > (best["registers"] or 0,
                                                           best["shared_bytes"]):
            kernels[stats.name] = row
    return {"target": f"{gpu_compile.TARGET.backend} sm_{gpu_compile.TARGET.arch}",
            "kernels": list(kernels.values()), "note": compiler.unavailable}


def _add_work(total: dict[str, float], part: dict[str, float]) -> None:
    for op, ns in part.items():
        total[op] = total.get(op, 0.0) + ns


def _storages(tensors: list[torch.Tensor]) -> set[int]:
    return {t.untyped_storage().data_ptr() for t in tensors}


def fingerprints(model: torch.nn.Module) -> list[list[Any]]:
    """Name, shape and two sums of each parameter and buffer: enough to name the one a
    candidate initialises differently from the reference under the same seed."""
    with _no_grad():
        return [[name, list(t.shape), float(t.double().sum()), float(t.double().abs().sum())]
                for name, t in [*model.named_parameters(), *model.named_buffers()]
                if t.is_floating_point()][:256]


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
    if names & {"CompilationError", "CompileTimeAssertionFailure", "GpuCompileError"}:
        return True
    return "InterpreterError" in names and bool(
        _TL_ERROR.search(str(exc)) or isinstance(exc.__cause__, NameError))


_TL_ERROR = re.compile(r"module 'triton\.language[\w.]*' has no attribute")
