"""Constructor arguments of every module built while a model is made.

A profile function sees each Python call; at the entry of a module's own (most derived)
`__init__` its arguments are still the caller's values, before the constructor can change
them. Limits: a constructor wrapped by a decorator, or written in C, is not seen; arguments
are kept by reference, so an object the caller mutates later shows its later state.
"""

from __future__ import annotations

import inspect
import sys
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from torch import nn


@dataclass(frozen=True)
class InitCall:
    """How one module was constructed: positional, keyword-only and **kwargs values."""

    positional: list[tuple[str, Any]]
    varargs: list[Any] = field(default_factory=list)
    keywords: dict[str, Any] = field(default_factory=dict)


class InitRecorder:
    def __init__(self) -> None:
        self.calls: dict[int, tuple[nn.Module, InitCall]] = {}

    def of(self, module: nn.Module) -> InitCall | None:
        entry = self.calls.get(id(module))
        return entry[1] if entry is not None and entry[0] is module else None

    def _profile(self, frame: types.FrameType, event: str, arg: Any) -> None:
        if event != "call" or frame.f_code.co_name != "__init__":
            return
        code = frame.f_code
        if not code.co_argcount:
            return
        this = frame.f_locals.get(code.co_varnames[0])
        if not isinstance(this, nn.Module) or id(this) in self.calls:
            return
        init = getattr(type(this).__init__, "__code__", None)
        if init is code:
            self.calls[id(this)] = (this, _arguments(frame))


def _arguments(frame: types.FrameType) -> InitCall:
    info = inspect.getargvalues(frame)
    code = frame.f_code
    names = code.co_varnames
    positional = [(n, info.locals[n]) for n in names[1:code.co_argcount]]
    kwonly = names[code.co_argcount:code.co_argcount + code.co_kwonlyargcount]
    keywords = {n: info.locals[n] for n in kwonly}
    if info.keywords:
        keywords.update(info.locals[info.keywords])
    varargs = list(info.locals[info.varargs]) if info.varargs else []
    return InitCall(positional, varargs, keywords)


@contextmanager
def recording() -> Iterator[InitRecorder]:
    recorder = InitRecorder()
    previous: Callable[..., Any] | None = sys.getprofile()
    sys.setprofile(recorder._profile)
    try:
        yield recorder
    finally:
        sys.setprofile(previous)
