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


def test_preset_then_flags_then_prompt_template(tmp_path: Path) -> None:
    template = tmp_path / "first.txt"
    template.write_text("Exactly this:\n{reference}\n")
    args = parse([str(EXAMPLES / "relu/reference.py"), "--preset", "drkernel-stts",
                  "--max-new-tokens", "64", "--device", "cpu",
                  "--prompt-template", str(template)])
    loop, reward, evaluator = optimize.settings(args)
    assert (loop.history, loop.episode_turns, loop.window_turns, loop.iterations) == (
        "window", 5, 4, 10)
    assert (loop.sampling.max_new_tokens, loop.sampling.max_model_len) == (64, 28672)
    assert loop.prompt_template == str(template) and not reward.coverage_reward
    assert (evaluator.device, evaluator.policy) == ("cpu", "kernelgym")
    plain, _, _ = optimize.settings(parse([str(EXAMPLES / "relu/reference.py")]))
    assert plain == optimize.LoopConfig()
