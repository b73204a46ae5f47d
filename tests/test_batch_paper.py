"""Reproducing the paper's figures: data set files, the presets, and the metrics a batch
writes to results.jsonl, metrics.json and report.html."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from batch_support import EXAMPLES, ScriptedByProblem, answer, source
from transformers import AutoTokenizer

from evaluator import EvalConfig, Evaluator
from refine import LoopConfig
from server import cli
from server.batch import (
    BatchProgress,
    BatchSettings,
    LocalSolver,
    ProblemRecord,
    ResultStore,
    TurnBudget,
    TurnRecord,
    find_problems,
    render_report,
    run_batch,
)
from server.batch.metrics import paper_metrics
from server.batch.problems import ProblemFile
from tests.judge_support import FIXTURES

RELU = source("relu/reference.py")
GELU = source("gelu/reference.py")


def write_rows(path: Path) -> Path:
    rows = [
        {"data_source": "kernelbench_level2_validation",
         "prompt": [{"role": "user", "content": "Exact first turn for relu:\n" + RELU}],
         "reward_model": {"ground_truth": RELU, "style": "rule"},
         "extra_info": {"name": "19_ReLU", "problem_id": 19}},
        {"reference": GELU, "prompt": "Exact first turn for gelu:\n" + GELU, "name": "gelu"},
        {"reward_model": {"ground_truth": RELU}, "extra_info": {}},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_data_set_rows_carry_reference_and_prompt(tmp_path: Path) -> None:
    data = write_rows(tmp_path / "level2.jsonl")
    problems = find_problems([str(data), str(EXAMPLES / "add_mul/reference.py")])
    assert [p.name for p in problems] == ["reference", "19_ReLU", "gelu", "level2/2"]
    relu = problems[1]
    assert relu.source == RELU and relu.prompt == "Exact first turn for relu:\n" + RELU
    assert problems[3].prompt is None and problems[0].prompt is None
    (tmp_path / "bad.jsonl").write_text('{"reference": "x = 1"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl row 0: no KernelBench-format reference"):
        find_problems([str(tmp_path / "bad.jsonl")])


def test_parquet_without_pyarrow_says_what_to_do(tmp_path: Path) -> None:
    if importlib.util.find_spec("pyarrow") is not None:
        pytest.skip("pyarrow is installed")
    (tmp_path / "x.parquet").write_bytes(b"PAR1")
    with pytest.raises(ValueError, match="needs pyarrow"):
        find_problems([str(tmp_path / "x.parquet")])


def record(name: str, *turns: tuple[str, float | None]) -> ProblemRecord:
    rows = [TurnRecord(i, 0, status, speedup, 0.0, 10) for i, (status, speedup)
            in enumerate(turns, start=1)]
    best = ProblemRecord(name, name, "failed", rows).best_by_turn(len(rows))
    return ProblemRecord(name, name, "correct" if best else "failed", rows,
                         best_turn=best.turn if best else None,
                         best_speedup=best.speedup if best else None).with_verdicts()


def test_paper_metrics_single_shot_per_turn_last_and_best() -> None:
    records = [
        record("a", ("correct", 1.3), ("incorrect", None), ("correct", 0.9)),
        record("b", ("compile_error", None), ("correct", 1.0), ("correct", 1.25)),
        record("c", ("incorrect", None), ("hacked", None), ("incorrect", None)),
        record("d", ("correct", 0.5), ("correct", 1.1), ("compile_error", None)),
    ]
    m = paper_metrics(records)
    assert (m.single_shot.correct, m.single_shot.fast_1, m.single_shot.fast_1_2) == (
        0.5, 0.25, 0.25)
    assert [(f.correct, f.fast_1, f.fast_1_2) for f in m.per_turn] == [
        (0.5, 0.25, 0.25), (0.5, 0.5, 0.0), (0.5, 0.25, 0.25)]
    assert m.last_turn == m.per_turn[2]
    assert (m.best.correct, m.best.fast_1, m.best.fast_1_2) == (0.75, 0.75, 0.5)
    assert m.speed_measured and m.best.problems == 4
    assert records[0].single_shot is not None and records[0].single_shot.speedup == 1.3
    assert records[1].last_turn is not None and records[1].last_turn.speedup == 1.25
    again = ProblemRecord.from_dict(json.loads(records[0].to_json()))
    assert again == records[0]
    html = render_report(records)
    assert "Paper metrics" in html and "<td>best across turns</td><td>75.0%</td>" in html


def test_report_counts_kernelgym_successes_the_other_policies_fail() -> None:
    lazy = {"kernelgym": "correct", "standard": "hacked", "strict": "hacked"}
    partial = {"kernelgym": "correct", "standard": "correct", "strict": "hacked"}
    full = dict.fromkeys(("kernelgym", "standard", "strict"), "correct")
    wrong = dict.fromkeys(("kernelgym", "standard", "strict"), "incorrect")
    turns = [TurnRecord(i, 0, s["kernelgym"], None, 0.0, 10, s)
             for i, s in enumerate((lazy, partial, full, wrong, lazy), start=1)]
    m = paper_metrics([ProblemRecord("a", "a", "correct", turns)])
    assert (m.rejected.kernelgym_correct, m.rejected.standard, m.rejected.strict) == (4, 2, 3)
    assert "Of the 4 candidates KernelGYM's rules pass, <code>standard</code> fails 2" in (
        render_report([ProblemRecord("a", "a", "correct", turns)]))
    assert paper_metrics([record("b", ("correct", None))]).rejected.kernelgym_correct == 0


@pytest.mark.asyncio
async def test_a_kernelgym_batch_shows_what_standard_rejects(
        tmp_path: Path, tiny_model_dir: Path) -> None:
    """torch does the ReLU and a Triton kernel copies it: KernelGYM's reward passes it."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    problems = find_problems([str(EXAMPLES / "relu/reference.py")])
    lazy = (FIXTURES / "partial/relu_torch_copy.py").read_text()
    backend = ScriptedByProblem(tokenizer, {"relu": [answer(lazy)]})
    settings = BatchSettings(out=tmp_path / "out", turns=1, max_turns=1)
    config = EvalConfig(device="cpu", correct_trials=2, policy="kernelgym")
    async with Evaluator(workers=1, config=config) as ev:
        solver = LocalSolver(backend, ev, LoopConfig(max_turns=1),
                             TurnBudget([p.name for p in problems], 1, 1), None)
        await run(problems, solver, settings)
    rejected = json.loads((tmp_path / "out/metrics.json").read_text())["rejected"]
    assert rejected == {"kernelgym_correct": 1, "standard": 1, "strict": 1}
    [line] = (tmp_path / "out/results.jsonl").read_text().splitlines()
    assert json.loads(line)["turns"][0]["policy_statuses"] == {
        "standard": "hacked", "strict": "hacked", "kernelgym": "correct"}


