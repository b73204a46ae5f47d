"""`drkernel optimize` end to end with the tiny model on CPU."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from server.commands import optimize

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="drkernel")
    optimize.add_parser(parser.add_subparsers())
    return parser.parse_args(["optimize", *argv])


def test_optimize_writes_transcript_and_reports_no_kernel(
        tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = parse([str(EXAMPLES / "relu/reference.py"), "--backend", "transformers",
                  "--model", str(tiny_model_dir), "--device", "cpu", "--turns", "2",
                  "--max-new-tokens", "8", "--workers", "1", "--out", str(tmp_path)])
    assert optimize.run(args) == 1
    record = json.loads((tmp_path / "transcript.json").read_text())
    assert [t["turn"] for t in record["turns"]] == [1, 2]
    assert all(t["format_error"] and t["result"] is None for t in record["turns"])
    assert "class Model(nn.Module)" in record["prompt"]
    assert record["best"] is None and record["stop_reason"] == "max_turns"
    assert not (tmp_path / "best.py").exists()
    out = capsys.readouterr().out
    assert "turn 2" in out and "format_error" in out and "no correct kernel" in out
