"""The user message that follows each turn: the verdict, in one of two formats."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from importlib import resources

from evaluator import EvalResult
from refine.config import FeedbackFormat
from refine.kernelgym import kernelgym_state

FORMAT_ERROR = "format_error"
NO_CODE_BLOCK = (
    "No `class ModelNew` was found in the response's last code block (or, without one, in "
    "the response), so nothing was evaluated. Put the complete implementation, with all "
    "imports, in one ```python code block."
)
MAX_ERROR_CHARS = 4000
MAX_TRACEBACK_LINES = 30
TOP_KERNELS = 5


def render_feedback(result: EvalResult | None, reward: float, fmt: FeedbackFormat) -> str:
    """`result` is None when the response had no usable `ModelNew` (a format error)."""
    return _RENDERERS[fmt](result, reward)


def _kernelgym(result: EvalResult | None, reward: float) -> str:
    state = kernelgym_state(result, reward)
    return _kernelgym_template().replace("{feedback}",
                                         json.dumps(state, indent=2, ensure_ascii=False))


@functools.cache
def _kernelgym_template() -> str:
    return resources.files("refine").joinpath("templates/feedback_kernelgym.txt").read_text()


def _concise(result: EvalResult | None, reward: float) -> str:
    if result is None:
        lines = [f"Status: {FORMAT_ERROR}", NO_CODE_BLOCK]
    else:
        lines = [f"Status: {result.status}", *_error_lines(result), *_correctness_lines(result),
                 *_timing_lines(result), *_kernel_lines(result), *_hack_lines(result)]
    lines.append(f"Reward: {reward:.3f}")
    lines.append("Improve the implementation and return `ModelNew` in one ```python code block.")
    return "\n".join(lines)


def _error_lines(result: EvalResult) -> list[str]:
    if result.error is None:
        return []
    message = result.error.message
    if len(message) > MAX_ERROR_CHARS:
        message = message[:MAX_ERROR_CHARS] + " …[truncated]"
    lines = [f"Error: {result.error.type}: {message}"]
    if result.error.traceback:
        tail = result.error.traceback.rstrip().splitlines()[-MAX_TRACEBACK_LINES:]
        lines += ["Traceback (last lines):", *tail]
    return lines


def _correctness_lines(result: EvalResult) -> list[str]:
    if not result.trials_total:
        return []
    line = f"Correctness: {result.trials_passed}/{result.trials_total} trials passed"
    if result.max_abs_diff is not None:
        line += f"; max abs diff {result.max_abs_diff:.3g}"
    if result.mean_abs_diff is not None:
        line += f", mean abs diff {result.mean_abs_diff:.3g}"
    return [line]


def _timing_lines(result: EvalResult) -> list[str]:
    if result.speedup is None:
        return [f"Speedup: not measured ({result.speedup_note})"] if result.speedup_note else []
    return [f"Runtime: reference {result.ref_ms:.4g} ms, yours {result.kernel_ms:.4g} ms, "
            f"speedup {result.speedup:.3f}x"]


def _kernel_lines(result: EvalResult) -> list[str]:
    kernels = sorted(result.profile.kernels, key=lambda k: k.device_time_us, reverse=True)
    lines = [f"  {k.name}{' (yours)' if k.own else ''}: {k.device_time_us:.1f} us x{k.count}"
             for k in kernels[:TOP_KERNELS]]
    if result.profile.triton_time_coverage is not None:
        lines.append(f"  Triton time coverage: {result.profile.triton_time_coverage:.0%}")
    if result.profile.torch_compute_ops:
        ops = ", ".join(result.profile.torch_compute_ops)
        lines.append(f"  PyTorch compute ops still run: {ops}")
        if result.profile.work_share_source == "estimate":
            lines.append(f"  Triton share of the work (estimate): "
                         f"{result.profile.triton_work_share:.0%}; move the rest into Triton")
    lines += _compiled_lines(result)
    return ["Top kernels:", *lines] if lines else []


def _compiled_lines(result: EvalResult) -> list[str]:
    """What the GPU compiler reported for each kernel (cpu judging compiles them too)."""
    lines = []
    for k in result.profile.compiled[:TOP_KERNELS]:
        regs = "registers unknown" if k.registers is None else f"{k.registers} registers"
        spills = "" if not k.spill_bytes else f", {k.spill_bytes} B spilled"
        lines.append(f"  {k.name} on {result.profile.compile_target}: {regs}{spills}, "
                     f"{k.shared_bytes} B shared memory, {k.num_warps} warps")
    return lines


def _hack_lines(result: EvalResult) -> list[str]:
    return [f"Rejected ({h.kind}): {h.evidence}" for h in result.hacks] + [
        f"Noted ({h.kind}, not failing under the {result.policy} policy): {h.evidence}"
        for h in result.findings]


_RENDERERS: dict[str, Callable[[EvalResult | None, float], str]] = {
    "kernelgym": _kernelgym,
    "concise": _concise,
}
