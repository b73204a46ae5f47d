"""Evaluator and loop dataclasses ↔ protos: the only module that knows both shapes."""

from __future__ import annotations

from evaluator.result import (
    CompiledKernel,
    ErrorInfo,
    EvalResult,
    Hack,
    HackKind,
    KernelRow,
    OpWork,
    Profile,
    Scaling,
    Status,
    TimingStats,
)
from protos.drkernel.v1 import optimizer_pb2 as pb
from protos.drkernel.v1 import result_pb2 as rpb
from refine.events import (
    BestUpdated,
    Evaluated,
    Event,
    Finished,
    Generated,
    Turn,
    TurnStarted,
    Usage,
)

_STATUS_TO_PB = {status: rpb.EvalStatus.Value(f"EVAL_STATUS_{status.name}") for status in Status}
_STATUS_FROM_PB = {v: k for k, v in _STATUS_TO_PB.items()}
_HACK_TO_PB = {kind: rpb.HackKind.Value(f"HACK_KIND_{kind.name}") for kind in HackKind}
_HACK_FROM_PB = {v: k for k, v in _HACK_TO_PB.items()}
_OPTIONAL_FLOATS = ("max_abs_diff", "mean_abs_diff", "ref_ms", "kernel_ms", "speedup")
_PLAIN = ("compiled", "correct", "trials_passed", "trials_total", "speedup_note", "device",
          "reward", "evaluator_version", "elapsed_s", "policy")


def result_to_proto(result: EvalResult) -> rpb.EvalResult:
    message = rpb.EvalResult(status=_STATUS_TO_PB[result.status], profile=_profile(result.profile))
    for name in _PLAIN:
        setattr(message, name, getattr(result, name))
    for name in _OPTIONAL_FLOATS:
        if getattr(result, name) is not None:
            setattr(message, name, getattr(result, name))
    if result.error is not None:
        message.error.CopyFrom(rpb.ErrorInfo(type=result.error.type, message=result.error.message,
                                             traceback=result.error.traceback))
    for name in ("hacks", "findings"):
        getattr(message, name).extend(
            rpb.Hack(kind=_HACK_TO_PB[h.kind], evidence=h.evidence, static=h.static)
            for h in getattr(result, name))
    if result.trial_seed is not None:
        message.trial_seed = result.trial_seed
    if result.scaling is not None:
        message.scaling.CopyFrom(_scaling_to_proto(result.scaling))
    for policy, status in result.policy_statuses.items():
        message.policy_statuses[policy] = _STATUS_TO_PB[status]
    for name in ("ref_timing", "kernel_timing"):
        timing: TimingStats | None = getattr(result, name)
        if timing is not None:
            getattr(message, name).CopyFrom(rpb.TimingStats(**vars(timing)))
    return message


def _profile(profile: Profile) -> rpb.Profile:
    message = rpb.Profile(
        kernels=[rpb.KernelRow(**vars(row)) for row in profile.kernels],
        triton_launches=profile.triton_launches,
        torch_compute_ops=profile.torch_compute_ops,
        torch_work=[rpb.OpWork(op=w.op, share=w.share) for w in profile.torch_work],
        work_share_source=profile.work_share_source,
        compile_target=profile.compile_target,
    )
    for kernel in profile.compiled:
        row = message.compiled.add(name=kernel.name, shared_bytes=kernel.shared_bytes,
                                   num_warps=kernel.num_warps)
        for name in ("registers", "spill_bytes"):
            if getattr(kernel, name) is not None:
                setattr(row, name, getattr(kernel, name))
    for name in ("triton_time_coverage", "triton_work_share"):
        if getattr(profile, name) is not None:
            setattr(message, name, getattr(profile, name))
    return message


