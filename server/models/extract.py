"""`drkernel extract`: profile the user's model, group identical hot submodules, write each
group as a KernelBench-format problem, check it, and write the manifest."""

from __future__ import annotations

import re
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from server.models.capture import InitCall
from server.models.literal import literal
from server.models.manifest import MANIFEST, PROBLEMS, Manifest, ProblemEntry, SkippedEntry
from server.models.problem import WriteError, Written, write_problem
from server.models.profile import ModuleRun, Profile, profile_model, signature
from server.models.target import Loaded, Target, default_device, load
from server.models.verify import fresh_process_errors

DEFAULT_COVERAGE = 0.8
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


@dataclass
class Group:
    """Identical submodules: one class, the same constructor arguments, the same inputs."""

    runs: list[ModuleRun]
    init: InitCall | None
    time_us: float = 0.0
    flops: int = 0
    name: str = ""

    @property
    def first(self) -> ModuleRun:
        return self.runs[0]

    @property
    def class_name(self) -> str:
        return type(self.first.module).__name__


@dataclass
class Extraction:
    manifest: Manifest
    written: dict[str, Path] = field(default_factory=dict)


def extract(target: Target, out: Path, top: int | None = None,
            coverage: float = DEFAULT_COVERAGE, device: torch.device | None = None) -> Extraction:
    loaded = load(target, device or default_device())
    prof = profile_model(loaded)
    groups = group_units(loaded, prof)
    hot = select(groups, prof.total_us, top, coverage)
    manifest = Manifest(target.to_dict(), prof.device, prof.total_us, prof.total_flops)
    covered = sum(g.time_us for g in groups)
    manifest.uncovered_share = _share(prof.total_us - covered, prof.total_us)
    _clear_previous(out)
    (out / PROBLEMS).mkdir(parents=True, exist_ok=True)
    extraction = Extraction(manifest)
    for g in hot:
        _write_group(g, loaded, prof, out, target, extraction)
    _drop_unloadable(out, extraction)
    manifest.write(out)
    return extraction


def _clear_previous(out: Path) -> None:
    """A rerun into the same folder must not leave problems a batch would still pick up."""
    if not (out / MANIFEST).is_file():
        return
    try:
        previous = Manifest.read(out / MANIFEST)
    except (ValueError, TypeError, KeyError):  # not ours, or another version: leave it
        return
    for entry in previous.problems:
        (out / entry.file).unlink(missing_ok=True)


def units(model: nn.Module) -> list[str]:
    """The submodules problems are made of: the model's parts, descending through containers
    and through user classes made of other user classes (a transformer block), stopping at
    a user class built from torch.nn parts only (an attention layer) or at a torch.nn leaf."""
    found: list[str] = []

    def visit(module: nn.Module, path: str) -> None:
        if path and not _composite(module):
            found.append(path)
            return
        for name, child in module.named_children():
            visit(child, f"{path}.{name}" if path else name)

    if _composite(model):
        visit(model, "")
    else:
        found.append("")
    return found


def _composite(module: nn.Module) -> bool:
    if isinstance(module, _CONTAINERS):
        return True
    return _is_user(module) and any(_is_user(m) for m in _descendants(module))


def _descendants(module: nn.Module) -> list[nn.Module]:
    out = []
    for child in module.children():
        out.append(child)
        if isinstance(child, _CONTAINERS):
            out.extend(_descendants(child))
    return out


def _is_user(module: nn.Module) -> bool:
    return not type(module).__module__.startswith("torch.")


def group_units(loaded: Loaded, prof: Profile) -> list[Group]:
    groups: dict[str, Group] = {}
    for path in units(loaded.model):
        run = prof.runs[path]
        if run.calls == 0:
            continue
        init = loaded.recorder.of(run.module)
        key = _key(run, init)
        group = groups.setdefault(key, Group([], init))
        group.runs.append(run)
        group.time_us += run.time_us
        group.flops += run.flops
    _name(list(groups.values()))
    return sorted(groups.values(), key=lambda g: -g.time_us)


def _key(run: ModuleRun, init: InitCall | None) -> str:
    cls = type(run.module)
    try:
        args = literal([init.positional, init.varargs, init.keywords]) if init else "unseen"
    except ValueError:  # objects: equal by their repr (a dataclass's is its fields)
        args = repr([init.positional, init.varargs, init.keywords]) if init else "unseen"
    return repr((cls.__module__, cls.__qualname__, args, signature(run.args),
                 sorted(run.kwargs)))


def _name(groups: list[Group]) -> None:
    taken: dict[str, int] = {}
    for g in groups:
        base = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", g.class_name).lower()
        taken[base] = taken.get(base, 0) + 1
        g.name = base if taken[base] == 1 else f"{base}_{taken[base]}"


def select(groups: list[Group], total_us: float, top: int | None,
           coverage: float) -> list[Group]:
    """The `top` slowest groups, or the slowest that together cover `coverage` of the time."""
    if top is not None:
        return groups[:top]
    hot, covered = [], 0.0
    for g in groups:
        if covered >= coverage * total_us:
            break
        hot.append(g)
        covered += g.time_us
    return hot


