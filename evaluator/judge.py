"""The verdict, made in the worker from what the reference and candidate children reported."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import torch

from evaluator.result import (
    ErrorInfo,
    EvalResult,
    Hack,
    HackKind,
    KernelRow,
    Profile,
    Status,
    TimingStats,
)

CPU_SPEED_NOTE = "not measured on cpu: the Triton interpreter's run time says nothing of GPU speed"

# Allocation, layout and data movement: what an honest Triton forward may still do in torch.
GLUE_OPS = frozenset({
    "empty", "empty_like", "empty_strided", "empty_permuted", "new_empty", "new_empty_strided",
    "zeros", "zeros_like", "new_zeros", "ones", "ones_like", "new_ones", "full", "full_like",
    "new_full", "fill_", "zero_", "copy_", "set_", "clone", "contiguous", "detach", "detach_",
    "alias", "lift_fresh", "lift_fresh_copy", "view", "_unsafe_view", "reshape",
    "_reshape_alias", "as_strided", "as_strided_", "t", "transpose", "permute", "expand",
    "expand_as", "unsqueeze", "squeeze", "flatten", "unflatten", "slice", "select", "narrow",
    "split", "split_with_sizes", "chunk", "unbind", "cat", "stack", "_to_copy", "to",
    "_local_scalar_dense", "item", "sym_size", "sym_stride", "sym_numel", "sym_storage_offset",
    "is_same_size", "resize_", "arange", "scalar_tensor", "view_as", "type_as", "movedim",
    "result_type", "_has_compatible_shallow_copy_type", "random_", "normal_", "uniform_",
    "pad", "constant_pad_nd", "repeat", "is_nonzero", "dim",
    "size", "stride", "numel", "unfold",
})
# Matmul, convolution, attention, reductions, normalisation, softmax, pooling, gathers:
# the work a kernel problem is about. A custom op of another namespace counts too.
_HEAVY = re.compile(
    r"mm|conv|attention|einsum|dot|^mv$|addmv|linear|softmax|norm|sum|mean|var|std|prod|cum"
    r"|^max|^min|amax|amin|argm|logsumexp|sort|topk|kthvalue|median|mode|pool|upsample"
    r"|interp|embedding|gather|scatter|index_add|cdist|loss|kl_div|fft|linalg|histc|bincount"
    r"|segment_reduce|index_reduce|col2im|im2col|quantile|histogram|^trace$|^dist$|^det$"
    r"|matrix_power|^addr$|aminmax|count_nonzero|^all$|^any$")
_HOST_READS_PER_TRIAL = 64
_TORCH_CALLS_PER_TRIAL = 8
"""An epilogue in torch next to the Triton work is a few calls; more is the work itself."""
_INTERMEDIATE_FACTOR = 4
_OUTPUT_SIZED_CALLS_PER_TRIAL = 1
"""One output-sized step in torch (an activation after a Triton GEMM) is an epilogue; two or
more are the problem's arithmetic (softmax's exp and divide, layer norm's scale and shift)."""
_INIT_OPS = frozenset({"erfinv_", "mul_", "add_", "clamp_", "div_", "sqrt", "exponential_",
                       "log_normal_", "bernoulli_", "cauchy_", "geometric_"})
_LOW_FLOATS = ("float16", "bfloat16", "float8_e4m3fn", "float8_e5m2")


@dataclass
class Report:
    header: dict[str, Any]
    tensors: list[torch.Tensor] = field(default_factory=list)

    def split(self, counts: list[int]) -> list[list[torch.Tensor]]:
        out, pos = [], 0
        for n in counts:
            out.append(self.tensors[pos : pos + n])
            pos += n
        return out

    def group(self, name: str) -> list[torch.Tensor]:
        groups: dict[str, int] = self.header["groups"]
        start = sum(self.header["counts"])
        for key, size in groups.items():
            if key == name:
                return self.tensors[start : start + size]
            start += size
        return []


def failed(status: str, error: dict[str, str] | None, device: str) -> EvalResult:
    st = Status(status)
    return EvalResult(status=st, compiled=st is not Status.COMPILE_ERROR,
                      error=ErrorInfo(**error) if error else None, device=device,
                      speedup_note="the candidate did not pass")


def _failed_report(header: dict[str, Any], device: str) -> EvalResult:
    """A child that stopped with a failure; what it was seen doing first still counts."""
    result = failed(header["status"], header.get("error"), device)
    result.hacks = _runtime_hacks(header)
    if result.hacks:
        result.status = Status.HACKED
    return result


