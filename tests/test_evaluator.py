"""The evaluator on CPU: every verdict, the problem set, isolation, API and CLI forms."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from evaluator import EvalConfig, EvalResult, Problem, Status, evaluate
from evaluator.api import ProblemError
from tests.judge_support import EXAMPLES, ROOT, Judge, header

SOLUTIONS = sorted(EXAMPLES.glob("*/solution.py"))
WRONG = sorted(EXAMPLES.glob("*/wrong_*.py"))
BROKEN = sorted((EXAMPLES / "broken").glob("*.py"))
RELU = EXAMPLES / "relu"
QUICK = EvalConfig(device="cpu", trial_seed=7, timeout_s=8.0, memory_mb=1024)


@pytest.fixture(scope="module")
def judge() -> Iterator[Judge]:
    j = Judge(workers=2)
    yield j
    j.close()


def assert_still_judges(judge: Judge) -> None:
    result = judge.run(RELU / "solution.py")
    assert result.status is Status.CORRECT, result.error


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.parent.name)
def test_solutions_are_correct(judge: Judge, path: Path) -> None:
    result = judge.run(path)
    assert result.status is Status.CORRECT, (result.error, result.hacks)
    assert result.correct and result.compiled and not result.hacks
    assert result.trials_passed == result.trials_total == 5
    assert result.max_abs_diff is not None and result.max_abs_diff < 1e-2
    assert result.speedup is None and "cpu" in result.speedup_note
    assert result.profile.triton_launches, "an honest solution launches its own kernels"
    assert result.reward == pytest.approx(0.5)


@pytest.mark.parametrize("path", WRONG, ids=lambda p: f"{p.parent.name}-{p.stem}")
def test_wrong_variants_are_incorrect(judge: Judge, path: Path) -> None:
    result = judge.run(path)
    assert result.status is Status.INCORRECT, (result.error, result.hacks)
    assert result.compiled and not result.correct
    assert result.error is not None and result.error.message
    assert result.trials_passed < result.trials_total
    assert result.reward == 0.0
    if "mismatch in trial" in result.error.message:
        assert result.max_abs_diff is not None and result.max_abs_diff > 1e-2


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_broken_candidates_get_a_verdict_and_the_judge_keeps_working(
        judge: Judge, path: Path) -> None:
    expected = header(path, "expect")
    result = judge.run(path, config=QUICK)
    assert result.status.value == expected, (result.status, result.error)
    if result.status in (Status.COMPILE_ERROR, Status.RUNTIME_ERROR):
        assert result.error is not None and result.error.message
    if result.status is Status.RUNTIME_ERROR:
        assert "candidate.py" in result.error.traceback
        assert "evaluator/" not in result.error.traceback, "trimmed to the candidate's frames"
    assert result.reward == 0.0
    assert_still_judges(judge)


def test_compile_error_carries_the_error_text(judge: Judge) -> None:
    result = judge.run(EXAMPLES / "broken" / "syntax_error.py")
    assert result.status is Status.COMPILE_ERROR and not result.compiled
    assert result.error is not None and result.error.type == "SyntaxError"
    assert "line" in result.error.traceback


def test_monkeypatching_torch_does_not_leak_into_the_next_evaluation(judge: Judge) -> None:
    hacked = judge.run(EXAMPLES / "broken" / "monkeypatch_torch.py")
    assert hacked.status is Status.HACKED
    wrong = judge.run(RELU / "wrong_mask.py")
    assert wrong.status is Status.INCORRECT, "a patched allclose must not make this pass"


def test_fork_bomb_leaves_no_processes(judge: Judge) -> None:
    result = judge.run(EXAMPLES / "broken" / "fork_bomb.py", config=QUICK)
    assert result.status in (Status.TIMEOUT, Status.CRASHED, Status.HACKED)
    workers = {w.proc.pid for w in judge.evaluator._workers if w.proc}
    assert _leftovers(workers) == []
    assert_still_judges(judge)


def test_result_round_trips_through_json(judge: Judge) -> None:
    result = judge.run(EXAMPLES / "softmax" / "solution.py")
    again = EvalResult.from_json(result.to_json())
    assert again == result
    assert json.loads(result.to_json())["evaluator_version"] == result.evaluator_version


def test_broken_reference_is_a_problem_error(judge: Judge) -> None:
    with pytest.raises(ProblemError, match="Model"):
        judge.call(judge.evaluator.evaluate(Problem("x = 1\n"), "class ModelNew: pass\n"))


def test_bad_config_is_rejected() -> None:
    with pytest.raises(ValueError, match="correct_trials"):
        EvalConfig(correct_trials=0)
    with pytest.raises(ValueError, match="device"):
        EvalConfig(device="tpu")  # type: ignore[arg-type]


def test_sync_api_for_trainers() -> None:
    result = evaluate(Problem((RELU / "reference.py").read_text()),
                      (RELU / "solution.py").read_text(), EvalConfig(device="cpu", trial_seed=7))
    assert result.status is Status.CORRECT


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "server.cli", "eval", *args], cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=300)


def test_cli_json_prints_one_object_and_exits_zero_on_a_wrong_kernel() -> None:
    proc = _cli(str(RELU / "reference.py"), str(RELU / "wrong_mask.py"), "--device", "cpu",
                "--trials", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["status"] == "incorrect" and data["trials_total"] == 2


def test_cli_usage_errors_exit_non_zero() -> None:
    proc = _cli(str(RELU / "reference.py"), "/nonexistent/candidate.py", "--device", "cpu")
    assert proc.returncode != 0 and "candidate.py" in proc.stderr


def _leftovers(workers: set[int]) -> list[int]:
    """Processes forked (directly or not) from these workers that are still alive: their
    descendants, and forks of a worker that host init adopted. Other workers on the same
    machine (their children run in sessions of their own) are not counted."""
    parents, orphans = {}, []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if b"evaluator.worker" not in cmdline or fields[0] == "Z":
            continue
        pid, ppid, sid = int(entry), int(fields[1]), int(fields[3])
        parents[pid] = ppid
        if ppid == 1 and sid != pid:
            orphans.append(pid)
    found = orphans
    for pid in parents:
        ancestor = parents[pid]
        while ancestor in parents and ancestor not in workers:
            ancestor = parents[ancestor]
        if ancestor in workers and pid not in workers:
            found.append(pid)
    return found
