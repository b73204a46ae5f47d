"""The user's model: `path/to/file.py:Name` or `package.module:Name`, its constructor
arguments and its example inputs."""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from server.models.capture import InitRecorder, recording

_DTYPES = {name: getattr(torch, name) for name in (
    "float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8", "uint8",
    "bool")}


class TargetError(ValueError):
    """The target, its arguments or its inputs are unusable; the message says why."""


@dataclass(frozen=True)
class Target:
    spec: str
    """As the user wrote it: `path/to/file.py:Name` or `package.module:Name`."""
    init: str = ""
    """JSON: a list of positional or an object of keyword arguments for a class."""
    inputs: str = ""
    """JSON input specs, or the name of a function in the target's module."""

    def to_dict(self) -> dict[str, str]:
        return {"spec": self.spec, "init": self.init, "inputs": self.inputs}


@dataclass
class Loaded:
    module: ModuleType
    model: nn.Module
    inputs: list[Any]
    recorder: InitRecorder
    device: torch.device


def load(target: Target, device: torch.device, seed: int = 0) -> Loaded:
    module, name = _import(target.spec)
    factory = getattr(module, name, None)
    if factory is None:
        raise TargetError(f"{target.spec}: {module.__name__} defines no {name!r}")
    torch.manual_seed(seed)
    with recording() as recorder:
        model = construct(factory, name, target.init)
    model = model.to(device).eval()
    torch.manual_seed(seed + 1)
    inputs = [_place(x, device) for x in make_inputs(module, target.inputs)]
    return Loaded(module, model, inputs, recorder, device)


def _import(spec: str) -> tuple[ModuleType, str]:
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name:
        raise TargetError(f"{spec!r}: expected path/to/file.py:Name or package.module:Name")
    if where.endswith(".py") or "/" in where:
        return _from_file(Path(where)), name
    try:
        return importlib.import_module(where), name
    except ImportError as exc:
        raise TargetError(f"{spec}: cannot import {where}: {exc}") from None


def _from_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise TargetError(f"{path}: no such file")
    path = path.resolve()
    module_name = f"drkernel_user_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise TargetError(f"{path}: importing it failed: {type(exc).__name__}: {exc}") from None
    return module


def construct(factory: Any, name: str, init: str) -> nn.Module:
    args: Any = json.loads(init) if init.strip() else []
    if not callable(factory):
        raise TargetError(f"{name} is a {type(factory).__name__}, not a class or function")
    try:
        made = factory(**args) if isinstance(args, dict) else factory(*_listed(args))
    except Exception as exc:
        raise TargetError(f"{name}({init or ''}) failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(made, nn.Module):
        raise TargetError(f"{name} is not an nn.Module class nor a function returning one "
                          f"(it gave a {type(made).__name__})")
    return made


def _listed(args: Any) -> list[Any]:
    return list(args) if isinstance(args, list) else [args]


def make_inputs(module: ModuleType, spec: str) -> list[Any]:
    """`spec`: JSON list of input specs, or the name of a function in `module` returning the
    inputs. An input spec is a shape list (float32), `{"shape": [..], "dtype": "int64",
    "high": 100}`, or a plain number, bool or null passed as it is."""
    text = spec.strip()
    if not text:
        raise TargetError("no inputs: give --inputs as JSON shapes or a function name")
    if text.isidentifier():
        return _from_function(module, text)
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TargetError(f"--inputs is neither JSON nor a function name: {exc}") from None
    if not isinstance(items, list):
        raise TargetError("--inputs must be a JSON list, one item per forward argument")
    return [_input_from_spec(item) for item in items]


def _from_function(module: ModuleType, name: str) -> list[Any]:
    fn = getattr(module, name, None)
    if not callable(fn):
        raise TargetError(f"--inputs {name}: the target's module defines no function {name!r}")
    made = fn()
    return list(made) if isinstance(made, list | tuple) else [made]


def _input_from_spec(item: Any) -> Any:
    if item is None or isinstance(item, bool | int | float):
        return item
    if isinstance(item, list):
        item = {"shape": item}
    if not isinstance(item, dict) or "shape" not in item:
        raise TargetError(f"input spec {item!r}: expected a shape list or {{\"shape\": ...}}")
    shape = item["shape"]
    if not isinstance(shape, list) or not all(isinstance(d, int) and d > 0 for d in shape):
        raise TargetError(f"input spec {item!r}: a shape is a list of positive integers")
    dtype = _DTYPES.get(str(item.get("dtype", "float32")).removeprefix("torch."))
    if dtype is None:
        raise TargetError(f"input spec {item!r}: unknown dtype (one of {', '.join(_DTYPES)})")
    if dtype == torch.bool:
        return torch.randint(0, 2, shape).bool()
    if not dtype.is_floating_point:
        return torch.randint(0, int(item.get("high", 2)), shape, dtype=dtype)
    return torch.randn(shape).to(dtype)


def _place(x: Any, device: torch.device) -> Any:
    return x.to(device) if isinstance(x, torch.Tensor) else x


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def call(model: nn.Module, inputs: list[Any]) -> Any:
    try:
        with torch.no_grad():
            return model(*inputs)
    except Exception as exc:
        raise TargetError(f"the model does not run on these inputs: {type(exc).__name__}: "
                          f"{exc}") from None