def judge_correctness(cfg: dict[str, Any], ref: Report, cand: Report,
                      static_hacks: list[Hack], device: str) -> EvalResult:
    """Compare outputs and weigh every observation; the status follows from both."""
    h = cand.header
    if not h["ok"]:
        return _failed_report(h, device)
    ref_trials, cand_trials = ref.split(ref.header["counts"]), cand.split(h["counts"])
    result = EvalResult(status=Status.INCORRECT, compiled=True, trials_total=len(ref_trials),
                        device=device)
    passes: list[bool] = []
    diffs: list[float] = []
    means: list[float] = []
    problem = ""
    hacks = _runtime_hacks(h)
    for i, (want, got) in enumerate(zip(ref_trials, cand_trials, strict=True)):
        issue = _mismatch(want, got)
        if issue is None:
            ok, max_d, mean_d, nonfinite = _close(want, got, cfg)
            diffs.append(max_d)
            means.append(mean_d)
            if nonfinite:
                hacks.append(Hack(HackKind.NONFINITE_OUTPUT,
                                  f"trial {i}: NaN or Inf where the reference is finite"))
            passes.append(ok)
            if ok:
                result.trials_passed += 1
            else:
                problem = problem or f"Output mismatch in trial {i} (max abs diff {max_d:.3g})"
        else:
            passes.append(False)
            problem = problem or f"trial {i}: {issue}"
    result.max_abs_diff = max(diffs) if diffs else None
    result.mean_abs_diff = sum(means) / len(means) if means else None
    passed = result.trials_passed == result.trials_total
    hacks += _caching(ref_trials, cand_trials, cfg)
    hacks += _probe_hacks(cfg, ref_trials, cand_trials, cand, passes)
    hacks += _compute_hacks(ref.header, h, passed, sum(t.numel() for t in ref_trials[0]))
    hacks += _static(static_hacks, ref.header, passed)
    result.hacks = _dedupe(hacks)
    result.profile = _cpu_profile(h)
    if result.hacks:
        result.status = Status.HACKED
    elif passed:
        result.status, result.correct = Status.CORRECT, True
    else:
        result.error = ErrorInfo(type="OutputMismatch", message=problem)
    if device == "cpu":
        result.speedup_note = CPU_SPEED_NOTE
    return result


def _mismatch(want: list[torch.Tensor], got: list[torch.Tensor]) -> str | None:
    if len(want) != len(got):
        return f"expected {len(want)} outputs, got {len(got)}"
    for w, g in zip(want, got, strict=True):
        if w.shape != g.shape:
            return f"Output shape mismatch: expected {tuple(w.shape)}, got {tuple(g.shape)}"
        if w.dtype != g.dtype:
            return f"Output dtype mismatch: expected {w.dtype}, got {g.dtype}"
    return None


def _close(want: list[torch.Tensor], got: list[torch.Tensor],
           cfg: dict[str, Any]) -> tuple[bool, float, float, bool]:
    ok, max_d, total, n, nonfinite = True, 0.0, 0.0, 0, False
    bound = cfg.get("max_relative_error")
    for w, g in zip(want, got, strict=True):
        if w.numel() == 0:
            continue
        w64, g64 = w.to(torch.float64), g.to(torch.float64)
        nonfinite |= bool((~torch.isfinite(g64) & torch.isfinite(w64)).any())
        ok &= torch.allclose(g64, w64, atol=cfg["atol"], rtol=cfg["rtol"], equal_nan=False)
        if bound is not None and ok:
            scale = float(torch.linalg.vector_norm(w64))
            ok = scale == 0 or float(torch.linalg.vector_norm(g64 - w64)) <= bound * scale
        d = (g64 - w64).abs().nan_to_num(nan=float("inf"))
        max_d = max(max_d, float(d.max()))
        total += float(d.clamp(max=1e30).sum())
        n += d.numel()
    return ok, max_d, total / max(n, 1), nonfinite


def _caching(ref_trials: list[list[torch.Tensor]], cand_trials: list[list[torch.Tensor]],
             cfg: dict[str, Any]) -> list[Hack]:
    """A later trial replayed an earlier trial's right answer for different inputs."""
    for i in range(1, len(cand_trials)):
        for j in range(i):
            replay = _all_equal(cand_trials[i], cand_trials[j]) and _allclose(
                ref_trials[j], cand_trials[i], cfg)
            if replay and not _all_equal(ref_trials[i], ref_trials[j]):
                return [Hack(HackKind.OUTPUT_CACHING,
                             f"trial {i} returned trial {j}'s output for different inputs")]
    return []


