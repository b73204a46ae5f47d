"""Fit a KernelBench problem to the cpu judge by shrinking its module-level size constants.

KernelBench sizes its problems for a GPU (level1/19_ReLU allocates 6 GB per input). Its files
define sizes as module-level int constants (`batch_size = 4096`, `height, width = 128, 128`,
`input_shape = (32768,)`) that `get_inputs` and `get_init_inputs` use. On cpu the reference
child measures the problem on the meta device (no memory, no compute): bytes of inputs,
state and outputs, bytes every op writes, and matmul/convolution FLOPs. If it is over the
budget, every size constant is scaled by one factor, to sizes that are not multiples of 8 so
that missing masks show (or, when the problem's forward rejects those on meta, to the
originals divided by one power of two, or else only the batch size), until the problem fits
or shrinking gains little (what is left is the weights). The same substitution is then
applied to the reference's and the candidate's source text; only the constants' values
change, never the line structure.

Structural constants (kernel sizes, strides, paddings, groups, heads, layer counts) and small
ones (below 16, batch sizes excepted) are left as written.
"""

from __future__ import annotations

import ast
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_STRUCTURAL = ("kernel", "stride", "pad", "dilation", "group", "head", "num_layers", "eps",
               "seed", "dim_idx", "reduce_dim", "axis")
_MIN_SCALED = 16
_FACTOR_STEPS = 12
_STALLED = 0.8
"""Shrinking further that gains less than this factor: the rest of the cost is the weights."""


@dataclass(frozen=True)
class Budget:
    """What one forward of the reference may cost on the cpu judge."""

    state_bytes: int = 8 << 20
    """Inputs, parameters and outputs together: Triton's interpreter takes ~2 ms per program
    of 1024 elements, and a candidate runs about ten forwards."""
    traffic_bytes: int = 64 << 20
    """Bytes written by all the forward's ops (a time and peak-memory proxy)."""
    flops: float = 5e8
    """Matmul, convolution and attention FLOPs of one forward."""
    ops: int = 20_000
    """Aten ops of one forward (an RNN unrolled over a long sequence runs many)."""
    measure_s: float = 2.0
    """Time to spend measuring one forward on meta (slow for unrolled RNNs)."""
    planning_s: float = 30.0
    """Time to spend choosing sizes; then the best sizes measured so far are used."""


@dataclass(frozen=True)
class Slot:
    """One int in the source that a size constant holds."""

    key: str
    value: int
    line: int
    col: int
    end_line: int
    end_col: int


@dataclass
class Cost:
    state_bytes: int = 0
    traffic_bytes: int = 0
    flops: float = 0.0
    input_shapes: list[list[int]] = field(default_factory=list)
    complete: bool = True
    """False when the forward was cut off for running too many ops: a lower bound."""
    forward_ran: bool = True
    """False when the forward raised on meta tensors (data-dependent ops, or shapes the
    problem's own rules reject)."""

    def ratio(self, budget: Budget) -> float:
        """How far over the budget (1.0 = exactly at it)."""
        ratio = max(self.state_bytes / budget.state_bytes,
                    self.traffic_bytes / budget.traffic_bytes, self.flops / budget.flops)
        return ratio if self.complete else max(ratio, 4.0)


@dataclass(frozen=True)
class Plan:
    constants: dict[str, tuple[int, int]]
    """key -> (original, used), only those changed."""
    source: str
    input_shapes: list[list[int]]

    def report(self) -> dict[str, Any]:
        return {"constants": {k: list(v) for k, v in self.constants.items()},
                "input_shapes": self.input_shapes}


# ---------------------------------------------------------------- reading and rewriting


