"""One account of torch work, the only way the judge weighs what torch did.

Cost. Each torch op the candidate's (or the reference's) forward runs is weighed by what it
does, never by its name: `max(flops / FLOPS_PER_NS, bytes / BYTES_PER_NS)` estimated
nanoseconds on a nominal GPU (a roofline with fixed peaks). FLOPs come from torch's own
formulas (`torch.utils.flop_counter`: matmuls, convolutions, attention) plus the few below for
recurrent layers (CPU `mkldnn_rnn_layer`, cuDNN `_cudnn_rnn`, unfused `lstm`/`gru` cells),
attention without a formula, and FFTs; every other op counts one FLOP per output element.
Bytes are what the op reads and writes. So a new op family is heavy by its cost, and a mean
over a handful of per-sample losses or an argmax over a few values is glue by its cost.
Ops that only allocate or move data (`GLUE_OPS`), arithmetic on the module's parameters
alone (folding a norm into a weight) and arithmetic on constants (a shape tuple made a tensor)
carry no work.

Provenance (`monitor.OpTracer`). Storages are followed through the forward: what torch
computed from the inputs alone (kept, up to an output's size, to compare with the outputs),
what the candidate's own kernels wrote with work of their own (a kernel that writes as many
values as its largest argument, each one a value it was given, only copied or re-laid out:
its data keeps its origin), and what torch computed from the kernels' results.

Verdict (`judge._framework_compute`). Triton replaced none of the reference's computation,
in every policy but `kernelgym`, when every output of every trial is torch's own result
(moved or re-laid out by the kernels at most), or when torch alone did the reference's whole
work while the kernels computed less than an output. Otherwise the candidate's Triton share is
one minus its torch work over the reference's (per trial): on cpu that is the estimate the
result reports; `strict` fails torch work above `judge._GLUE_SHARE` of the reference's.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils.flop_counter import flop_registry

FLOPS_PER_NS = 100_000.0
"""A nominal 100 TFLOP/s."""
BYTES_PER_NS = 3_000.0
"""A nominal 3 TB/s."""

# Allocation, layout and data movement: no work of the problem's computation.
GLUE_OPS = frozenset({
    "empty", "empty_like", "empty_strided", "empty_permuted", "new_empty", "new_empty_strided",
    "zeros", "zeros_like", "new_zeros", "ones", "ones_like", "new_ones", "full", "full_like",
    "new_full", "fill_", "zero_", "copy_", "set_", "clone", "contiguous", "detach", "detach_",
    "alias", "lift_fresh", "lift_fresh_copy", "view", "_unsafe_view", "reshape",
    "_reshape_alias", "as_strided", "as_strided_", "t", "transpose", "permute", "expand",
    "expand_as", "unsqueeze", "squeeze", "flatten", "unflatten", "slice", "select", "narrow",
    "split", "split_with_sizes", "unsafe_split", "chunk", "unbind", "cat", "stack", "_to_copy",
    "to", "_local_scalar_dense", "item", "sym_size", "sym_stride", "sym_numel",
    "sym_storage_offset", "is_same_size", "resize_", "arange", "scalar_tensor", "view_as",
    "type_as", "movedim", "result_type", "_has_compatible_shallow_copy_type", "random_",
    "normal_", "uniform_", "pad", "constant_pad_nd", "repeat", "is_nonzero", "dim",
    "size", "stride", "numel", "unfold",
})


def op_cost(name: str, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
            out: Any) -> float:
    """Estimated nanoseconds of one op call; 0 for glue."""
    if name in GLUE_OPS:
        return 0.0
    results = tensors_in(out)
    moved = sum(_nbytes(t) for t in tensors_in((args, kwargs))) + sum(map(_nbytes, results))
    flops = _flops(name, func, args, kwargs, out)
    if flops is None:
        flops = float(sum(t.numel() for t in results))
    return max(flops / FLOPS_PER_NS, moved / BYTES_PER_NS)


def _flops(name: str, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
           out: Any) -> float | None:
    formula = flop_registry.get(getattr(func, "overloadpacket", None))
    if formula is not None:
        try:
            return float(formula(*args, **kwargs, out_val=out))
        except Exception:  # a formula that does not fit an overload: fall back to bytes
            return None
    tensors = list(tensors_in(args))
    if not tensors:
        return None
    if "rnn" in name or name in ("lstm", "gru", "lstm_cell", "gru_cell", "rnn_tanh_cell",
                                 "rnn_relu_cell"):
        return _recurrent_flops(tensors)
    if "attention" in name and len(tensors) >= 2 and tensors[0].dim() >= 2:
        q, k = tensors[0], tensors[1]
        return 4.0 * q.numel() * k.shape[-2]
    if "fft" in name:
        n = max(tensors[0].shape[-1] if tensors[0].dim() else 1, 2)
        return 5.0 * tensors[0].numel() * math.log2(n)
    return None


def _recurrent_flops(tensors: list[torch.Tensor]) -> float:
    """Every time step of every sequence multiplies by every gate weight matrix."""
    first = tensors[0]
    steps = first.numel() // max(first.shape[-1], 1) if first.dim() else 1
    weights = sum(t.numel() for t in tensors[1:] if t.dim() == 2)
    return 2.0 * steps * weights


def tensors_in(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in tensors_in(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in tensors_in(v)]
    return []


def _nbytes(t: torch.Tensor) -> int:
    try:
        return t.numel() * t.element_size()
    except (RuntimeError, NotImplementedError):
        return 0


def triton_share(torch_ns: float, reference_ns: float) -> float:
    """The candidate's Triton share of the work: what the reference did that torch did not."""
    if reference_ns <= 0:
        return 1.0 if torch_ns <= 0 else 0.0
    return min(1.0, max(0.0, 1.0 - torch_ns / reference_ns))
