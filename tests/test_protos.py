"""The checked-in stubs match their sources, and the mapper round-trips every field."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from evaluator.result import (
    CompiledKernel,
    ErrorInfo,
    EvalResult,
    Hack,
    HackKind,
    KernelRow,
    Profile,
    Scaling,
    Status,
    TimingStats,
)
from protos import codegen
from protos.drkernel.v1 import result_pb2 as rpb
from refine.events import Finished, Turn, Usage
from server.mapping import event_to_proto, result_from_proto, result_to_proto


def test_checked_in_stubs_match_a_fresh_codegen(tmp_path: Path) -> None:
    fresh = codegen.generate(tmp_path)
    checked_in = sorted((codegen.PROTO_ROOT / "drkernel" / "v1").glob("*_pb2*.py*"))
    assert [p.name for p in fresh] == [p.name for p in checked_in]
    for new, old in zip(fresh, checked_in, strict=True):
        assert codegen.without_versions(new.read_text()) == codegen.without_versions(
            old.read_text()), f"{old} is stale: run python -m protos.codegen"


def test_version_stamps_are_masked_and_nothing_else() -> None:
    stub = ("GRPC_GENERATED_VERSION = '1.85.4'\n# Protobuf Python Version: 7.36.2\n"
            "_runtime_version.ValidateProtobufRuntimeVersion(\n    _runtime_version.Domain.PUBLIC,"
            "\n    7,\n    36,\n    2,\n    '',\n")
    older = stub.replace("1.85.4", "1.85.1").replace("7.36.2", "7.35.1").replace(
        "    36,\n    2,", "    35,\n    1,")
    assert codegen.without_versions(stub) == codegen.without_versions(older)
    assert codegen.without_versions(stub) != codegen.without_versions(
        stub.replace("PUBLIC", "INTERNAL"))


def full_result() -> EvalResult:
    timing = TimingStats(mean_ms=1.5, median_ms=1.4, std_ms=0.1, min_ms=1.2, max_ms=2.0,
                         trials=100)
    return EvalResult(
        status=Status.HACKED, compiled=True, correct=False, trials_passed=3, trials_total=5,
        max_abs_diff=0.25, mean_abs_diff=0.01,
        error=ErrorInfo("RuntimeError", "boom", "line 3"),
        hacks=[Hack(kind, f"evidence {kind}", static=i % 2 == 0)
               for i, kind in enumerate(HackKind)],
        ref_ms=3.0, kernel_ms=1.5, speedup=2.0, speedup_note="", ref_timing=timing,
        kernel_timing=dataclasses.replace(timing, mean_ms=0.7), device="cuda",
        profile=Profile(kernels=[KernelRow("relu_kernel", 12.5, 3, own=True)],
                        triton_launches=["relu_kernel"], triton_time_coverage=0.75,
                        torch_compute_ops=["aten.addmm"],
                        compiled=[CompiledKernel("relu_kernel", 12, 0, 0, 4),
                                  CompiledKernel("no_ptxas", None, None, 1024, 8)],
                        compile_target="cuda sm_90"),
        trial_seed=123456789, reward=0.0, evaluator_version="9.9", elapsed_s=4.25,
        scaling=Scaling(constants={"batch_size": [16, 3], "dim": [16384, 1021]},
                        input_shapes=[[3, 1021], []]))


def test_eval_result_round_trips_every_field() -> None:
    result = full_result()
    assert result_from_proto(result_to_proto(result)) == result


def test_absent_values_stay_absent() -> None:
    result = EvalResult(status=Status.COMPILE_ERROR, speedup_note="cpu: not measured")
    message = result_to_proto(result)
    assert not message.HasField("speedup") and not message.HasField("error")
    assert not message.profile.HasField("triton_time_coverage")
    assert result_from_proto(message) == result


def test_every_status_and_hack_kind_has_a_proto_value() -> None:
    assert {Status(s.value) for s in Status} == {
        result_from_proto(result_to_proto(EvalResult(status=s))).status for s in Status}
    assert len(rpb.EvalStatus.values()) == len(Status) + 1
    assert len(rpb.HackKind.values()) == len(HackKind) + 1


def test_finished_event_carries_best_summary_and_usage() -> None:
    best = Turn(2, 0, "resp", "code", EvalResult(status=Status.CORRECT, correct=True,
                                                speedup=1.5), 1.25, Usage(10, 4, 6))
    failed = Turn(1, 0, "resp", None, None, 0.0)
    event = event_to_proto(Finished(best, [failed, best], Usage(30, 12, 20), partial=True,
                                    stop_reason="deadline", elapsed_s=3.5))
    finished = event.finished
    assert finished.best.code == "code" and finished.best.turn == 2
    assert finished.partial and finished.summary.stop_reason == "deadline"
    assert [(t.status, t.HasField("speedup")) for t in finished.summary.turns] == [
        ("format_error", False), ("correct", True)]
    assert (finished.usage.prompt_tokens, finished.usage.cached_tokens,
            finished.usage.generated_tokens) == (30, 12, 20)