def slots(source: str) -> list[Slot]:
    """The module-level int constants of a source, with where their values stand."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    found: list[Slot] = []
    for node in tree.body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                found += _target_slots(target, node.value)
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            found += _target_slots(node.target, node.value)
    return found


def _target_slots(target: ast.expr, value: ast.expr) -> list[Slot]:
    if isinstance(target, ast.Name):
        if isinstance(value, (ast.Tuple, ast.List)):
            return [s for i, v in enumerate(value.elts)
                    for s in _value_slot(f"{target.id}[{i}]", v)]
        return _value_slot(target.id, value)
    if isinstance(target, (ast.Tuple, ast.List)) and isinstance(value, (ast.Tuple, ast.List)) \
            and len(target.elts) == len(value.elts):
        return [s for t, v in zip(target.elts, value.elts, strict=True)
                for s in _target_slots(t, v)]
    return []


def _value_slot(key: str, node: ast.expr) -> list[Slot]:
    value = _int_value(node)
    if value is None or node.end_lineno is None or node.end_col_offset is None:
        return []
    return [Slot(key, value, node.lineno, node.col_offset, node.end_lineno, node.end_col_offset)]


def _int_value(node: ast.expr) -> int | None:
    """An int literal, or arithmetic on int literals (`2048 * 2`); nothing that names."""
    if isinstance(node, ast.Constant):
        return node.value if type(node.value) is int else None
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult,
                                                            ast.FloorDiv, ast.Pow)):
        left, right = _int_value(node.left), _int_value(node.right)
        if left is None or right is None or (isinstance(node.op, ast.Pow) and right > 64):
            return None
        if isinstance(node.op, ast.FloorDiv):
            return left // right if right else None
        ops: dict[type, Callable[[int, int], int]] = {
            ast.Add: int.__add__, ast.Sub: int.__sub__, ast.Mult: int.__mul__, ast.Pow: pow}
        return ops[type(node.op)](left, right)
    return None


def scalable(slot: Slot) -> bool:
    name = slot.key.split("[")[0].lower()
    if any(word in name for word in _STRUCTURAL):
        return False
    return slot.value >= _MIN_SCALED or ("batch" in name and slot.value > 1)


def apply(source: str, values: dict[str, tuple[int, int]]) -> str:
    """`source` with each constant `key` that holds `original` set to `used`.

    A constant the source defines with another value is its own, and is left alone.
    """
    changes = {(s.line, s.col): (s, values[s.key][1]) for s in reversed(slots(source))
               if s.key in values and values[s.key][0] == s.value}  # `h = w = 128`: one value
    lines = source.splitlines(keepends=True)
    for _, (slot, used) in sorted(changes.items(), reverse=True):
        first, last = lines[slot.line - 1], lines[slot.end_line - 1]
        text = first[:_byte_col(first, slot.col)] + str(used) + \
            last[_byte_col(last, slot.end_col):]
        lines[slot.line - 1 : slot.end_line] = [text]
        lines[slot.line : slot.line] = ["\n"] * (slot.end_line - slot.line)
    return "".join(lines)


def _byte_col(line: str, col: int) -> int:
    """ast's column offsets count UTF-8 bytes."""
    return len(line.encode("utf-8")[:col].decode("utf-8", "ignore"))


# ---------------------------------------------------------------- choosing sizes


