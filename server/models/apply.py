"""`drkernel apply`: write `optimize(model)` from a manifest and a batch's best kernels,
prove on the user's inputs that it computes what the model did, estimate the speedup."""

from __future__ import annotations

import copy
import importlib.util
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from server.batch.record import ProblemRecord
from server.batch.store import ResultStore
from server.models.extract import outputs_match, tensors
from server.models.manifest import Manifest, ProblemEntry
from server.models.target import Target, call, default_device, load, make_inputs

ATOL = RTOL = 1e-2
"""The judge's tolerances."""
_TEMPLATE = Path(__file__).with_name("optimized_template.py")


class ApplyError(ValueError):
    """The optimised model cannot be written; the message says why."""


@dataclass(frozen=True)
class Swap:
    entry: ProblemEntry
    kernel: str
    """The best candidate's source (defines ModelNew)."""
    speedup: float | None


@dataclass
class Applied:
    swaps: list[Swap]
    missing: list[str] = field(default_factory=list)
    """Problems with no correct kernel in the results: their modules stay as they are."""
    max_abs_diff: float = 0.0
    expected_speedup: float | None = None
    measured_speedup: float | None = None
    device: str = "cpu"


def find_swaps(manifest: Manifest, manifest_dir: Path, results: Path) -> Applied:
    records = list(ResultStore(results).load().values())
    swaps, missing = [], []
    for entry in manifest.problems:
        record = _record_for(entry, manifest_dir, records)
        if record is None or record.kernel is None:
            missing.append(entry.name)
            continue
        kernel = (results / record.kernel).read_text(encoding="utf-8")
        swaps.append(Swap(entry, kernel, record.best_speedup))
    return Applied(swaps, missing)


def _record_for(entry: ProblemEntry, manifest_dir: Path,
                records: list[ProblemRecord]) -> ProblemRecord | None:
    """The batch record of this problem file: by path, else by name."""
    file = (manifest_dir / entry.file).resolve()
    for record in records:
        if Path(record.path).resolve() == file:
            return record
    stem = Path(entry.file).stem
    named = [r for r in records if r.name == stem or r.name.endswith("/" + stem)]
    return named[0] if len(named) == 1 else None


def render(applied: Applied, origin: str) -> str:
    kernels = []
    for swap in applied.swaps:
        e = swap.entry
        kernels.append(
            f"    {e.name!r}: Kernel(\n"
            f"        module_class={e.module_class!r},\n"
            f"        paths={e.paths!r},\n"
            f"        init_args={e.init_args},\n"
            f"        speedup={swap.speedup!r},\n"
            f"        source={_string(swap.kernel)},\n"
            f"    ),\n")
    template = _TEMPLATE.read_text(encoding="utf-8")
    return (template.replace("ORIGIN", origin)
            .replace("    # KERNELS\n", "".join(kernels)))


def _string(source: str) -> str:
    if "'''" not in source and not source.endswith("\\") and "\\" not in source:
        return "'''\\\n" + source + "'''"
    return repr(source)


def verify_and_write(applied: Applied, source: str, target: Target, out: Path,
                     seed: int = 1234) -> Applied:
    """Writes `out` only if the optimised model computes the original's outputs."""
    device = default_device()
    loaded = load(target, device)
    original = loaded.model
    torch.manual_seed(seed)
    inputs = [x.to(device) if isinstance(x, torch.Tensor) else x
              for x in make_inputs(loaded.module, target.inputs)]
    expected = call(original, inputs)
    staging = out.with_name(f".{out.name}.staging.py")
    staging.write_text(source, encoding="utf-8")
    try:
        optimized = _import(staging).optimize(copy.deepcopy(original))
        got = call(optimized, inputs)
        applied.max_abs_diff = _max_diff(expected, got)
        if not outputs_match(expected, got, ATOL):
            raise ApplyError("the optimised model does not compute the original's outputs "
                             f"(max abs diff {applied.max_abs_diff:.3g}, atol = rtol = {ATOL})")
        applied.device = device.type
        applied.expected_speedup = amdahl([(s.entry.time_share, s.speedup)
                                           for s in applied.swaps])
        if device.type == "cuda":
            applied.measured_speedup = _time(original, inputs) / _time(optimized, inputs)
        staging.replace(out)
    finally:
        staging.unlink(missing_ok=True)
    return applied


def _import(path: Path) -> ModuleType:
    name = f"drkernel_optimized_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ApplyError(f"the written module does not load: {type(exc).__name__}: {exc}"
                         ) from None
    return module


def amdahl(parts: list[tuple[float, float | None]]) -> float | None:
    """End-to-end speedup from (time share, speedup) per swapped module; None when any
    speedup was not measured."""
    if not parts or any(s is None or s <= 0 for _, s in parts):
        return None
    rest = 1.0 - sum(share for share, _ in parts)
    return 1.0 / (max(rest, 0.0) + sum(share / s for share, s in parts if s))


def _max_diff(expected: Any, got: Any) -> float:
    pairs = zip(tensors(expected), tensors(got), strict=False)
    return max((float((a.float() - b.float()).abs().max()) for a, b in pairs if a.shape == b.shape
                and a.numel()), default=0.0)


def _time(model: nn.Module, inputs: list[Any], runs: int = 50) -> float:
    for _ in range(5):
        call(model, inputs)
    times = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call(model, inputs)
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)
