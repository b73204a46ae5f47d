"""Values written into generated Python source: only what `repr` round-trips exactly."""

from __future__ import annotations

import math
from typing import Any

import torch


class NotLiteral(ValueError):
    """A value that generated source cannot spell (an object, a tensor, a module)."""


def literal(value: Any) -> str:
    """Python source that evaluates to `value` with only `torch` imported."""
    if value is None or isinstance(value, bool | int | str):
        return repr(value)
    if isinstance(value, float):
        return f"float({str(value)!r})" if math.isinf(value) or math.isnan(value) else repr(value)
    if isinstance(value, torch.dtype):
        return str(value)
    if isinstance(value, tuple):
        items = ", ".join(literal(v) for v in value)
        return f"({items},)" if len(value) == 1 else f"({items})"
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return "{" + ", ".join(f"{k!r}: {literal(v)}" for k, v in value.items()) + "}"
    raise NotLiteral(f"a {type(value).__name__}")