def _write_group(g: Group, loaded: Loaded, prof: Profile, out: Path, target: Target,
                 extraction: Extraction) -> None:
    manifest = extraction.manifest
    paths = [r.path for r in g.runs]
    try:
        written = _written(g, loaded, target)
        check_reproduces(written, g.first)
    except WriteError as exc:
        manifest.skipped.append(SkippedEntry(g.class_name, paths,
                                             _share(g.time_us, prof.total_us), str(exc)))
        return
    file = out / PROBLEMS / f"{g.name}.py"
    file.write_text(written.source, encoding="utf-8")
    extraction.written[g.name] = file
    manifest.problems.append(ProblemEntry(
        name=g.name, file=f"{PROBLEMS}/{file.name}", module_class=g.class_name, paths=paths,
        instances=len(g.runs), time_share=_share(g.time_us, prof.total_us),
        flop_share=_share(g.flops, prof.total_flops) if prof.total_flops else None,
        time_us=g.time_us, flops=g.flops, how=written.how, init_args=written.init_args,
        input_signature=[list(s) if isinstance(s, tuple) else s
                         for s in signature(g.first.args)],
        note=_note(written, g)))


def _written(g: Group, loaded: Loaded, target: Target) -> Written:
    run = g.first
    if run.kwargs:
        raise WriteError(f"its forward is called with keyword arguments ({', '.join(run.kwargs)})"
                         ", which get_inputs() cannot pass")
    where = ", ".join(r.path for r in g.runs[:3]) + (", ..." if len(g.runs) > 3 else "")
    doc = (f"{g.class_name} from {target.spec}, extracted by drkernel: {len(g.runs)} "
           f"instance(s) at {where or 'the model itself'}")
    recorded = {key: call for key, (_, call) in loaded.recorder.calls.items()}
    return write_problem(run.module, g.init, [_cpu(a) for a in run.args], doc, recorded)


def _note(written: Written, g: Group) -> str:
    notes = [written.note] if written.note else []
    if g.first.varying:
        notes.append("later calls had other input shapes; the problem uses the first call's")
    return "; ".join(notes)


def check_reproduces(written: Written, run: ModuleRun) -> None:
    """The written Model, given the instance's weights, computes the instance's output."""
    namespace = types.ModuleType("drkernel_check")
    try:
        exec(compile(written.source, "<problem>", "exec"), namespace.__dict__)
        model = namespace.Model(*eval(written.init_args, {"torch": torch}))
    except Exception as exc:
        raise WriteError(f"the written problem does not build: {type(exc).__name__}: {exc}"
                         ) from None
    mismatch = state_mismatch(run.module, model)
    if mismatch:
        raise WriteError(f"the written problem's parameters differ from the module's: "
                         f"{mismatch}")
    model.load_state_dict(run.module.state_dict())
    model = model.to(_device_of(run.module)).eval()
    with torch.no_grad():
        got = model(*run.args)
    if not outputs_match(run.output, got, 1e-4):
        raise WriteError("the written problem, with the module's weights, does not compute "
                         "the module's output")


def state_mismatch(old: nn.Module, new: nn.Module) -> str:
    """Why `new` cannot take `old`'s state_dict ("" when it can)."""
    a = {k: tuple(v.shape) for k, v in old.state_dict().items()}
    b = {k: tuple(v.shape) for k, v in new.state_dict().items()}
    if a.keys() != b.keys():
        only_old, only_new = sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())
        return f"names only in the original: {only_old}; only in the new: {only_new}"
    shapes = [f"{k}: {a[k]} vs {b[k]}" for k in a if a[k] != b[k]]
    return "shapes differ: " + "; ".join(shapes) if shapes else ""


def outputs_match(expected: Any, got: Any, tol: float) -> bool:
    left, right = tensors(expected), tensors(got)
    return len(left) == len(right) and all(
        x.shape == y.shape and torch.allclose(x.float(), y.float(), atol=tol, rtol=tol)
        for x, y in zip(left, right, strict=True))


def tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value.detach()]
    if isinstance(value, tuple | list):
        return [t for v in value for t in tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in tensors(v)]
    return []


def _drop_unloadable(out: Path, extraction: Extraction) -> None:
    """A problem that does not load and run in a fresh interpreter, away from the user's
    files, is moved to `skipped`."""
    manifest = extraction.manifest
    errors = fresh_process_errors(list(extraction.written.values()))
    for entry in list(manifest.problems):
        error = errors.get(str(out / entry.file))
        if error:
            manifest.problems.remove(entry)
            (out / entry.file).unlink()
            extraction.written.pop(entry.name, None)
            manifest.skipped.append(SkippedEntry(entry.module_class, entry.paths,
                                                 entry.time_share, "the written problem fails "
                                                 f"in a fresh interpreter: {error}"))


def _device_of(module: nn.Module) -> torch.device:
    tensor = next(iter(module.state_dict().values()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def _cpu(value: Any) -> Any:
    return value.cpu() if isinstance(value, torch.Tensor) else value


def _share(part: float, total: float) -> float:
    return round(part / total, 4) if total > 0 else 0.0
