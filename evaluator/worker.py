"""The warm worker: imports torch and Triton once, then forks a fresh child per run.

Started by `evaluator.api` as `python -m evaluator.worker DEVICE`; talks framed messages
over stdin/stdout. It never runs untrusted code itself: reference and candidate each run in
a forked child, and the verdict is made here from what the children reported.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch

from evaluator import confine, gpu_compile, harness, judge, static_scan
from evaluator.judge import Report
from evaluator.result import ErrorInfo, EvalResult, Hack, HackKind, Scaling, Status
from evaluator.sandbox import Child, ChildOutcome, Limits, become_subreaper, spawn
from evaluator.wire import (
    MAX_HEADER_BYTES,
    ForgedReport,
    WireError,
    pack,
    read_frame,
    unpack,
    write_frame,
)

_REFERENCE_CACHE_SIZE = 16


class ProblemFailed(Exception):
    """The reference itself could not be loaded or run."""

    def __init__(self, error: dict[str, str]) -> None:
        super().__init__(error.get("message", ""))
        self.error = error


@dataclass
class Worker:
    device: str
    boundary: confine.Boundary = field(default_factory=confine.Boundary)
    current: Child | None = None

    def __post_init__(self) -> None:
        self.references: OrderedDict[str, Report] = OrderedDict()
        self.seeds: OrderedDict[str, int] = OrderedDict()
        self.ref_timings: dict[str, dict[str, Any]] = {}
        self.reachable = confine.python_paths()

    def cancel(self, *_: Any) -> None:
        if self.current is not None:
            self.current.cancelled = True
            self.current.kill()

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        start = time.monotonic()
        scratch = confine.new_scratch("run-")
        try:
            result = self._evaluate(job, scratch)
        except ProblemFailed as exc:
            return {"problem_error": exc.error}
        except _Cancelled:
            return {"cancelled": True}
        finally:
            self.current = None
            shutil.rmtree(scratch, ignore_errors=True)
        result.elapsed_s = time.monotonic() - start
        return {"result": result.to_dict()}

    def _evaluate(self, job: dict[str, Any], scratch: str) -> EvalResult:
        cfg = job["config"]
        paths = {
            "reference_path": _write(scratch, "reference.py", job["reference"]),
            "candidate_path": _write(scratch, "candidate.py", job["candidate"]),
        }
        problem = _reference_key(job["reference"], cfg, self.device, None)
        base = {**paths, "config": cfg, "device": self.device, "reference": job["reference"],
                "candidate": job["candidate"], "trial_seed": self._trial_seed(problem, cfg)}
        ref = self._reference(job, base, scratch, problem)
        trials = ref.split(ref.header["counts"])
        output_numel = sum(t.numel() for t in trials[0])
        child = self._spawn(harness.candidate_main, {**base, "plan": ref.header["plan"],
                                                     "output_numel": output_numel,
                                                     "scaling": ref.header.get("scaling")},
                            cfg, scratch, _report_bound(trials))
        static_hacks = static_scan.scan(job["candidate"])  # while the child runs
        try:
            frame = child.report()
            if frame is None:
                return _scaled(_refused_by_kernel(_died(child.finish(), self.device)), ref)
            cand = Report(*unpack(frame))
            result = judge.judge_correctness(cfg, ref, cand, static_hacks, self.device)
            _assemble(result, cand.header)
            if self.device == "cuda":
                result = self._performance(child, result, ref, cfg)
        except _Cancelled:
            raise
        except Exception as exc:  # whatever the child sent, the worker must survive it
            child.kill()
            child.finish()
            return _bad_report(exc, self.device)
        result.trial_seed = base["trial_seed"]
        return _refused_by_kernel(_checked_end(_scaled(result, ref), child.finish()))

    def _performance(self, child: Child, result: EvalResult, ref: Report,
                     cfg: dict[str, Any]) -> EvalResult:
        child.go(result.status is Status.CORRECT)
        if result.status is not Status.CORRECT:
            return result
        frame = child.report()
        if frame is None:
            return _died(child.finish(), self.device)
        return judge.add_performance(result, ref, Report(*unpack(frame)), cfg)

    def _trial_seed(self, problem: str, cfg: dict[str, Any]) -> int:
        """KernelGYM's seed under `kernelgym`; elsewhere a secret one drawn by this worker
        for the problem (unless the config names one), so no candidate can compute the trials'
        inputs in advance. It is kept with the problem's cached reference run: children share
        no state, so a later candidate cannot learn it, and the reference need not run again."""
        if cfg.get("trial_seed") is not None:
            return int(cfg["trial_seed"])
        if cfg.get("policy") == "kernelgym":
            return int(cfg["seed"])
        if problem not in self.seeds:
            self.seeds[problem] = secrets.randbelow(2**31 - 1)
            while len(self.seeds) > _REFERENCE_CACHE_SIZE:
                self.seeds.popitem(last=False)
        self.seeds.move_to_end(problem)
        return self.seeds[problem]

    def _reference(self, job: dict[str, Any], base: dict[str, Any], scratch: str,
                   problem: str) -> Report:
        """The reference's run for these trial inputs, cached; `problem` is the key of the
        problem without its seed (inputs change with each seed, their shapes and so the
        reference's timing do not)."""
        cfg = base["config"]
        key = _reference_key(job["reference"], cfg, self.device, base["trial_seed"])
        if job.get("fresh_reference"):
            self.references.pop(key, None)
            self.ref_timings.pop(problem, None)
        if key in self.references:
            self.references.move_to_end(key)
            return self.references[key]
        timed = self.ref_timings.get(problem)
        child = self._spawn(harness.reference_main,
                            {**base, "time": self.device == "cuda" and timed is None},
                            cfg, scratch, cfg["memory_mb"] << 20)
        try:
            frame = child.report()
        except WireError as exc:
            child.kill()
            child.finish()
            raise ProblemFailed({"type": "BrokenReport", "message": f"the reference's process "
                                 f"sent a bad report: {exc}", "traceback": ""}) from exc
        outcome = child.finish()
        if frame is None:
            if outcome.cancelled:
                raise _Cancelled
            raise ProblemFailed({"type": "ReferenceFailed",
                                 "message": f"the reference {_death(outcome)}",
                                 "traceback": outcome.output})
        report = Report(*unpack(frame))
        if not report.header["ok"]:
            raise ProblemFailed(report.header["error"])
        if "timing" in report.header:
            self.ref_timings[problem] = report.header["timing"]
            while len(self.ref_timings) > _REFERENCE_CACHE_SIZE:
                self.ref_timings.pop(next(iter(self.ref_timings)))
        elif timed is not None:
            report.header["timing"] = timed
        self.references[key] = report
        while len(self.references) > _REFERENCE_CACHE_SIZE:
            self.references.popitem(last=False)
        return report

    def _spawn(self, target: Any, child_job: dict[str, Any], cfg: dict[str, Any],
               scratch: str, max_report_bytes: int) -> Child:
        limits = Limits(
            timeout_s=cfg["timeout_s"],
            memory_mb=cfg["memory_mb"],
            max_processes=cfg["max_processes"],
            max_file_bytes=max(cfg["max_output_bytes"], 256 << 20) if self.device == "cuda"
            else cfg["max_output_bytes"],
            device=self.device,
        )
        plan = confine.Plan(self.boundary, scratch, self.device, self.reachable,
                            lifetime_s=limits.timeout_s + 60) \
            if self.boundary.kernel_layers else None
        self.current = spawn(target, child_job, limits, scratch, plan, max_report_bytes)
        return self.current


class _Cancelled(Exception):
    pass


def _assemble(result: EvalResult, header: dict[str, Any]) -> None:
    """ptxas for the kernels a cpu child compiled to PTX (it may start no process itself):
    their registers and spills, for the profile."""
    compiled = header.get("compiled") or {}
    ptx: dict[str, str] = {str(k.get("name")): k["ptx"] for k in compiled.get("kernels", [])[:16]
                           if isinstance(k, dict) and isinstance(k.get("ptx"), str)}
    todo = [k for k in result.profile.compiled[:16] if k.registers is None and ptx.get(k.name)]
    counts = gpu_compile.assemble_all([ptx[k.name][:gpu_compile.MAX_PTX_CHARS] for k in todo])
    for kernel, (registers, spills) in zip(todo, counts, strict=True):
        kernel.registers, kernel.spill_bytes = registers, spills


def _reference_key(source: str, cfg: dict[str, Any], device: str,
                   trial_seed: int | None) -> str:
    fields = ("seed", "correct_trials", "distributions", "perf_trials", "warmup", "l2_flush",
              "scale")
    plan = harness.trial_plan(cfg)
    blob = json.dumps([source, device, [cfg.get(f) for f in fields], plan, trial_seed])
    return hashlib.sha256(blob.encode()).hexdigest()


def _write(scratch: str, name: str, source: str) -> str:
    path = os.path.join(scratch, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(source)
    return path


def _death(outcome: ChildOutcome) -> str:
    if outcome.timed_out:
        return "ran past its time limit"
    if outcome.signal is not None:
        name = signal.Signals(outcome.signal).name
        if outcome.signal == signal.SIGXFSZ:
            return f"was killed by {name}: output limit exceeded"
        return f"was killed by {name}"
    return f"exited with code {outcome.exit_code} before reporting"


def _died(outcome: ChildOutcome, device: str) -> EvalResult:
    if outcome.cancelled:
        raise _Cancelled
    status = Status.TIMEOUT if outcome.timed_out else Status.CRASHED
    error = ErrorInfo(type=status.value, message=f"the candidate {_death(outcome)}",
                      traceback=outcome.output[-2000:])
    return EvalResult(status=status, compiled=True, error=error, device=device,
                      speedup_note="the candidate did not pass")


def _scaled(result: EvalResult, ref: Report) -> EvalResult:
    """The sizes the problem ran at, where the cpu judge scaled them down."""
    if ref.header.get("scaling"):
        result.scaling = Scaling(**ref.header["scaling"])
    return result


def _report_bound(trials: list[list[torch.Tensor]]) -> int:
    """The largest report an honest candidate can send: its trials' outputs and three probe
    forwards (twice the bytes, for a wrong but wider dtype), plus the header."""
    sizes = [sum(t.numel() * t.element_size() for t in trial) for trial in trials]
    return 2 * (2 * sum(sizes) + 3 * max(sizes, default=0)) + MAX_HEADER_BYTES


def _bad_report(exc: Exception, device: str) -> EvalResult:
    if isinstance(exc, ForgedReport):
        return _forged(str(exc), device)
    error = ErrorInfo(type="BrokenReport", message=f"the candidate's process sent a bad report: "
                      f"{exc}")
    return EvalResult(status=Status.CRASHED, compiled=True, error=error, device=device)


def _forged(evidence: str, device: str) -> EvalResult:
    return EvalResult(status=Status.HACKED, compiled=True, device=device,
                      hacks=[Hack(HackKind.SANDBOX_ESCAPE, f"forged report: {evidence}")],
                      speedup_note="the candidate did not pass")


_REFUSALS = re.compile(r"\[Errno (1|13|30)\] (Operation not permitted|Permission denied|"
                       r"Read-only file system)|killed by SIGSYS")


def _refused_by_kernel(result: EvalResult) -> EvalResult:
    """A run that failed because the kernel refused it something (a write outside scratch,
    a root-only file, a forbidden system call) was trying to leave its sandbox."""
    if result.status not in (Status.RUNTIME_ERROR, Status.CRASHED) or result.error is None:
        return result
    match = _REFUSALS.search(result.error.message)
    if match is None:
        return result
    result.status = Status.HACKED
    result.hacks.append(Hack(HackKind.SANDBOX_ESCAPE,
                             f"the kernel refused the candidate: {result.error.message[:300]}"))
    return result


def _checked_end(result: EvalResult, outcome: ChildOutcome) -> EvalResult:
    """Bytes after the last report mean another writer on the channel: the run is void."""
    if outcome.leftover:
        return _forged("bytes written to the report channel after the report", result.device)
    return result


def main() -> None:
    device = sys.argv[1]
    torch.set_num_threads(1)
    become_subreaper()
    harness.warm_up(device)
    proto_out = os.dup(1)
    os.dup2(2, 1)  # stray prints must not corrupt the protocol stream
    boundary = confine.probe(device) if os.environ.get("DRKERNEL_SANDBOX") != "off" \
        else confine.Boundary(notes=("kernel confinement turned off (DRKERNEL_SANDBOX=off)",))
    worker = Worker(device=device, boundary=boundary)
    signal.signal(signal.SIGUSR1, worker.cancel)
    # A terminal's Ctrl-C reaches the whole process group: the parent that owns this worker
    # decides what stops, and closes the pool itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    write_frame(proto_out, pack({"ready": True, "pid": os.getpid(),
                                 "boundary": boundary.to_dict()}))
    while True:
        frame = read_frame(0)
        if frame is None:
            return
        job, _ = unpack(frame)
        write_frame(proto_out, pack(worker.run(job)))


if __name__ == "__main__":
    main()
