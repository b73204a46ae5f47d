"""bench/kernelbench_cpu.py on a few real KernelBench problems (the full run is a benchmark)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import kernelbench_cpu as bench

needs_kernelbench = pytest.mark.skipif(not bench.DEFAULT_ROOT.is_dir(),
                                       reason="KernelBench problems not present")


@needs_kernelbench
def test_selection_is_reported_and_reproducible() -> None:
    first = bench.problems(bench.DEFAULT_ROOT, [1, 3], limit=2, sample=None, seed=0)
    assert [(level, p.stem.split("_")[0]) for level, p in first] == [
        (1, "1"), (1, "2"), (3, "1"), (3, "2")]
    sample = bench.problems(bench.DEFAULT_ROOT, [2], limit=None, sample=3, seed=7)
    assert sample == bench.problems(bench.DEFAULT_ROOT, [2], limit=None, sample=3, seed=7)
    assert len(sample) == 3


def test_summary_counts_shares_and_targets() -> None:
    outcomes = [bench.Outcome(1, "a", True, 2.0, True), bench.Outcome(1, "b", False, 9.0, True),
                bench.Outcome(3, "c", True, 4.0, False)]
    lines = bench.summary(outcomes)
    assert lines[0].startswith("level 1: 1/2 run (50%, target 95%), median 2.0 s")
    assert lines[1].startswith("level 3: 1/1 run (100%")
    assert bench.missed_targets(outcomes) == [1]


def test_missing_problem_folder_is_not_an_error(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--root", str(tmp_path / "absent")]) == 0
    assert "nothing to run" in capsys.readouterr().out


@needs_kernelbench
def test_a_few_real_problems_load_and_run_on_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--levels", "1", "2", "--limit", "1", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "level 1: 1/1 run" in out and "level 2: 1/1 run" in out
    assert out.count("scaled") >= 2  # both are GPU-sized
