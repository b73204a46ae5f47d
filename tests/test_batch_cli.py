"""`drkernel batch` end to end: the tiny model in process, the CPU judge, a resumed rerun."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from batch_support import EXAMPLES

from server import cli
from server.batch import ResultStore


@pytest.mark.slow
def test_cli_runs_a_batch_with_the_tiny_model(tmp_path: Path, tiny_model_dir: Path) -> None:
    out = tmp_path / "out"
    argv = ["batch", str(EXAMPLES / "relu"), str(EXAMPLES / "gelu" / "reference.py"),
            "--out", str(out), "--turns", "1", "--no-progress", "--backend", "transformers",
            "--model", str(tiny_model_dir), "--device", "cpu", "--workers", "1",
            "--set", "loop.sampling.max_new_tokens=8", "--set", "evaluator.timeout_s=30"]
    assert cli.main(argv) == 0
    records = ResultStore(out).load()
    assert set(records) == {"relu/reference", "gelu/reference"}
    assert all(r.outcome == "failed" and r.turns_used == 1 for r in records.values())
    assert (out / "report.html").exists()
    assert cli.main(argv) == 0, "the rerun has nothing left to do"
    assert len((out / "results.jsonl").read_text().splitlines()) == 2


@pytest.mark.slow
def test_ctrl_c_prints_one_line_and_the_rerun_resumes(tmp_path: Path,
                                                      tiny_model_dir: Path) -> None:
    """SIGINT to the whole process group, as a terminal sends it: no traceback from the CLI
    or its evaluator workers, one line saying what was saved and how to resume."""
    out = tmp_path / "out"
    problems = [str(EXAMPLES / name / "reference.py")
                for name in ("relu", "gelu", "softmax", "add_mul", "layernorm", "rmsnorm")]
    argv = [sys.executable, "-m", "server.cli", "batch", *problems, "--out", str(out),
            "--turns", "2", "--concurrency", "1", "--no-progress", "--backend",
            "transformers", "--model", str(tiny_model_dir), "--device", "cpu", "--workers",
            "1", "--set", "loop.sampling.max_new_tokens=8"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, cwd=Path(__file__).resolve().parents[1])
    deadline = time.monotonic() + 120
    while not (out / "results.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr + stdout
    [interrupted] = [line for line in stderr.splitlines() if "interrupted" in line]
    assert "saved in" in interrupted and "to resume" in interrupted
    assert "relu/reference" in stderr, "--no-progress keeps the line per finished problem"
    saved = ResultStore(out).finished()
    assert 1 <= len(saved) < len(problems)
