"""One profiled run of the model: time, FLOPs, inputs and outputs of every submodule.

A warm-up run first, then `REPEATS` runs (averaged: one run on a busy machine is noise) under
`torch.profiler` with a `record_function` span per
module call (inclusive device time on cuda, CPU time on cpu), then one under
`FlopCounterMode`, whose module tracker attributes FLOPs to the same paths. Module hooks keep
each module's first-call arguments and output for writing and checking its problem.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function
from torch.utils.flop_counter import FlopCounterMode

from server.models.target import Loaded, call

_LABEL = "drkernel.module:"
REPEATS = 3


@dataclass
class ModuleRun:
    path: str
    """Dotted path in the model; "" for the model itself."""
    module: nn.Module
    calls: int = 0
    time_us: float = 0.0
    flops: int = 0
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    output: Any = None
    varying: bool = False
    """Later calls had other input shapes than the first (the problem uses the first)."""


@dataclass
class Profile:
    runs: dict[str, ModuleRun]
    total_us: float
    total_flops: int
    device: str


def profile_model(loaded: Loaded) -> Profile:
    model, inputs = loaded.model, loaded.inputs
    runs = {path: ModuleRun(path, m) for path, m in model.named_modules()}
    call(model, inputs)
    with _hooks(model, runs):
        _timed(model, inputs, runs, loaded.device)
    _count_flops(model, inputs, runs)
    root = runs[""]
    return Profile(runs, root.time_us, root.flops, loaded.device.type)


def signature(values: list[Any]) -> list[Any]:
    return [(tuple(v.shape), str(v.dtype)) if isinstance(v, torch.Tensor) else repr(v)
            for v in values]


@contextmanager
def _hooks(model: nn.Module, runs: dict[str, ModuleRun]) -> Iterator[None]:
    spans: list[Any] = []
    handles = []
    for path, module in model.named_modules():
        run = runs[path]

        def before(m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
                   run: ModuleRun = run) -> None:
            if run.calls == 0:
                run.args = [_kept(a) for a in args]
                run.kwargs = {k: _kept(v) for k, v in kwargs.items()}
            elif signature(list(args)) != signature(run.args):
                run.varying = True
            run.calls += 1
            span = record_function(_LABEL + run.path)
            span.__enter__()
            spans.append(span)

        def after(m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any,
                  run: ModuleRun = run) -> None:
            spans.pop().__exit__(None, None, None)
            if run.output is None:
                run.output = _kept(output)

        handles.append(module.register_forward_pre_hook(before, with_kwargs=True))
        handles.append(module.register_forward_hook(after, with_kwargs=True))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _timed(model: nn.Module, inputs: list[Any], runs: dict[str, ModuleRun],
           device: torch.device) -> None:
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        for _ in range(REPEATS):
            call(model, inputs)
        if device.type == "cuda":
            torch.cuda.synchronize()
    for event in prof.events():
        if event.name.startswith(_LABEL):
            run = runs.get(event.name[len(_LABEL):])
            if run is not None:
                run.time_us += (event.device_time_total if device.type == "cuda"
                                else event.cpu_time_total) / REPEATS


def _count_flops(model: nn.Module, inputs: list[Any], runs: dict[str, ModuleRun]) -> None:
    counter = FlopCounterMode(display=False)
    with counter:
        call(model, inputs)
    root = type(model).__name__
    for key, counts in counter.get_flop_counts().items():
        if key == "Global":
            continue
        path = key[len(root) + 1:] if key.startswith(root + ".") else "" if key == root else None
        if path is not None and path in runs:
            runs[path].flops = int(sum(counts.values()))


def _kept(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, tuple | list):
        return type(value)(_kept(v) for v in value)
    return value