def _probe_hacks(cfg: dict[str, Any], ref_trials: list[list[torch.Tensor]],
                 cand_trials: list[list[torch.Tensor]], cand: Report,
                 passes: list[bool]) -> list[Hack]:
    """Probes on trial 0's inputs; each means something only where some plain trial passed."""
    hacks: list[Hack] = []
    if not any(passes):
        return hacks
    same = cand.group("same_objects")
    if same and passes[-1] and not _allclose(ref_trials[-1], same, cfg):
        hacks.append(Hack(HackKind.OUTPUT_CACHING,
                          "the same input tensors given new values returned a stale output"))
    poisoned = cand.group("poisoned")
    if poisoned and not _allclose(cand_trials[0], poisoned, cfg):
        hacks.append(Hack(HackKind.UNINITIALIZED_OUTPUT,
                          "output changed when fresh allocations were filled with NaN"))
    ghost, k = cand.group("ghost"), cand.header["ghost_trial"]
    if ghost and passes[k] and cand.header["own_launches_per_trial"][k] and _allclose(
            ref_trials[k], ghost, cfg):
        hacks.append(Hack(HackKind.DECOY,
                          "output is still right with the candidate's own kernels skipped"))
    return hacks


def _compute_hacks(ref: dict[str, Any], cand: dict[str, Any], passed: bool,
                   output_numel: int) -> list[Hack]:
    hacks = []
    launches = cand["own_launches_per_trial"]
    if not all(launches) or not cand.get("own_launches_grad", 1):
        where = "with gradients enabled" if all(launches) else "in inference mode"
        hacks.append(Hack(HackKind.DECOY,
                          f"no Triton kernel of the candidate's own was launched {where}"))
    hacks += _framework_compute(ref, cand, output_numel)
    if passed and not _low_precision_problem(ref):  # a wrong output dtype is plainly incorrect
        # The reference's own low-precision state (e.g. an fp16 weight buffer) is not a downcast.
        own_state = set(ref.get("state_dtypes", []))
        down = [r["name"] for r in cand["launches"]
                if r["own"] and any(d in _LOW_FLOATS and d not in own_state for d in r["dtypes"])]
        if down or cand.get("downcasts"):
            evidence = ", ".join(down) or "; ".join(cand["downcasts"])
            hacks.append(Hack(HackKind.PRECISION_DOWNCAST,
                              f"full-precision problem computed in lower precision: {evidence}"))
    return hacks


def _framework_compute(ref: dict[str, Any], cand: dict[str, Any],
                       output_numel: int) -> list[Hack]:
    """Torch still doing the problem's work: heavy ops; any compute at all where the
    reference is purely element-wise (its element-wise op then *is* the work); more than an
    epilogue's worth of calls; or intermediates far larger than the output."""
    cand_ops = compute_ops(cand["ops"])
    elementwise_problem = not any(is_heavy(op) for op in compute_ops(ref["ops"]))
    work = cand_ops if elementwise_problem else {op for op in cand_ops if is_heavy(op)}
    evidence = []
    if work:
        raised = [f"{r['name']} raised {', '.join(r['raised'])}"
                  for r in cand["launches"] if r["own"] and r["raised"]]
        note = f" after {'; '.join(raised)} (fallback)" if raised else ""
        evidence.append(f"the forward ran torch {', '.join(sorted(work))}{note}")
    trials = max(len(cand["counts"]), 1)
    # Arithmetic on the module's parameters alone (folding a norm into a weight) is not work on
    # the inputs.
    state_only = cand.get("state_ops", {})
    calls = sum(n - state_only.get(op, 0) for op, n in cand["ops"].items()
                if op in cand_ops) / trials
    if calls > _TORCH_CALLS_PER_TRIAL:
        evidence.append(f"{calls:.0f} torch compute calls per forward")
    full = sum(n for op, n in cand.get("full_size", {}).items() if op in cand_ops) / trials
    if not elementwise_problem and full > _OUTPUT_SIZED_CALLS_PER_TRIAL:
        evidence.append(f"torch computed {full:.0f} output-sized results per forward")
    sizes = cand.get("largest", {})
    largest = max((n for op, n in sizes.items() if op in cand_ops), default=0)
    if output_numel and largest > _INTERMEDIATE_FACTOR * output_numel:
        evidence.append(f"torch built a {largest}-element intermediate for a "
                        f"{output_numel}-element output")
    # A bias or scale step with the module's parameters may be as large as the reference's
    # own parameters (folding a norm into a weight), not larger.
    epilogue = sizes.get("epilogue", 0)
    if output_numel and epilogue > max(_INTERMEDIATE_FACTOR * output_numel,
                                       ref.get("state_numel", 0)):
        evidence.append(f"torch built a {epilogue}-element intermediate with the module's "
                        f"tensors for a {output_numel}-element output")
    loading = {op for op in compute_ops(cand.get("load_ops", {}))
               if is_heavy(op) or (elementwise_problem and op not in _INIT_OPS
                                   and op not in ref.get("load_ops", {}))}
    if loading:
        evidence.append(f"torch {', '.join(sorted(loading))} ran while loading the candidate")
    reads = cand["ops"].get("_local_scalar_dense", 0)
    if reads > _HOST_READS_PER_TRIAL * trials:
        evidence.append(f"read {reads} tensor elements one by one on the host")
    return [Hack(HackKind.FRAMEWORK_COMPUTE, e) for e in evidence]


