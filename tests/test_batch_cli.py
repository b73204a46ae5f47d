"""`drkernel batch` end to end: the tiny model in process, the CPU judge, a resumed rerun."""

from __future__ import annotations

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