def result_from_proto(message: rpb.EvalResult) -> EvalResult:
    result = EvalResult(status=_STATUS_FROM_PB[message.status])
    for name in _PLAIN:
        setattr(result, name, getattr(message, name))
    for name in _OPTIONAL_FLOATS:
        setattr(result, name, getattr(message, name) if message.HasField(name) else None)
    if message.HasField("error"):
        result.error = ErrorInfo(message.error.type, message.error.message,
                                 message.error.traceback)
    for name in ("hacks", "findings"):
        setattr(result, name, [Hack(_HACK_FROM_PB[h.kind], h.evidence, h.static)
                               for h in getattr(message, name)])
    for name in ("ref_timing", "kernel_timing"):
        if message.HasField(name):
            t = getattr(message, name)
            setattr(result, name, TimingStats(t.mean_ms, t.median_ms, t.std_ms, t.min_ms,
                                              t.max_ms, t.trials))
    p = message.profile
    result.profile = Profile(
        kernels=[KernelRow(k.name, k.device_time_us, k.count, k.own) for k in p.kernels],
        triton_launches=list(p.triton_launches),
        triton_time_coverage=p.triton_time_coverage if p.HasField("triton_time_coverage")
        else None,
        torch_compute_ops=list(p.torch_compute_ops),
        torch_work=[OpWork(w.op, w.share) for w in p.torch_work],
        triton_work_share=p.triton_work_share if p.HasField("triton_work_share") else None,
        work_share_source=p.work_share_source,
        compiled=[CompiledKernel(k.name, k.registers if k.HasField("registers") else None,
                                 k.spill_bytes if k.HasField("spill_bytes") else None,
                                 k.shared_bytes, k.num_warps) for k in p.compiled],
        compile_target=p.compile_target,
    )
    result.trial_seed = message.trial_seed if message.HasField("trial_seed") else None
    result.policy_statuses = {p: _STATUS_FROM_PB[v] for p, v in message.policy_statuses.items()}
    if message.HasField("scaling"):
        result.scaling = Scaling(
            constants={k: [v.written, v.run] for k, v in message.scaling.constants.items()},
            input_shapes=[list(s.dims) for s in message.scaling.input_shapes])
    return result


def _scaling_to_proto(scaling: Scaling) -> rpb.Scaling:
    return rpb.Scaling(
        constants={k: rpb.ScaledSize(written=v[0], run=v[1])
                   for k, v in scaling.constants.items()},
        input_shapes=[rpb.Shape(dims=shape) for shape in scaling.input_shapes])


def usage_to_proto(usage: Usage) -> pb.Usage:
    return pb.Usage(prompt_tokens=usage.prompt_tokens, cached_tokens=usage.cached_tokens,
                    generated_tokens=usage.generated_tokens)


def turn_to_proto(turn: Turn) -> pb.Turn:
    message = pb.Turn(turn=turn.turn, sample=turn.sample, reward=turn.reward,
                      usage=usage_to_proto(turn.usage), generate_s=turn.generate_s,
                      evaluate_s=turn.evaluate_s)
    if turn.code is not None:
        message.code = turn.code
    if turn.result is not None:
        message.result.CopyFrom(result_to_proto(turn.result))
    return message


def turn_status(turn: Turn) -> str:
    """An EvalResult status value, or `format_error`: the label of a turn everywhere."""
    return "format_error" if turn.result is None else turn.result.status.value


def _summary(finished: Finished) -> pb.Summary:
    return pb.Summary(
        turns=[
            pb.TurnSummary(turn=t.turn, sample=t.sample, status=turn_status(t), reward=t.reward,
                           speedup=None if t.result is None else t.result.speedup)
            for t in finished.turns
        ],
        correct_turns=sum(t.result is not None and t.result.correct for t in finished.turns),
        stop_reason=finished.stop_reason,
        elapsed_s=finished.elapsed_s,
    )


def event_to_proto(event: Event) -> pb.OptimizeEvent:
    match event:
        case TurnStarted():
            return pb.OptimizeEvent(turn_started=pb.TurnStarted(
                turn=event.turn, iteration=event.iteration, samples=event.samples))
        case Generated():
            return pb.OptimizeEvent(generated=pb.Generated(
                turn=event.turn, sample=event.sample, response=event.response, code=event.code,
                usage=usage_to_proto(event.usage), generate_s=event.generate_s,
                finish_reason=event.finish_reason))
        case Evaluated():
            return pb.OptimizeEvent(evaluated=pb.Evaluated(turn=turn_to_proto(event.turn)))
        case BestUpdated():
            return pb.OptimizeEvent(best_updated=pb.BestUpdated(turn=turn_to_proto(event.turn)))
        case Finished():
            return pb.OptimizeEvent(finished=pb.Finished(
                best=None if event.best is None else turn_to_proto(event.best),
                summary=_summary(event), usage=usage_to_proto(event.usage),
                partial=event.partial))
    raise TypeError(f"not a loop event: {type(event).__name__}")
