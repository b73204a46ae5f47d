"""Written by `drkernel apply` from ORIGIN.

`optimize(model)` swaps each listed submodule for its Triton `ModelNew`, carrying the
module's weights over, and returns the model. It refuses (`CannotApply`, with the reason)
where a submodule is not of the class the kernel was made for or where its parameter names
or shapes differ. The kernels' sources are embedded below; on a machine without CUDA they run
under Triton's interpreter (slow, for checking only).
"""

import linecache
import os
import types
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class Kernel:
    module_class: str
    paths: list[str]
    init_args: list[Any]
    speedup: float | None
    """As the judge measured it for one instance; None where it could not (cpu)."""
    source: str


class CannotApply(ValueError):
    pass


KERNELS: dict[str, Kernel] = {
    # KERNELS
}


def optimize(model: nn.Module) -> nn.Module:
    _interpret_without_cuda()
    for name, kernel in KERNELS.items():
        model_new = _load(name, kernel.source).ModelNew
        for path in kernel.paths:
            old = model.get_submodule(path)
            if type(old).__name__ != kernel.module_class:
                raise CannotApply(f"{path or 'the model'} is a {type(old).__name__}, the kernel "
                                  f"{name} was made for {kernel.module_class}")
            new = model_new(*kernel.init_args)
            _carry(old, new, path)
            model = _swap(model, path, new)
    return model


def _interpret_without_cuda() -> None:
    if torch.cuda.is_available():
        return
    os.environ.setdefault("TRITON_INTERPRET", "1")
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction

    if not isinstance(tl.standard.sum, InterpretedFunction):
        raise CannotApply("no CUDA here, and Triton was imported before TRITON_INTERPRET=1 "
                          "was set: set it first to run the kernels under the interpreter")


def _load(name: str, source: str) -> types.ModuleType:
    """The kernel's source as a module; registered with linecache so Triton can read the
    source of its `@triton.jit` functions."""
    filename = f"<drkernel-kernel-{name}>.py"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = types.ModuleType(f"drkernel_kernel_{name}")
    module.__file__ = filename
    exec(compile(source, filename, "exec"), module.__dict__)
    return module


def _carry(old: nn.Module, new: nn.Module, path: str) -> None:
    state = old.state_dict()
    theirs = new.state_dict()
    if state.keys() != theirs.keys():
        raise CannotApply(f"{path or 'the model'}: parameter names differ: "
                          f"{sorted(state.keys() ^ theirs.keys())}")
    for key, value in state.items():
        if value.shape != theirs[key].shape:
            raise CannotApply(f"{path or 'the model'}: {key} is {tuple(value.shape)} in the "
                              f"model, {tuple(theirs[key].shape)} in the kernel's module")
    new.load_state_dict(state)
    tensor = next(iter(state.values()), None)
    if tensor is not None:
        new.to(device=tensor.device, dtype=tensor.dtype if tensor.is_floating_point() else None)
    new.train(old.training)


def _swap(model: nn.Module, path: str, new: nn.Module) -> nn.Module:
    if not path:
        return new
    parent, _, leaf = path.rpartition(".")
    setattr(model.get_submodule(parent), leaf, new)
    return model
