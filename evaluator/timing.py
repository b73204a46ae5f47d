"""Device timing and profiling of the forward (CUDA: the interpreter's speed means nothing)."""

from __future__ import annotations

import statistics
import time
from typing import Any, Protocol

import torch

# Bound before any candidate code runs: patching the class later changes nothing here.
_Event = torch.cuda.Event
_record = torch.cuda.Event.record
_elapsed = torch.cuda.Event.elapsed_time
_event_synchronize = torch.cuda.Event.synchronize
_synchronize = torch.cuda.synchronize
_L2_FLUSH_BYTES = 256 << 20


class Clock(Protocol):
    def start(self) -> None: ...

    def stop(self) -> float:
        """Milliseconds since `start`."""
        ...


class CudaClock:
    """CUDA events around the call; the host waits for the whole device before the end
    event, so work queued on other streams is inside the measurement."""

    def start(self) -> None:
        self.begin, self.end = _Event(enable_timing=True), _Event(enable_timing=True)
        _synchronize()
        _record(self.begin)

    def stop(self) -> float:
        _synchronize()
        _record(self.end)
        _event_synchronize(self.end)
        return float(_elapsed(self.begin, self.end))


class WallClock:
    """Host time, for exercising the timing loop where there is no GPU."""

    def start(self) -> None:
        self.begin = time.perf_counter()

    def stop(self) -> float:
        return (time.perf_counter() - self.begin) * 1000


def time_forward(model: torch.nn.Module, input_sets: list[list[Any]], cfg: dict[str, Any],
                 clock: Clock | None = None) -> tuple[dict[str, Any], dict[int, list[Any]]]:
    """Time `perf_trials` calls after `warmup` ones, rotating through the trials' input sets
    with fresh clones and an L2 flush before every call.

    Returns the stats and, per input set, the output of its last timed call: the judge
    checks those, so a forward cannot behave only while it is being checked.
    """
    clock = clock or CudaClock()
    flush = _l2_flush_buffer(input_sets, cfg)
    n = len(input_sets)
    times_ms: list[float] = []
    timed_outputs: dict[int, list[Any]] = {}
    with torch.no_grad():
        for i in range(cfg["warmup"]):
            model(*clones(input_sets[i % n]))
        for trial in range(cfg["perf_trials"]):
            args = clones(input_sets[trial % n])
            if flush is not None:
                flush.zero_()
            clock.start()
            out = model(*args)
            times_ms.append(clock.stop())
            if trial >= cfg["perf_trials"] - n:
                timed_outputs[trial % n] = _flat(out)
    return stats(times_ms), timed_outputs


def stats(times_ms: list[float]) -> dict[str, Any]:
    return {
        "mean_ms": statistics.fmean(times_ms),
        "median_ms": statistics.median(times_ms),
        "std_ms": statistics.pstdev(times_ms),
        "min_ms": min(times_ms),
        "max_ms": max(times_ms),
        "trials": len(times_ms),
    }


def profile_forward(model: torch.nn.Module, inputs: list[Any], own: set[str]) -> dict[str, Any]:
    """Kernel table and the share of device time spent in the candidate's own kernels."""
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            model(*clones(inputs))
        _synchronize()
    rows = []
    for event in prof.key_averages():
        device_us = float(getattr(event, "device_time_total", 0.0) or 0.0)
        if device_us <= 0 or event.key.startswith("aten::"):
            continue
        is_own = any(n.lower() in event.key.lower() or event.key.lower() in n.lower()
                     for n in own)
        rows.append({"name": event.key, "device_time_us": device_us, "count": event.count,
                     "own": is_own})
    total = sum(r["device_time_us"] for r in rows)
    own_us = sum(r["device_time_us"] for r in rows if r["own"])
    rows.sort(key=lambda r: -r["device_time_us"])
    return {"kernels": rows[:20], "coverage": own_us / total if total else None}


def _l2_flush_buffer(input_sets: list[list[Any]], cfg: dict[str, Any]) -> torch.Tensor | None:
    on_gpu = any(isinstance(x, torch.Tensor) and x.is_cuda for x in input_sets[0])
    if not (cfg["l2_flush"] and on_gpu):
        return None
    return torch.empty(_L2_FLUSH_BYTES, dtype=torch.uint8, device="cuda")


def clones(inputs: list[Any]) -> list[Any]:
    """Fresh copies of a forward's tensor arguments; other arguments pass through."""
    return [x.clone() if isinstance(x, torch.Tensor) else x for x in inputs]


def _flat(out: Any) -> list[Any]:
    if isinstance(out, (tuple, list)):
        return [y for item in out for y in _flat(item)]
    return [out.detach() if isinstance(out, torch.Tensor) else out]
