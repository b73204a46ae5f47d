"""The verdict, made in the worker from what the reference and candidate children reported."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from evaluator.config import LARGE_MAGNITUDE, POLICIES
from evaluator.result import (
    CompiledKernel,
    ErrorInfo,
    EvalResult,
    Hack,
    HackKind,
    KernelRow,
    OpWork,
    Profile,
    Status,
    TimingStats,
)
from evaluator.work import triton_share

CPU_SPEED_NOTE = "not measured on cpu: the Triton interpreter's run time says nothing of GPU speed"

_HOST_READS_PER_TRIAL = 64
_NONE_LEFT = 0.999
"""Torch work at this share of the reference's or more: Triton replaced none of it."""
_GLUE_SHARE = 0.05
"""Under `strict`, torch work beyond this share of the reference's is the problem's work."""
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


@dataclass
class _Seen:
    """Findings by who fails them: KernelGYM's own rule (no Triton launch) in every policy,
    cheats in all but `kernelgym`, torch doing more than glue only under `strict`."""

    upstream: list[Hack] = field(default_factory=list)
    cheats: list[Hack] = field(default_factory=list)
    lazy: list[Hack] = field(default_factory=list)

    def settle(self, policy: str) -> tuple[list[Hack], list[Hack]]:
        """(what fails, what is only reported) under `policy`."""
        if policy == "kernelgym":
            return _dedupe(self.upstream), _dedupe(self.cheats + self.lazy)
        if policy == "strict":
            return _dedupe(self.upstream + self.cheats + self.lazy), []
        return _dedupe(self.upstream + self.cheats), _dedupe(self.lazy)


def _settle(result: EvalResult, seen: _Seen, policy: str) -> None:
    base, before = result.status, result.policy_statuses  # before: the correctness phase's
    settled: dict[str, tuple[list[Hack], list[Hack]]] = {p: seen.settle(p) for p in POLICIES}
    result.policy_statuses = {p: Status.HACKED if failing else before.get(p, base)
                              for p, (failing, _) in settled.items()}
    result.policy = policy
    result.hacks, result.findings = settled[policy]
    if result.hacks:
        result.status, result.correct = Status.HACKED, False


def _failed_report(header: dict[str, Any], device: str, policy: str) -> EvalResult:
    """A child that stopped with a failure; what it was seen doing first still counts."""
    result = failed(header["status"], header.get("error"), device)
    _settle(result, _Seen(cheats=_runtime_hacks(header)), policy)
    return result


def judge_correctness(cfg: dict[str, Any], ref: Report, cand: Report,
                      static_hacks: list[Hack], device: str) -> EvalResult:
    """Compare outputs and weigh every observation; the status follows from both."""
    h = cand.header
    policy = cfg.get("policy", "standard")
    if not h["ok"]:
        return _failed_report(h, device, policy)
    ref_trials, cand_trials = ref.split(ref.header["counts"]), cand.split(h["counts"])
    result = EvalResult(status=Status.INCORRECT, compiled=True, trials_total=len(ref_trials),
                        device=device)
    passes: list[bool] = []
    diffs: list[float] = []
    means: list[float] = []
    problem = ""
    seen = _Seen(cheats=_runtime_hacks(h))
    plan = ref.header.get("plan", [])
    for i, (want, got) in enumerate(zip(ref_trials, cand_trials, strict=True)):
        issue = _structure_issue(ref.header, h, i) or _mismatch(want, got)
        large = i < len(plan) and plan[i] == "large"
        if issue is None:
            ok, max_d, mean_d, nonfinite = _close(want, got, _tolerance(cfg, want, large))
            if not large:  # diffs at ±100 measure the magnitude, not the kernel's precision
                diffs.append(max_d)
                means.append(mean_d)
            if nonfinite and large:  # numerically unsafe (exp overflow), not a NaN wildcard
                problem = problem or (f"trial {i} (inputs up to ±{LARGE_MAGNITUDE:g}): NaN or "
                                      "Inf where the reference is finite")
            elif nonfinite:
                seen.cheats.append(Hack(HackKind.NONFINITE_OUTPUT,
                                        f"trial {i}: NaN or Inf where the reference is finite"))
            passes.append(ok)
            if ok:
                result.trials_passed += 1
            else:
                where = f" (inputs up to ±{LARGE_MAGNITUDE:g})" if large else ""
                problem = problem or (f"Output mismatch in trial {i}{where} "
                                      f"(max abs diff {max_d:.3g})")
        else:
            passes.append(False)
            problem = problem or f"trial {i}: {issue}"
    result.max_abs_diff = max(diffs) if diffs else None
    result.mean_abs_diff = sum(means) / len(means) if means else None
    passed = result.trials_passed == result.trials_total
    seen.upstream += _no_launch(h)
    seen.cheats += _caching(ref_trials, cand_trials, cfg)
    seen.cheats += _probe_hacks(cfg, ref_trials, cand_trials, cand, passes)
    seen.cheats += _downcast(ref.header, h, passed) + _static(static_hacks, ref.header, passed)
    result.profile = _cpu_profile(h, ref.header)
    output_numel = sum(t.numel() for t in ref_trials[0]) if ref_trials else 0
    cheats, lazy = _framework_compute(ref.header, h, result.profile, output_numel)
    seen.cheats += cheats
    seen.lazy += lazy
    if passed:
        result.status, result.correct = Status.CORRECT, True
    else:
        hint = _parameter_hint(ref.header.get("params", []), h.get("params", []))
        result.error = ErrorInfo(type="OutputMismatch", message=problem + hint)
    _settle(result, seen, policy)
    if device == "cpu":
        result.speedup_note = CPU_SPEED_NOTE
    return result


