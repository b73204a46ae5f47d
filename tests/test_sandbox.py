"""The child's confinement, below the audit hook: what holds even if that were bypassed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Any

from evaluator.sandbox import Channel, Limits, spawn
from evaluator.wire import unpack
from tests.judge_support import ROOT

LIMITS = Limits(timeout_s=20, memory_mb=512, max_processes=64, max_file_bytes=1 << 20)


def _report_fds(chan: Channel, job: dict[str, Any]) -> None:
    chan.report({"fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd"))})


def test_child_keeps_only_its_own_pipes(tmp_path: Any) -> None:
    leaked = os.open(os.devnull, os.O_RDONLY)  # stands for the worker's protocol stream
    try:
        child = spawn(_report_fds, {}, LIMITS, str(tmp_path))
        frame = child.report()
        outcome = child.finish()
    finally:
        os.close(leaked)
    assert frame is not None and outcome.exit_code == 0
    fds = set(unpack(frame)[0]["fds"])
    assert leaked not in fds
    assert len(fds - {0, 1, 2}) == 3, fds  # its two pipes, and the directory being listed


ORPHAN = textwrap.dedent("""
    import os, sys, time
    from evaluator.sandbox import Limits, become_subreaper, spawn

    def detach(chan, job):
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                with open(job["pidfile"], "w") as f:
                    f.write(str(os.getpid()))
                time.sleep(60)
            os._exit(0)
        time.sleep(1)

    become_subreaper()
    limits = Limits(timeout_s=3, memory_mb=None, max_processes=64, max_file_bytes=1 << 20)
    child = spawn(detach, {"pidfile": sys.argv[1]}, limits, sys.argv[2])
    child.report()
    child.finish()
    time.sleep(0.5)
    pid = int(open(sys.argv[1]).read())
    stat = f"/proc/{pid}/stat"
    alive = os.path.exists(stat) and open(stat).read().split()[2] != "Z"
    print("alive" if alive else "gone")
""")


def test_a_detached_grandchild_does_not_outlive_its_evaluation(tmp_path: Any) -> None:
    pidfile = tmp_path / "orphan.pid"
    proc = subprocess.run([sys.executable, "-c", ORPHAN, str(pidfile), str(tmp_path)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert pidfile.exists(), "the grandchild ran"
    assert proc.stdout.strip() == "gone"


def test_only_triton_may_start_programs_and_only_its_compiler_tools() -> None:
    """On a GPU, Triton runs ptxas and a C compiler inside the candidate's first forward."""
    from evaluator import monitor

    source = "def launch(mon, program):\n    return mon.unguarded(1, program)\n"
    triton_like: dict[str, Any] = {}
    exec(compile(source, monitor._TRITON_DIR + "compiler_stand_in.py", "exec"), triton_like)
    mon = monitor.Monitor(candidate_path="/scratch/candidate.py", active=True)
    assert triton_like["launch"](mon, "/usr/local/cuda/bin/ptxas") is False
    assert triton_like["launch"](mon, "/usr/bin/gcc") is False
    assert triton_like["launch"](mon, "/bin/sh") is True
    assert mon.unguarded(1, "/usr/bin/gcc") is True, "from anywhere else, nothing runs"


def test_a_caller_that_is_not_a_subreaper_keeps_its_own_children(tmp_path: Any) -> None:
    """Only the worker reaps leftovers: a test or trainer calling `spawn` keeps its children."""
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        child = spawn(_report_fds, {}, LIMITS, str(tmp_path))
        child.report()
        child.finish()
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
