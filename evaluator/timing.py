"""Device timing and profiling of one forward (CUDA only; the interpreter's speed means nothing)."""

from __future__ import annotations

import statistics
from typing import Any

import torch

_Event = torch.cuda.Event
_synchronize = torch.cuda.synchronize
_L2_FLUSH_BYTES = 256 << 20


def time_forward(model: torch.nn.Module, inputs: list[Any], cfg: dict[str, Any]) -> dict[str, Any]:
    """CUDA-event timing: warm-ups, an L2 flush and fresh input clones before every timed call.

    The host waits for the device before the end event, so work queued on other streams
    is inside the measurement.
    """
    flush = torch.empty(_L2_FLUSH_BYTES, dtype=torch.uint8, device="cuda")
    with torch.no_grad():
        for _ in range(cfg["warmup"]):
            model(*_clones(inputs))
        _synchronize()
        times_ms: list[float] = []
        keep: list[list[Any]] = []
        for _ in range(cfg["perf_trials"]):
            args = _clones(inputs)
            keep = [*keep[-1:], args]  # keep recent clones alive so addresses are not recycled
            if cfg["l2_flush"]:
                flush.zero_()
            start, end = _Event(enable_timing=True), _Event(enable_timing=True)
            _synchronize()
            start.record()
            model(*args)
            _synchronize()
            end.record()
            end.synchronize()
            times_ms.append(start.elapsed_time(end))
    return stats(times_ms)


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
            model(*_clones(inputs))
        _synchronize()
    rows = []
    for event in prof.key_averages():
        device_us = float(getattr(event, "device_time_total", 0.0) or 0.0)
        if device_us <= 0:
            continue
        is_own = any(n.lower() in event.key.lower() or event.key.lower() in n.lower()
                     for n in own)
        rows.append({"name": event.key, "device_time_us": device_us, "count": event.count,
                     "own": is_own})
    kernels = [r for r in rows if not r["name"].startswith("aten::")]
    total = sum(r["device_time_us"] for r in kernels)
    own_us = sum(r["device_time_us"] for r in kernels if r["own"])
    kernels.sort(key=lambda r: -r["device_time_us"])
    return {"kernels": kernels[:20], "coverage": own_us / total if total else None}


def _clones(inputs: list[Any]) -> list[Any]:
    return [x.clone() if isinstance(x, torch.Tensor) else x for x in inputs]
