"""A verdict in the shape Dr.Kernel saw during training: KernelGYM's evaluation response
(`kernelgym/server/api/models.py`) overlaid with the reward client's summary
(`drkernel/kernel/rewards/reward_client.py`).

The field names, status values and nesting are KernelGYM's; what our judge finds beyond
them (hack evidence, partial-work notes, why speed was not measured, any field the judge
adds later) goes into `metadata`, where KernelGYM keeps its own diagnostics.
"""

from __future__ import annotations

from typing import Any

from evaluator import EvalResult, Status

MISSING_MODEL_NEW = "Client validation failed: missing class ModelNew"
_MAPPED = {"status", "compiled", "correct", "trials_passed", "trials_total", "max_abs_diff",
           "mean_abs_diff", "error", "hacks", "ref_ms", "kernel_ms", "speedup", "speedup_note",
           "ref_timing", "kernel_timing", "device", "profile", "reward", "evaluator_version",
           "elapsed_s", "findings", "policy", "trial_seed"}
_PROFILE_MAPPED = {"kernels", "triton_launches", "triton_time_coverage"}


def kernelgym_state(result: EvalResult | None, reward: float) -> dict[str, Any]:
    """`result` is None when the response held no usable `ModelNew` (a client-side failure,
    which KernelGYM's client reports without asking the server)."""
    if result is None:
        return {"reward": reward, "score": reward, "success": False, "correctness": False,
                "compiled": False, "speedup": 0.0, "error": MISSING_MODEL_NEW,
                "status": "failed", "error_message": MISSING_MODEL_NEW}
    return _response(result) | _reward_summary(result, reward)


def _response(result: EvalResult) -> dict[str, Any]:
    measured = result.correct and result.speedup is not None
    return {
        "status": _status(result),
        "compiled": result.compiled,
        "correctness": result.correct,
        "decoy_kernel": result.status is Status.HACKED,
        "reference_runtime": result.ref_ms if measured else -1.0,
        "kernel_runtime": result.kernel_ms if measured else -1.0,
        "speedup": result.speedup if measured else 0.0,
        "metadata": _metadata(result),
        "error_message": _error_text(result),
        "processing_time": round(result.elapsed_s, 3),
    }


def _status(result: EvalResult) -> str:
    if result.status is Status.TIMEOUT:
        return "timeout"
    return "completed" if result.compiled else "failed"


def _error_text(result: EvalResult) -> str | None:
    if result.error is None:
        return None
    return f"{result.error.type}: {result.error.message}"


def _metadata(result: EvalResult) -> dict[str, Any]:
    meta: dict[str, Any] = {"device": result.device, "backend": "triton",
                            "num_correct_trials": result.trials_total}
    if result.trials_total:
        meta["correctness_trials"] = f"({result.trials_passed} / {result.trials_total})"
    if result.compiled and not result.correct and result.trials_passed < result.trials_total:
        meta["correctness_issue"] = "Output mismatch"
    if result.max_abs_diff is not None:
        meta["max_difference"] = [f"{result.max_abs_diff:.6f}"]
    if result.mean_abs_diff is not None:
        meta["avg_difference"] = [f"{result.mean_abs_diff:.6f}"]
    meta |= _error_metadata(result)
    meta |= _profile_metadata(result)
    if result.hacks:
        meta["hack_evidence"] = [f"{h.kind}: {h.evidence}" for h in result.hacks]
    if result.speedup is None and result.speedup_note:
        meta["speedup_note"] = result.speedup_note
    meta |= _other_findings(result)
    return meta


def _error_metadata(result: EvalResult) -> dict[str, Any]:
    error = result.error
    if error is None:
        return {}
    detail = error.traceback or f"{error.type}: {error.message}"
    if not result.compiled:
        return {"compilation_error": detail}
    return {"runtime_error": detail, "runtime_error_name": error.type}


def _profile_metadata(result: EvalResult) -> dict[str, Any]:
    profile = result.profile
    if not profile.triton_launches and not profile.kernels:
        return {}
    own = [k for k in profile.kernels if k.own]
    total_us = sum(k.device_time_us for k in profile.kernels)
    own_us = sum(k.device_time_us for k in own)
    meta: dict[str, Any] = {
        "triton_profiler_used": bool(profile.triton_launches),
        "triton_profiler_matches": list(profile.triton_launches),
    }
    if profile.kernels:
        meta["profiling"] = {
            "kernels": [{"name": k.name, "cuda_time_us": k.device_time_us, "count": k.count}
                        for k in sorted(profile.kernels, key=lambda k: -k.device_time_us)],
            "kernel_count": len(profile.kernels),
            "total_cuda_time_us": total_us,
        }
        meta["num_custom_kernels"] = len(own)
        meta["num_total_kernels"] = len(profile.kernels)
        meta["triton_kernel_coverage"] = (
            f"Run {len(own)} custom kernels / Total {len(profile.kernels)} kernels, "
            f"Coverage: {_percent(len(own), len(profile.kernels))}")
        meta["custom_kernel_cuda_time_coverage"] = (
            f"Custom kernel CUDA time: {own_us:.2f}us / Total time: {total_us:.2f}us, "
            f"Coverage: {_percent(own_us, total_us)}")
    return meta


def _other_findings(result: EvalResult) -> dict[str, Any]:
    """Whatever else the judge reported (torch ops still run, partial-work notes, ...)."""
    data = result.to_dict()
    found = {k: v for k, v in data.items() if k not in _MAPPED and _present(v)}
    if data.get("findings"):  # what does not fail under the judge's policy, reported
        found["judge_findings"] = [f"{f['kind']}: {f['evidence']}" for f in data["findings"]]
    profile = data.get("profile") or {}
    found |= {k: v for k, v in profile.items() if k not in _PROFILE_MAPPED and _present(v)}
    return found


def _present(value: Any) -> bool:
    return value is not None and value != "" and value != [] and value != {}


def _reward_summary(result: EvalResult, reward: float) -> dict[str, Any]:
    own = [k for k in result.profile.kernels if k.own]
    measured = result.correct and result.speedup is not None
    return {
        "reward": reward,
        "score": reward,
        "success": result.correct,
        "correctness": result.correct,
        "compiled": result.compiled,
        "speedup": result.speedup if measured else 0.0,
        "profiling": None,
        "num_custom_kernel": len(own),
        "num_total_kernels": len(result.profile.kernels),
        "custom_kernel_cuda_time_in_profiling_us": sum(k.device_time_us for k in own),
        "total_kernel_run_time_in_profiling_us": sum(
            k.device_time_us for k in result.profile.kernels),
    }


def _percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:.2f}%" if whole else "0.00%"
