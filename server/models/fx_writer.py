"""A module's forward as a `torch.fx` graph, written out as a self-contained `Model`.

The graph's leaf modules (the `torch.nn` ones) are rebuilt from their recorded constructor
arguments, so they are initialised as their constructors do. The module's other parameters
and buffers were made by code the problem cannot carry: they are drawn from a normal with
each tensor's own mean and standard deviation (small integer tensors are copied), which the
manifest states. `drkernel apply` loads the real values, so only the judge's random problem
differs from the user's module.
"""

from __future__ import annotations

import builtins
import math
import operator
import re

import torch
from torch import fx, nn

from server.models.capture import InitCall
from server.models.literal import NotLiteral, literal

_GLOBALS = {"torch": "", "operator": "import operator", "math": "import math",
            "inf": "from math import inf", "nan": "from math import nan",
            "device": "from torch import device", "NoneType": "NoneType = type(None)"}
"""Names a graph's code may use, and how the problem defines each."""
_PLACE = '''
def _place(root, path, value, buffer=False):
    *parents, leaf = path.split(".")
    for name in parents:
        if not hasattr(root, name):
            root.add_module(name, nn.Module())
        root = getattr(root, name)
    if buffer:
        root.register_buffer(leaf, value)
    else:
        setattr(root, leaf, value)
'''
_SMALL = 64


class FxError(ValueError):
    """Tracing failed, or the graph needs something a problem cannot carry."""


def traced_source(module: nn.Module, recorded: dict[int, InitCall]) -> tuple[str, str]:
    """The problem's definitions (everything but get_inputs/get_init_inputs), and a note."""
    try:
        graph = fx.symbolic_trace(module)
    except Exception as exc:
        raise FxError(f"symbolic tracing failed: {type(exc).__name__}: "
                      f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    code = graph.graph.python_code("self")
    used = [n for n in code.globals if re.search(rf"\b{re.escape(n)}\b", code.src)]
    unsafe = sorted(n for n in used if n not in _GLOBALS and not hasattr(builtins, n))
    if unsafe:
        raise FxError(f"the graph calls {', '.join(unsafe)}, which a problem cannot import")
    preamble = "".join(_GLOBALS[n] + "\n" for n in used if _GLOBALS.get(n))
    lines, drawn = _init_lines(graph, module, recorded)
    forward = "\n".join(("    " + line).rstrip() for line in code.src.strip().splitlines())
    body = (f"{preamble}{_PLACE.lstrip()}\n\nclass Model(nn.Module):\n"
            f"    def __init__(self):\n        super().__init__()\n"
            + "".join(f"        {line}\n" for line in lines) + "\n" + forward + "\n")
    note = ("traced with torch.fx; leaf torch.nn modules built from their recorded constructor "
            "arguments")
    if drawn:
        note += (f"; {', '.join(drawn)} drawn from a normal with the original tensor's mean "
                 "and std (their constructor is not in the problem)")
    return body, note


def _init_lines(graph: fx.GraphModule, module: nn.Module,
                recorded: dict[int, InitCall]) -> tuple[list[str], list[str]]:
    lines: list[str] = []
    drawn: list[str] = []
    for node in graph.graph.nodes:
        if node.op == "call_module":
            leaf = module.get_submodule(node.target)
            lines.append(f"_place(self, {node.target!r}, {_leaf(leaf, recorded)})")
        elif node.op == "get_attr":
            tensor = _attr(module, node.target)
            buffer = not isinstance(tensor, nn.Parameter)
            lines.append(f"_place(self, {node.target!r}, {_tensor(tensor, node.target, drawn)}, "
                         f"buffer={buffer})")
    return list(dict.fromkeys(lines)), drawn


def _leaf(leaf: nn.Module, recorded: dict[int, InitCall]) -> str:
    cls = type(leaf)
    if getattr(nn, cls.__name__, None) is not cls:
        raise FxError(f"its leaf module {cls.__name__} is not a torch.nn class")
    init = recorded.get(id(leaf))
    if init is None:
        raise FxError(f"the constructor call of its {cls.__name__} was not seen")
    try:
        args = [literal(v) for _, v in init.positional] + [literal(v) for v in init.varargs]
        args += [f"{k}={literal(v)}" for k, v in init.keywords.items()]
    except NotLiteral as exc:
        raise FxError(f"its {cls.__name__} has a constructor argument that is {exc}") from None
    return f"nn.{cls.__name__}({', '.join(args)})"


def _attr(module: nn.Module, target: str) -> torch.Tensor:
    value = operator.attrgetter(target)(module)
    if not isinstance(value, torch.Tensor):
        raise FxError(f"its attribute {target} is a {type(value).__name__}, not a tensor")
    return value


def _tensor(tensor: torch.Tensor, name: str, drawn: list[str]) -> str:
    wrap = "nn.Parameter({})" if isinstance(tensor, nn.Parameter) else "{}"
    if not tensor.dtype.is_floating_point or tensor.numel() <= 1:
        if tensor.numel() > _SMALL:
            raise FxError(f"its tensor {name} ({tensor.numel()} {tensor.dtype} values) can "
                          "be neither drawn nor written out")
        values = literal(tensor.detach().cpu().tolist())
        return wrap.format(f"torch.tensor({values}, dtype={tensor.dtype})")
    drawn.append(name)
    data = tensor.detach().float()
    mean, std = float(data.mean()), float(data.std()) if data.numel() > 1 else 0.0
    mean, std = (0.0 if math.isnan(mean) else mean), (0.0 if math.isnan(std) else std)
    shape = literal(tuple(tensor.shape))
    return wrap.format(f"(torch.randn({shape}) * {std!r} + {mean!r}).to({tensor.dtype})")