def _parameter_hint(ref: list[list[Any]], cand: list[list[Any]]) -> str:
    """Names the parameters ModelNew initialised differently from Model (same seed): matched
    by name, else by shape in order."""
    by_name = {p[0]: p for p in ref}
    unmatched = [p for p in ref if p[0] not in {c[0] for c in cand}]
    differ = []
    for name, shape, total, size in cand:
        want = by_name.get(name)
        if want is None:
            want = next((p for p in unmatched if p[1] == shape), None)
            if want is not None:
                unmatched.remove(want)
        if want is None or want[1] != shape:
            continue
        if not (_near(total, want[2], want[3]) and _near(size, want[3], want[3])):
            differ.append(f"{name} {tuple(shape)}" + (f" (Model's {want[0]})"
                                                      if want[0] != name else ""))
    if not differ:
        return ""
    return (f". ModelNew's parameters {', '.join(differ[:4])} differ from Model's under the "
            "same seed: initialise them as Model does (build the same nn layers in the same "
            "order, or copy their weights) instead of torch.randn or another init")


def _near(a: float, b: float, scale: float) -> bool:
    return abs(a - b) <= 1e-4 * max(abs(scale), 1.0)


def _structure_issue(ref: dict[str, Any], cand: dict[str, Any], trial: int) -> str | None:
    """The candidate's result nested differently from the reference's (`([y],)` for `y`)."""
    want, got = ref.get("structures", []), cand.get("structures", [])
    if trial >= len(want) or trial >= len(got) or want[trial] == got[trial]:
        return None
    return f"Output structure mismatch: expected {want[trial]}, got {str(got[trial])[:200]}"


def _mismatch(want: list[torch.Tensor], got: list[torch.Tensor]) -> str | None:
    if len(want) != len(got):
        return f"expected {len(want)} outputs, got {len(got)}"
    for w, g in zip(want, got, strict=True):
        if w.shape != g.shape:
            return f"Output shape mismatch: expected {tuple(w.shape)}, got {tuple(g.shape)}"
        if w.dtype != g.dtype:
            return f"Output dtype mismatch: expected {w.dtype}, got {g.dtype}"
    return None


def _tolerance(cfg: dict[str, Any], want: list[torch.Tensor], large: bool) -> dict[str, Any]:
    """At large magnitudes the check is of numerical safety (finite, and right to `rtol` and
    the relative L2 bound), not of precision: `atol` grows with the outputs' mean magnitude,
    or a float32 (or TF32) reduction's rounding, ∝ the magnitude, would fail near zero."""
    if not large:
        return cfg
    values = [w.abs().double().mean() for w in want if w.numel() and w.is_floating_point()]
    scale = max([1.0, *(float(v) for v in values if torch.isfinite(v))])
    return {**cfg, "atol": cfg["atol"] * scale}


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
    same = cand.group("same_objects")  # trial 0's values in the last trial's tensors
    if same and passes[0] and not _allclose(ref_trials[0], same, cfg):
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


