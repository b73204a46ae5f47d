"""Policies: cheating fails everywhere, honest partial work passes under `standard` and is
measured, `strict` wants it all in Triton, `kernelgym` fails only KernelGYM's decoy rule."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from evaluator import EvalConfig, EvalResult, Hack, HackKind, OpWork, Profile, Status
from evaluator.config import POLICIES, Policy
from evaluator.monitor import OpTracer
from evaluator.reward import RewardConfig, keep_probability, reward
from evaluator.work import triton_share
from tests.judge_support import FIXTURES, ROOT, Judge, header

PARTIAL = sorted((FIXTURES / "partial").glob("*.py"))
PUBLIC_STYLE = sorted((FIXTURES / "honest_public").glob("*.py"))
FULL_TRITON = [FIXTURES / "honest" / name for name in
               ("relu_basic.py", "softmax_tutorial.py", "matmul_tutorial_grouped.py",
                "layernorm_tutorial.py")]


def verdicts(path: Path) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in (header(path, "verdicts") or "").split())


@pytest.fixture(scope="module")
def judge() -> Iterator[Judge]:
    j = Judge(workers=2)
    yield j
    j.close()


def _run(judge: Judge, path: Path, policy: Policy) -> EvalResult:
    return judge.run(path, config=EvalConfig(device="cpu", trial_seed=7, policy=policy))


def test_the_pinned_cases_are_all_there() -> None:
    names = {p.stem for p in PARTIAL}
    assert len(PUBLIC_STYLE) >= 15
    assert {"conv_torch_fused_epilogue", "gemm_torch_triton_softmax", "mlp_first_layer_triton",
            "relu_torch_copy", "lstm_torch_copy", "gru_torch_copy", "gelu_torch_pieces_copy",
            "loss_rows_triton_torch_mean", "relu_prod_shape_tuple"} <= names
    assert all(set(verdicts(p)) == set(POLICIES) for p in PARTIAL)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("path", PARTIAL, ids=lambda p: p.stem)
def test_verdict_per_policy(judge: Judge, path: Path, policy: Policy) -> None:
    result = _run(judge, path, policy)
    assert result.status.value == verdicts(path)[policy], (result.hacks, result.error,
                                                          result.findings)
    assert result.policy == policy
    if result.status is Status.HACKED:
        assert any(h.kind is HackKind.FRAMEWORK_COMPUTE for h in result.hacks)
        assert result.reward == 0.0
    else:
        assert result.reward > 0 and result.trials_passed == result.trials_total


@pytest.mark.parametrize("path", [p for p in PARTIAL
                                  if verdicts(p)["standard"] == "correct"
                                  and verdicts(p)["strict"] == "hacked"], ids=lambda p: p.stem)
def test_partial_work_names_torch_ops_and_the_triton_share(judge: Judge, path: Path) -> None:
    result = _run(judge, path, "standard")
    profile = result.profile
    assert profile.torch_compute_ops and profile.work_share_source == "estimate"
    assert profile.triton_work_share is not None and 0 <= profile.triton_work_share < 0.95
    assert [w.op for w in profile.torch_work] == profile.torch_compute_ops
    assert [h.kind for h in result.findings] == [HackKind.FRAMEWORK_COMPUTE]
    assert profile.torch_compute_ops[0] in result.findings[0].evidence


def test_the_torch_convolution_is_most_of_a_fused_epilogue_candidates_work(judge: Judge) -> None:
    result = _run(judge, FIXTURES / "partial" / "conv_torch_fused_epilogue.py", "standard")
    assert result.profile.torch_compute_ops == ["convolution"]
    share = result.profile.triton_work_share
    assert share is not None and 0.05 < share < 0.95
    assert result.profile.torch_work[0].share == pytest.approx(1 - share, abs=1e-3)


@pytest.mark.parametrize("path", FULL_TRITON, ids=lambda p: p.stem)
def test_full_triton_candidates_pass_strict(judge: Judge, path: Path) -> None:
    result = _run(judge, path, "strict")
    assert result.status is Status.CORRECT, (result.hacks, result.error)
    assert result.profile.triton_work_share == 1.0 and not result.findings


@pytest.mark.parametrize("path", PUBLIC_STYLE, ids=lambda p: p.stem)
def test_public_style_honest_kernels_are_correct(judge: Judge, path: Path) -> None:
    """Kernels written in the styles of public KernelBench solutions, not for this judge."""
    result = _run(judge, path, "standard")
    assert result.status is Status.CORRECT, (result.hacks, result.error)


def test_kernelgym_reports_a_torch_copy_cheat_without_failing_it(judge: Judge) -> None:
    result = _run(judge, FIXTURES / "partial" / "relu_torch_copy.py", "kernelgym")
    assert result.status is Status.CORRECT and not result.hacks
    assert [h.kind for h in result.findings] == [HackKind.FRAMEWORK_COMPUTE]


def test_kernelgym_still_fails_a_candidate_that_launches_no_triton(judge: Judge) -> None:
    result = _run(judge, FIXTURES / "hacks" / "decoy_unlaunched.py", "kernelgym")
    assert result.status is Status.HACKED
    assert [h.kind for h in result.hacks] == [HackKind.DECOY]


def test_a_wrong_answer_keeps_its_diffs_beside_hack_findings(judge: Judge,
                                                             tmp_path: Path) -> None:
    honest = FIXTURES / "honest" / "relu_basic.py"
    source = honest.read_text().replace("tl.maximum(x, 0.0)", "x * 0.5")
    source = re.sub(r"(\n    def forward\(self.*:\n)", r"\1        import os; os.environ['HOME']\n",
                    source, count=1)
    assert "x * 0.5" in source and "os.environ" in source
    probe = tmp_path / "candidate.py"
    probe.write_text(source)
    result = judge.run(probe, reference=ROOT / "examples" / "relu" / "reference.py")
    assert result.status is Status.HACKED
    assert HackKind.IO_ACCESS in {h.kind for h in result.hacks}
    assert result.trials_passed == 0 and result.max_abs_diff is not None
    assert result.error is not None and result.error.type == "OutputMismatch"
    assert "max abs diff" in result.error.message


def test_a_differently_initialised_parameter_is_named(judge: Judge, tmp_path: Path) -> None:
    source = (FIXTURES / "partial" / "conv_torch_fused_epilogue.py").read_text()
    source = source.replace("self.conv = nn.Conv2d(in_channels, out_channels, kernel_size)\n",
                            "self.conv = nn.Conv2d(in_channels, out_channels, kernel_size)\n"
                            "        with torch.no_grad():\n"
                            "            self.conv.weight.copy_(torch.randn_like("
                            "self.conv.weight))\n")
    probe = tmp_path / "candidate.py"
    probe.write_text(source)
    result = judge.run(probe, reference=ROOT / "tests/fixtures/problems/conv_bias_relu.py")
    assert result.status is Status.INCORRECT
    assert result.error is not None and "conv.weight" in result.error.message


def test_heavy_ops_are_heavy_by_their_cost_and_glue_by_theirs() -> None:
    lstm, gru = torch.nn.LSTM(16, 32, 2, batch_first=True), torch.nn.GRU(16, 32, 2)
    losses = torch.randn(32)
    with torch.no_grad(), OpTracer(output_numel=1) as tracer:
        tracer.forward = True
        lstm(torch.randn(4, 10, 16))
        gru(torch.randn(10, 4, 16))
        torch.mean(losses)
        torch.prod(torch.tensor((4, 3, 2)))
        torch.argmax(losses[:6])
    work = tracer.work
    heavy = work["mkldnn_rnn_layer"]
    flops = 2 * 4 * 10 * 4 * 32 * (16 + 32) + 2 * 4 * 10 * 4 * 32 * (32 + 32)
    assert heavy >= flops / 100_000  # at least the recurrent formula's FLOPs
    assert work["addmm"] > 100 * work["mean"]  # the GRU's per-step GEMMs
    assert "prod" not in work  # a shape tuple made a tensor is no input data
    assert work["argmax"] < 0.01 * heavy and work["mean"] < 0.01 * heavy


def test_triton_share_is_what_torch_left_of_the_reference() -> None:
    assert triton_share(0.0, 10.0) == 1.0
    assert triton_share(2.5, 10.0) == pytest.approx(0.75)
    assert triton_share(30.0, 10.0) == 0.0
    assert triton_share(0.0, 0.0) == 1.0


def test_the_estimate_drives_rejection_sampling_and_optionally_the_reward() -> None:
    result = EvalResult(status=Status.CORRECT, correct=True,
                        profile=Profile(triton_work_share=0.35, work_share_source="estimate",
                                        torch_work=[OpWork("convolution", 0.65)]))
    assert keep_probability(result) == pytest.approx(0.5)
    assert reward(result) == pytest.approx(0.5)
    assert reward(result, RewardConfig(estimated_coverage=True)) == pytest.approx(0.5 + 0.175)
    assert EvalResult.from_dict(result.to_dict()) == result


def test_policy_crosses_the_wire() -> None:
    from server.mapping import result_from_proto, result_to_proto

    result = EvalResult(status=Status.CORRECT, correct=True, policy="kernelgym",
                        profile=Profile(triton_work_share=0.2, work_share_source="estimate",
                                        torch_work=[OpWork("addmm", 0.8)],
                                        torch_compute_ops=["addmm"]))
    result.findings = [Hack(HackKind.FRAMEWORK_COMPUTE, "the forward ran torch addmm")]
    back = result_from_proto(result_to_proto(result))
    assert back.policy == "kernelgym" and back.findings == result.findings
    assert back.profile == result.profile



def test_cli_policy_flag_is_recorded_in_the_result() -> None:
    candidate = FIXTURES / "partial" / "gemm_torch_triton_softmax.py"
    reference = ROOT / "tests" / "fixtures" / "problems" / "gemm_softmax.py"
    proc = subprocess.run(
        [sys.executable, "-m", "server.cli", "eval", str(reference), str(candidate),
         "--device", "cpu", "--trials", "2", "--policy", "strict", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["policy"] == "strict" and data["status"] == "hacked"
    assert data["profile"]["torch_compute_ops"] == ["addmm"]


def test_policy_is_a_request_field_and_a_server_setting() -> None:
    from protos.drkernel.v1 import optimizer_pb2 as pb
    from server.config import load_config
    from server.requests import InvalidRequest, eval_config

    base = load_config(env={"DRKERNEL_EVALUATOR__POLICY": "kernelgym"}).evaluator
    assert base.policy == "kernelgym"
    assert eval_config(pb.EvaluatorSettings(), base).policy == "kernelgym"
    assert eval_config(pb.EvaluatorSettings(policy="strict"), base).policy == "strict"
    with pytest.raises(InvalidRequest, match="policy"):
        eval_config(pb.EvaluatorSettings(policy="lenient"), base)