@pytest.mark.asyncio
async def test_a_data_set_batch_uses_row_prompts_and_writes_metrics(
        tmp_path: Path, tiny_model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    problems = find_problems([str(write_rows(tmp_path / "level2.jsonl"))])[:2]
    backend = ScriptedByProblem(tokenizer, {"relu": [answer(source("relu/solution.py"))],
                                            "gelu": ["no code"]})
    settings = BatchSettings(out=tmp_path / "out", turns=1, max_turns=1)
    budget = TurnBudget([p.name for p in problems], 1, 1)
    config = EvalConfig(device="cpu", trial_seed=7, correct_trials=2)
    async with Evaluator(workers=1, config=config) as ev:
        solver = LocalSolver(backend, ev, LoopConfig(max_turns=1), budget, None)
        await run(problems, solver, settings)
    firsts = [s.prompts[0].messages for s in backend.scripts.values()]
    assert [{"role": "user", "content": p.prompt} for p in problems] == [
        messages[0] for messages in firsts]
    metrics = json.loads((tmp_path / "out/metrics.json").read_text())
    assert metrics["single_shot"]["correct"] == 0.5 and not metrics["speed_measured"]
    lines = [json.loads(x) for x in (tmp_path / "out/results.jsonl").read_text().splitlines()]
    assert {line["name"]: line["single_shot"]["correct"] for line in lines} == {
        "19_ReLU": True, "gelu": False}


async def run(problems: list[ProblemFile], solver: LocalSolver,
              settings: BatchSettings) -> None:
    await run_batch(problems, solver, ResultStore(settings.out), settings,
                    BatchProgress(enabled=False))


@pytest.mark.slow
def test_cli_stts_preset_runs_its_14_turns(tmp_path: Path, tiny_model_dir: Path) -> None:
    out = tmp_path / "out"
    argv = ["batch", str(EXAMPLES / "relu/reference.py"), "--preset", "drkernel-stts",
            "--out", str(out), "--no-progress", "--backend", "transformers", "--model",
            str(tiny_model_dir), "--device", "cpu", "--workers", "1",
            "--set", "loop.sampling.max_new_tokens=4"]
    assert cli.main(argv) == 0
    [only] = ResultStore(out).load().values()
    assert only.turns_used == 14 and only.outcome == "failed"
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["per_turn"]) == 14
    assert "Paper metrics" in (out / "report.html").read_text()
