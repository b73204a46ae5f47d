"""A module request's problem, written from the user's (untrusted) source in a confined child.

Run as `python -m server.models.build`: reads one JSON job on stdin, writes one JSON reply on
stdout. The user's code runs only in a child forked through the evaluator's sandbox (limits
on time, memory, processes and output; the kernel layers its probe finds: namespaces, a
private view of the file system, seccomp); this process only relays the child's report.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import types
from typing import Any

import torch
from torch import nn

from evaluator import confine
from evaluator.sandbox import Channel, Limits, spawn
from evaluator.wire import WireError, unpack
from server.models.capture import recording
from server.models.extract import check_reproduces
from server.models.problem import WriteError, write_problem
from server.models.profile import ModuleRun
from server.models.target import TargetError, call, construct, make_inputs

_USER_MODULE = "drkernel_user_module"


def build(job: dict[str, Any]) -> dict[str, Any]:
    """The reply for one job: {"ok": true, "reference", "how", "note"} or {"ok": false,
    "error"}."""
    limits = Limits(timeout_s=job["timeout_s"], memory_mb=job["memory_mb"],
                    max_processes=job["max_processes"], max_file_bytes=job["max_output_bytes"])
    boundary = confine.probe("cpu") if os.environ.get("DRKERNEL_SANDBOX") != "off" \
        else confine.Boundary()
    scratch = confine.new_scratch("build-")
    try:
        plan = confine.Plan(boundary, scratch, "cpu", confine.python_paths()) \
            if boundary.kernel_layers else None
        child = spawn(_child, job, limits, scratch, plan, max_report_bytes=16 << 20)
        try:
            payload = child.report()
        except WireError as exc:
            child.kill()
            child.finish()
            return {"ok": False, "error": f"the build sent a bad report: {exc}"}
        outcome = child.finish()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if payload is None:
        why = "ran past its time limit" if outcome.timed_out else \
            f"ended (exit {outcome.exit_code}, signal {outcome.signal}) before reporting"
        return {"ok": False, "error": f"building the problem {why}: {outcome.output[-500:]}"}
    header, _ = unpack(payload)
    return header


def _child(chan: Channel, job: dict[str, Any]) -> None:
    torch.set_num_threads(1)
    try:
        reply = written_problem(job)
    except (TargetError, WriteError) as exc:
        reply = {"ok": False, "error": str(exc)}
    except Exception as exc:  # the user's code may raise anything
        reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    chan.report(reply)


def written_problem(job: dict[str, Any]) -> dict[str, Any]:
    source, name, file_name = job["source"], job["class_name"], job["file_name"]
    module = types.ModuleType(_USER_MODULE)
    module.__file__ = file_name
    sys.modules[_USER_MODULE] = module
    try:
        exec(compile(source, file_name, "exec"), module.__dict__)
    except Exception as exc:
        raise TargetError(f"{file_name} does not run: {type(exc).__name__}: {exc}") from None
    cls = getattr(module, name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TargetError(f"{file_name} defines no nn.Module class {name!r}")
    torch.manual_seed(0)
    with recording() as recorder:
        instance = construct(cls, name, job["init_json"]).eval()
    inputs = make_inputs(module, job["inputs_json"])
    run = ModuleRun("", instance, calls=1, args=inputs, output=call(instance, inputs))
    recorded = {key: c for key, (_, c) in recorder.calls.items()}
    written = write_problem(instance, recorder.of(instance), inputs,
                            f"{name} from {file_name}, written by drkernel for a module request",
                            recorded, file_source=source)
    check_reproduces(written, run)
    return {"ok": True, "reference": written.source, "how": written.how, "note": written.note}


def main() -> None:
    job = json.loads(sys.stdin.read())
    out = os.dup(1)
    os.dup2(2, 1)  # the child's and the libraries' prints must not reach the reply
    reply = build(job)
    os.write(out, (json.dumps(reply) + "\n").encode())


if __name__ == "__main__":
    main()