def _no_launch(cand: dict[str, Any]) -> list[Hack]:
    """KernelGYM's decoy rule: both the inference and the gradient pass launch Triton."""
    launches = cand["own_launches_per_trial"]
    if all(launches) and cand.get("own_launches_grad", 1):
        return []
    where = "with gradients enabled" if all(launches) else "in inference mode"
    return [Hack(HackKind.DECOY, f"no Triton kernel of the candidate's own was launched {where}")]


def _downcast(ref: dict[str, Any], cand: dict[str, Any], passed: bool) -> list[Hack]:
    if not passed or _low_precision_problem(ref):  # a wrong output dtype is plainly incorrect
        return []
    # The reference's own low-precision state (e.g. an fp16 weight buffer) is not a downcast.
    own_state = set(ref.get("state_dtypes", []))
    down = [r["name"] for r in cand["launches"]
            if r["own"] and any(d in _LOW_FLOATS and d not in own_state for d in r["dtypes"])]
    if not down and not cand.get("downcasts"):
        return []
    evidence = ", ".join(down) or "; ".join(cand["downcasts"])
    return [Hack(HackKind.PRECISION_DOWNCAST,
                 f"full-precision problem computed in lower precision: {evidence}")]


def _framework_compute(ref: dict[str, Any], cand: dict[str, Any], profile: Profile,
                       output_numel: int) -> tuple[list[Hack], list[Hack]]:
    """(cheats, strict-only findings), by the one account of work that `evaluator/work.py`
    explains; plus torch work while loading and element-by-element host reads."""
    ref_ns, torch_ns = _per_trial(ref, "work"), _per_trial(cand, "work")
    alone_ns = _per_trial(cand, "work_alone")
    ops = ", ".join(profile.torch_compute_ops)
    cheats, lazy = [], []
    made = cand.get("torch_made", [])
    scaled = cand.get("torch_scaled") or [""]
    if made and all(made):
        cheats.append(Hack(HackKind.FRAMEWORK_COMPUTE,
                           f"torch computed the output ({made[0]}); the Triton kernels only "
                           "moved it"))
    elif ref_ns > 0 and alone_ns >= _NONE_LEFT * ref_ns and (
            min(cand.get("kernel_elements") or [0]) < output_numel or all(scaled)):
        raised = [f"{r['name']} raised {', '.join(r['raised'])}"
                  for r in cand["launches"] if r["own"] and r["raised"]]
        note = f" after {'; '.join(raised)} (fallback)" if raised else ""
        rescaled = f"; the Triton kernels only rescaled torch's {scaled[0]}" if all(scaled) else ""
        cheats.append(Hack(HackKind.FRAMEWORK_COMPUTE,
                           f"the forward ran torch {ops}{note}: {_share_text(alone_ns, ref_ns)}"
                           f" on data no Triton kernel computed, so Triton replaced none of it"
                           f"{rescaled}"))
    elif torch_ns > _GLUE_SHARE * ref_ns:
        lazy.append(Hack(HackKind.FRAMEWORK_COMPUTE,
                         f"the forward ran torch {ops}: {_share_text(torch_ns, ref_ns)}"))
    skip = set(ref.get("load_ops", {})) | _INIT_OPS
    loading = sum(ns for op, ns in cand.get("load_work", {}).items() if op not in skip)
    if ref_ns > 0 and loading >= ref_ns:
        cheats.append(Hack(HackKind.FRAMEWORK_COMPUTE,
                           f"torch did {loading / ref_ns:.1f} forwards' worth of the work "
                           "while loading the candidate"))
    trials = max(len(cand["counts"]), 1)
    reads = cand["ops"].get("_local_scalar_dense", 0)
    if reads > _HOST_READS_PER_TRIAL * trials:
        cheats.append(Hack(HackKind.FRAMEWORK_COMPUTE,
                           f"read {reads} tensor elements one by one on the host"))
    return cheats, lazy


