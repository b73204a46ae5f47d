"""The warm worker: imports torch and Triton once, then forks a fresh child per run.

Started by `evaluator.api` as `python -m evaluator.worker DEVICE`; talks framed messages
over stdin/stdout. It never runs untrusted code itself: reference and candidate each run in
a forked child, and the verdict is made here from what the children reported.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch

from evaluator import harness, judge, static_scan
from evaluator.judge import Report
from evaluator.result import ErrorInfo, EvalResult, Status
from evaluator.sandbox import Child, ChildOutcome, Limits, become_subreaper, spawn
from evaluator.wire import pack, read_frame, unpack, write_frame

_REFERENCE_CACHE_SIZE = 16


class ProblemFailed(Exception):
    """The reference itself could not be loaded or run."""

    def __init__(self, error: dict[str, str]) -> None:
        super().__init__(error.get("message", ""))
        self.error = error


@dataclass
class Worker:
    device: str
    current: Child | None = None

    def __post_init__(self) -> None:
        self.references: OrderedDict[str, Report] = OrderedDict()
        self.ref_timings: dict[str, dict[str, Any]] = {}

    def cancel(self, *_: Any) -> None:
        if self.current is not None:
            self.current.cancelled = True
            self.current.kill()

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        start = time.monotonic()
        scratch = tempfile.mkdtemp(prefix="drkernel-")
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
        base = {**paths, "config": cfg, "device": self.device, "reference": job["reference"],
                "candidate": job["candidate"]}
        ref = self._reference(job, base, scratch)
        output_numel = sum(t.numel() for t in ref.split(ref.header["counts"])[0])
        child = self._spawn(harness.candidate_main, {**base, "plan": ref.header["plan"],
                                                     "output_numel": output_numel}, cfg, scratch)
        frame = child.recv()
        if frame is None:
            return _died(child.finish(), self.device)
        try:
            cand = Report(*unpack(frame))
            result = judge.judge_correctness(cfg, ref, cand,
                                             static_scan.scan(job["candidate"]), self.device)
        except Exception as exc:  # whatever the child sent, the worker must survive it
            child.kill()
            child.finish()
            return _broken_report(exc, self.device)
        if self.device == "cuda":
            result = self._performance(child, result, ref, cfg)
        child.finish()
        return result

    def _performance(self, child: Child, result: EvalResult, ref: Report,
                     cfg: dict[str, Any]) -> EvalResult:
        child.go(result.status is Status.CORRECT)
        if result.status is not Status.CORRECT:
            return result
        frame = child.recv()
        if frame is None:
            return _died(child.finish(), self.device)
        try:
            return judge.add_performance(result, ref, Report(*unpack(frame)), cfg)
        except Exception as exc:  # as above
            return _broken_report(exc, self.device)

    def _reference(self, job: dict[str, Any], base: dict[str, Any], scratch: str) -> Report:
        cfg = base["config"]
        key = _reference_key(job["reference"], cfg, self.device)
        if job.get("fresh_reference"):
            self.references.pop(key, None)
        if key in self.references:
            self.references.move_to_end(key)
            return self.references[key]
        child = self._spawn(harness.reference_main, {**base, "time": self.device == "cuda"},
                            cfg, scratch)
        frame = child.recv()
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
        self.references[key] = report
        while len(self.references) > _REFERENCE_CACHE_SIZE:
            self.references.popitem(last=False)
        return report

    def _spawn(self, target: Any, child_job: dict[str, Any], cfg: dict[str, Any],
               scratch: str) -> Child:
        limits = Limits(
            timeout_s=cfg["timeout_s"],
            memory_mb=None if self.device == "cuda" else cfg["memory_mb"],
            max_processes=cfg["max_processes"],
            max_file_bytes=max(cfg["max_output_bytes"], 256 << 20) if self.device == "cuda"
            else cfg["max_output_bytes"],
        )
        self.current = spawn(target, child_job, limits, scratch)
        return self.current


class _Cancelled(Exception):
    pass


def _reference_key(source: str, cfg: dict[str, Any], device: str) -> str:
    fields = ("seed", "correct_trials", "distributions", "perf_trials", "warmup", "l2_flush")
    blob = json.dumps([source, device, [cfg[f] for f in fields]])
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


def _broken_report(exc: Exception, device: str) -> EvalResult:
    error = ErrorInfo(type="BrokenReport", message=f"the candidate's process sent a bad report: "
                      f"{exc}")
    return EvalResult(status=Status.CRASHED, compiled=True, error=error, device=device)


def main() -> None:
    device = sys.argv[1]
    torch.set_num_threads(1)
    become_subreaper()
    harness.warm_up(device)
    proto_out = os.dup(1)
    os.dup2(2, 1)  # stray prints must not corrupt the protocol stream
    worker = Worker(device=device)
    signal.signal(signal.SIGUSR1, worker.cancel)
    write_frame(proto_out, pack({"ready": True, "pid": os.getpid()}))
    while True:
        frame = read_frame(0)
        if frame is None:
            return
        job, _ = unpack(frame)
        write_frame(proto_out, pack(worker.run(job)))


if __name__ == "__main__":
    main()