def resized(value: int, factor: float, style: str) -> int:
    """`value` times about `factor`.

    `unaligned`: not a multiple of 8, so that a kernel's missing mask shows. `aligned`: the
    value divided by a power of two, which keeps every odd factor (768 / 16 = 48 is still a
    multiple of 12 heads) and the ratios between sizes, for problems whose own shape rules
    reject unaligned sizes."""
    if style == "aligned":
        divisor = min(1 << max(0, round(-math.log2(factor))), value & -value)
        return max(1, value // divisor)
    low = min(value, 2 if value < _MIN_SCALED else _MIN_SCALED + 1)
    target = max(low, round(value * factor))
    return target - 1 if target % 8 == 0 else target  # never above the value as written


def _candidates(chosen: list[Slot], factor: float) -> Iterator[dict[str, tuple[int, int]]]:
    """Sizes to try at one factor, the most useful first; the last shrinks only batch sizes
    (a network whose depth needs its image size)."""
    for style in ("unaligned", "aligned"):
        yield {s.key: (s.value, resized(s.value, factor, style)) for s in chosen}
    yield {s.key: (s.value, resized(s.value, factor, "unaligned") if "batch" in s.key.lower()
                   else s.value) for s in chosen}


def fit(source: str, measure: Callable[[str, Budget], Cost | None],
        budget: Budget = Budget()) -> Plan | None:
    """The sizes to run the problem at, or None when it fits as written (or cannot be
    measured: then it runs as written, and the time and memory limits decide).

    Sizes count only where the forward still runs on meta (when the problem's own forward
    does). Where no sizes fit (a network's weights alone exceed the budget), shrinking stops
    once it gains little; when time runs out, the smallest sizes measured so far are used."""
    deadline = time.monotonic() + budget.planning_s
    cost = measure(source, budget)
    if cost is None or cost.ratio(budget) <= 1.0:
        return None
    chosen = [s for s in slots(source) if scalable(s)]
    best: tuple[float, Plan] | None = None
    tried: list[dict[str, tuple[int, int]]] = []
    factor, ratio = 1.0, cost.ratio(budget)
    for _ in range(_FACTOR_STEPS if chosen else 0):
        factor *= min(0.8, max(0.2, (1.0 / ratio) ** (1 / 3)))
        for values in _candidates(chosen, factor):
            if values in tried:
                continue
            tried.append(values)
            scaled = apply(source, values)
            measured = measure(scaled, budget)
            if measured is None or (cost.forward_ran and not measured.forward_ran):
                continue  # the problem's own shape rules reject these sizes
            if measured.complete and best is not None \
                    and measured.ratio(budget) > _STALLED * best[0]:
                return best[1]  # what is left over budget is not sizes (weights)
            ratio = measured.ratio(budget)
            best = (ratio, Plan({k: v for k, v in values.items() if v[0] != v[1]}, scaled,
                                measured.input_shapes))
            break
        if (best is not None and best[0] <= 1.0) or time.monotonic() > deadline:
            break
    return best[1] if best is not None else None  # smaller sizes never cost more


# ---------------------------------------------------------------- measuring on meta


class _TooManyOps(Exception):
    pass


class _Traffic(TorchDispatchMode):
    def __init__(self, budget: Budget) -> None:
        super().__init__()
        self.bytes = 0
        self.ops = 0
        self.max_ops = budget.ops
        self.deadline = time.monotonic() + budget.measure_s

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        self.ops += 1
        if self.ops > self.max_ops or time.monotonic() > self.deadline:
            raise _TooManyOps
        out = func(*args, **(kwargs or {}))
        self.bytes += sum(_nbytes(t) for t in _tensors(out))
        return out


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def measure_on_meta(module: ModuleType, budget: Budget = Budget()) -> Cost | None:
    """What one forward of the loaded problem costs, found on the meta device; None when the
    problem cannot be built there. A forward that meta tensors cannot run (data-dependent
    ops) is costed by its inputs and state alone."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"), torch.no_grad():
        try:
            init = list(module.get_init_inputs())
            args, kwargs = ([], init[1]) if len(init) == 2 and init[0] == [] \
                and isinstance(init[1], dict) else (init, {})
            model = module.Model(*args, **kwargs)
            inputs = list(module.get_inputs())
        except Exception:
            return None
        state = [*model.parameters(), *model.buffers(), *_tensors(inputs)]
        cost = Cost(state_bytes=sum(_nbytes(t) for t in state),
                    input_shapes=[list(x.shape) for x in inputs if isinstance(x, torch.Tensor)])
        traffic = _Traffic(budget)
        try:
            with FlopCounterMode(display=False) as flops, traffic:
                out = model(*inputs)
        except _TooManyOps:
            cost.traffic_bytes, cost.complete = traffic.bytes, False
            return cost
        except Exception:
            cost.traffic_bytes, cost.forward_ran = cost.state_bytes, False
            return cost
    cost.state_bytes += sum(_nbytes(t) for t in _tensors(out))
    cost.traffic_bytes, cost.flops = traffic.bytes, float(flops.get_total_flops())
    return cost