def _per_trial(header: dict[str, Any], key: str) -> float:
    return sum(header.get(key, {}).values()) / max(len(header.get("counts", [])), 1)


def _share_text(torch_ns: float, ref_ns: float) -> str:
    if ref_ns <= 0:
        return "work where the reference only moves data"
    return f"{100 * torch_ns / ref_ns:.0f}% of the reference's estimated work"


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


def _runtime_hacks(header: dict[str, Any]) -> list[Hack]:
    hacks = [Hack(HackKind(kind), evidence) for kind, evidence in header.get("findings", [])]
    if header.get("patched"):
        hacks.append(Hack(HackKind.PATCHING, "replaced " + ", ".join(header["patched"][:10])))
    return hacks


def _cpu_profile(header: dict[str, Any], ref: dict[str, Any]) -> Profile:
    """Kernels launched, and the torch ops that did work with their estimated shares."""
    rows = [KernelRow(name=r["name"], device_time_us=0.0, count=r["count"], own=r["own"])
            for r in header["launches"]]
    ref_ns, trials = _per_trial(ref, "work"), max(len(header["counts"]), 1)
    work = sorted(((ns / trials, op) for op, ns in header.get("work", {}).items() if ns > 0),
                  reverse=True)
    torch_ns = sum(ns for ns, _ in work)
    compiled = header.get("compiled") or {}
    return Profile(kernels=rows, triton_launches=[r.name for r in rows if r.own],
                   torch_compute_ops=[op for _, op in work],
                   torch_work=[OpWork(op=op, share=round(ns / ref_ns, 4) if ref_ns else 1.0)
                               for ns, op in work],
                   triton_work_share=round(triton_share(torch_ns, ref_ns), 4),
                   work_share_source="estimate",
                   compiled=[_compiled_kernel(k) for k in compiled.get("kernels", [])[:64]],
                   compile_target=str(compiled.get("target", "")))


def _compiled_kernel(row: dict[str, Any]) -> CompiledKernel:
    def count(key: str) -> int | None:
        value = row.get(key)
        return int(value) if value is not None else None

    return CompiledKernel(name=str(row["name"])[:200], registers=count("registers"),
                          spill_bytes=count("spill_bytes"),
                          shared_bytes=int(row.get("shared_bytes", 0)),
                          num_warps=int(row.get("num_warps", 0)))


def add_performance(result: EvalResult, ref: Report, perf: Report,
                    cfg: dict[str, Any]) -> EvalResult:
    """Speed, profile and the late checks: the timed calls' outputs, late patching."""
    h = perf.header
    policy = cfg.get("policy", "standard")
    if not h.get("ok", True):
        return _failed_report(h, result.device, policy)
    result.ref_timing = TimingStats(**ref.header["timing"])
    result.kernel_timing = TimingStats(**h["timing"])
    result.ref_ms, result.kernel_ms = result.ref_timing.mean_ms, result.kernel_timing.mean_ms
    result.speedup = result.ref_ms / result.kernel_ms if result.kernel_ms > 0 else None
    if h.get("profile"):
        result.profile.kernels = [KernelRow(**k) for k in h["profile"]["kernels"]]
        result.profile.triton_time_coverage = h["profile"]["coverage"]
        result.profile.triton_work_share = h["profile"]["coverage"]
        result.profile.work_share_source = "device_time"
    late = _runtime_hacks(h) + _timed_outputs(ref, perf, cfg)
    if h.get("side_stream"):
        late.append(Hack(HackKind.SIDE_STREAM, "a Triton kernel ran on a side stream"))
    if late:  # only a passing candidate is timed: nothing failed so far
        _settle(result, _Seen(cheats=late, lazy=result.findings), policy)
    return result


def _timed_outputs(ref: Report, perf: Report, cfg: dict[str, Any]) -> list[Hack]:
    want = ref.split(ref.header["counts"])
    counts = {int(k): n for k, n in perf.header.get("timed_counts", {}).items()}
    got = perf.split([counts[k] for k in sorted(counts)])
    plan = ref.header.get("plan", [])
    for k, outputs in zip(sorted(counts), got, strict=True):
        large = k < len(plan) and plan[k] == "large"
        if not _allclose(want[k], outputs, _tolerance(cfg, want[k], large)):
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
