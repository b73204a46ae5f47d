"""Writing one group of identical submodules as a KernelBench-format problem.

Three ways, tried in order: a `torch.nn` class is subclassed as it is; a user class is cut
from its file with what it needs (`source_cut`); otherwise the module's traced graph
(`torch.fx`) becomes the forward, with its leaf `torch.nn` modules rebuilt from their
constructor arguments and its own parameters drawn by shape (see `fx_writer`).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from server.models.capture import InitCall
from server.models.fx_writer import FxError, traced_source
from server.models.literal import NotLiteral, literal
from server.models.source_cut import CutError, cut_class

HEADER = '"""{doc}"""\n\nimport torch\nimport torch.nn as nn\n\n\n'
_HEADER_IMPORTS = ("import torch", "import torch.nn as nn")


class WriteError(ValueError):
    """The module cannot be written as a self-contained problem; the message says why."""


@dataclass(frozen=True)
class Written:
    source: str
    how: str
    """torch_builtin, source or fx_trace."""
    init_args: str
    """The `get_init_inputs()` list, as Python source."""
    note: str = ""


def write_problem(module: nn.Module, init: InitCall | None, args: list[Any], doc: str,
                  recorded: dict[int, InitCall], file_source: str | None = None) -> Written:
    """`recorded`: constructor calls of every module, by id, for the traced fallback;
    `file_source`: the source of the class's file, where it is not on disk."""
    reasons = []
    try:
        return _by_class(module, init, args, doc, file_source)
    except (WriteError, CutError, NotLiteral, OSError, TypeError) as exc:
        reasons.append(f"its source: {exc}")
    try:
        body, note = traced_source(module, recorded)
        return Written(_file(doc, body, args, "[]"), "fx_trace", "[]", note)
    except FxError as exc:
        reasons.append(f"its traced graph: {exc}")
    raise WriteError("; ".join(reasons))


def _by_class(module: nn.Module, init: InitCall | None, args: list[Any], doc: str,
              file_source: str | None) -> Written:
    cls = type(module)
    if init is None:
        raise WriteError(f"the constructor call of {cls.__name__} was not seen")
    init_args, wrapper = _init_source(cls, init)
    if cls.__module__.startswith("torch.") and getattr(nn, cls.__name__, None) is cls:
        body = f"class Model(nn.{cls.__name__}):\n{wrapper or '    pass'}\n"
        return Written(_file(doc, body, args, init_args), "torch_builtin", init_args)
    if file_source is None:
        file_source = inspect.getsource(inspect.getmodule(cls))  # type: ignore[arg-type]
    cut = cut_class(file_source, cls.__name__)
    if cls.__qualname__ != cls.__name__:
        raise WriteError(f"{cls.__qualname__} is not a top-level class")
    own = "".join(line for line in cut.source.splitlines(keepends=True)
                  if line.strip() not in _HEADER_IMPORTS)
    body = f"{own.lstrip()}\n\nclass Model({cls.__name__}):\n{wrapper or '    pass'}\n"
    return Written(_file(doc, body, args, init_args), "source", init_args)


def _init_source(cls: type, init: InitCall) -> tuple[str, str]:
    """The positional arguments for `get_init_inputs`, and a constructor that passes the
    keyword-only ones (fixed at their recorded values) where there are any."""
    positional = [value for _, value in init.positional] + init.varargs
    for name, value in [*init.positional, *init.keywords.items()]:
        try:
            literal(value)
        except NotLiteral as exc:
            raise WriteError(f"constructor argument {name!r} of {cls.__name__} is {exc}, "
                             "not a literal") from None
    init_args = literal(positional)
    if not init.keywords:
        return init_args, ""
    names = [n for n, _ in init.positional] + [f"a{i}" for i in range(len(init.varargs))]
    fixed = ", ".join(f"{k}={literal(v)}" for k, v in init.keywords.items())
    params = ", ".join(names)
    wrapper = (f"    def __init__(self, {params}):\n"
               f"        super().__init__({params}, {fixed})\n")
    return init_args, wrapper


def _file(doc: str, body: str, args: list[Any], init_args: str) -> str:
    return (HEADER.format(doc=doc) + body + "\n\n" + inputs_source(args)
            + f"\n\ndef get_init_inputs():\n    return {init_args}\n")


def inputs_source(args: list[Any]) -> str:
    lines = ["def get_inputs():", "    return ["]
    for value in args:
        lines.append(f"        {_input(value)},")
    lines.append("    ]")
    return "\n".join(lines) + "\n"


def _input(value: Any) -> str:
    if not isinstance(value, torch.Tensor):
        try:
            return literal(value)
        except NotLiteral as exc:
            raise WriteError(f"a forward argument is {exc}: only tensors and literals can be "
                             "written") from None
    shape = literal(tuple(value.shape))
    if value.dtype == torch.bool:
        return f"torch.randint(0, 2, {shape}).bool()"
    if not value.dtype.is_floating_point:
        high = int(value.max().item()) + 1 if value.numel() else 1
        return f"torch.randint(0, {high}, {shape}, dtype={value.dtype})"
    dtype = "" if value.dtype == torch.float32 else f", dtype={value.dtype}"
    return f"torch.randn({shape}{dtype})"