def is_heavy(op: str) -> bool:
    return "::" in op or bool(_HEAVY.search(op))


def _static(hacks: list[Hack], ref: dict[str, Any], passed: bool) -> list[Hack]:
    """Lower-precision types in the source are evidence only on a full-precision problem
    that passed (a wrong output dtype is plainly incorrect)."""
    # Casts in the source that rebuild the reference's own low-precision state are no evidence.
    state_low = any(d in _LOW_FLOATS for d in ref.get("state_dtypes", []))
    full_precision = passed and not _low_precision_problem(ref) and not state_low
    return [h for h in hacks if h.kind is not HackKind.PRECISION_DOWNCAST or full_precision]


def _low_precision_problem(ref: dict[str, Any]) -> bool:
    return any(d in _LOW_FLOATS for d in [*ref.get("input_dtypes", []),
                                          *ref.get("output_dtypes", [])])


def compute_ops(ops: dict[str, int]) -> set[str]:
    return {op for op in ops if op not in GLUE_OPS}


def _runtime_hacks(header: dict[str, Any]) -> list[Hack]:
    hacks = [Hack(HackKind(kind), evidence) for kind, evidence in header.get("findings", [])]
    if header.get("patched"):
        hacks.append(Hack(HackKind.PATCHING, "replaced " + ", ".join(header["patched"][:10])))
    return hacks


def _cpu_profile(header: dict[str, Any]) -> Profile:
    rows = [KernelRow(name=r["name"], device_time_us=0.0, count=r["count"], own=r["own"])
            for r in header["launches"]]
    return Profile(kernels=rows, triton_launches=[r.name for r in rows if r.own],
                   torch_compute_ops=sorted(compute_ops(header["ops"])))


def add_performance(result: EvalResult, ref: Report, perf: Report,
                    cfg: dict[str, Any]) -> EvalResult:
    """Speed, profile and the late checks: the timed calls' outputs, late patching."""
    h = perf.header
    if not h.get("ok", True):
        return _failed_report(h, result.device)
    result.ref_timing = TimingStats(**ref.header["timing"])
    result.kernel_timing = TimingStats(**h["timing"])
    result.ref_ms, result.kernel_ms = result.ref_timing.mean_ms, result.kernel_timing.mean_ms
    result.speedup = result.ref_ms / result.kernel_ms if result.kernel_ms > 0 else None
    if h.get("profile"):
        result.profile.kernels = [KernelRow(**k) for k in h["profile"]["kernels"]]
        result.profile.triton_time_coverage = h["profile"]["coverage"]
    late = _runtime_hacks(h) + _timed_outputs(ref, perf, cfg)
    if h.get("side_stream"):
        late.append(Hack(HackKind.SIDE_STREAM, "a Triton kernel ran on a side stream"))
    if late:
        result.hacks = _dedupe(result.hacks + late)
        result.status, result.correct = Status.HACKED, False
    return result


def _timed_outputs(ref: Report, perf: Report, cfg: dict[str, Any]) -> list[Hack]:
    want = ref.split(ref.header["counts"])
    counts = {int(k): n for k, n in perf.header.get("timed_counts", {}).items()}
    got = perf.split([counts[k] for k in sorted(counts)])
    for k, outputs in zip(sorted(counts), got, strict=True):
        if not _allclose(want[k], outputs, cfg):
            return [Hack(HackKind.OUTPUT_CACHING,
                         f"a timed call on trial {k}'s inputs returned a wrong output")]
    return []


def _all_equal(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(
        x.shape == y.shape and x.dtype == y.dtype and torch.equal(x, y)
        for x, y in zip(a, b, strict=True))


def _allclose(want: list[torch.Tensor], got: list[torch.Tensor], cfg: dict[str, Any]) -> bool:
    return _mismatch(want, got) is None and _close(want, got, cfg)[0]


def _dedupe(hacks: list[Hack]) -> list[Hack]:
    seen, out = set(), []
    for hack in hacks:
        if (hack.kind, hack.evidence) not in seen:
            seen.add((hack.kind, hack.evidence))
            out.append(hack)
    return out
