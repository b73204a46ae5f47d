"""Cut a class out of its file with everything it needs from that file, and nothing else.

The top-level statements the class reaches by name (helper classes and functions, constants,
imports) are kept in their original order. Imports must be of the standard library or torch:
the judge's sandbox cannot import the user's package, so a class that needs one is refused.
"""

from __future__ import annotations

import ast
import builtins
import sys
from dataclasses import dataclass

ALLOWED_ROOTS = frozenset(sys.stdlib_module_names) | {"torch", "numpy", "triton"}


class CutError(ValueError):
    """The class is not self-contained within its file; the message says what it needs."""


@dataclass(frozen=True)
class Cut:
    source: str
    kept: list[str]
    """Names of the top-level definitions kept, in file order."""


def cut_class(file_source: str, name: str) -> Cut:
    tree = ast.parse(file_source)
    defines = _top_level(tree)
    if name not in defines or not isinstance(tree.body[defines[name][-1]], ast.ClassDef):
        raise CutError(f"class {name} is not defined at the top level of its file")
    needed: set[int] = set()
    _visit(tree, defines, name, needed, set())
    statements = [tree.body[i] for i in sorted(needed)]
    lines = [ast.get_source_segment(file_source, s, padded=False) or ast.unparse(s)
             for s in statements]
    kept = [n for s in statements for n in _names_defined(s)]
    parts: list[str] = []
    for i, (statement, text) in enumerate(zip(statements, lines, strict=True)):
        if i:
            both_imports = _is_import(statement) and _is_import(statements[i - 1])
            parts.append("\n" if both_imports else "\n\n\n")
        parts.append(_with_decorators(file_source, statement, text))
    return Cut("".join(parts) + "\n", kept)


def _is_import(statement: ast.stmt) -> bool:
    return isinstance(statement, ast.Import | ast.ImportFrom)


def _visit(tree: ast.Module, defines: dict[str, list[int]], name: str, needed: set[int],
           seen: set[str]) -> None:
    if name in seen:
        return
    seen.add(name)
    for index in defines[name]:
        if index in needed:
            continue
        needed.add(index)
        statement = tree.body[index]
        _check_import(statement)
        for used in sorted(_free_names(statement)):
            if used in defines:
                _visit(tree, defines, used, needed, seen)
            elif not hasattr(builtins, used):
                raise CutError(f"{name} uses {used!r}, which its file does not define at top "
                               "level")


def _check_import(statement: ast.stmt) -> None:
    if isinstance(statement, ast.Import):
        roots = [a.name.split(".")[0] for a in statement.names]
    elif isinstance(statement, ast.ImportFrom):
        if statement.level:
            raise CutError(f"it needs a relative import (line {statement.lineno}: "
                           f"{ast.unparse(statement)}) of the user's package")
        roots = [(statement.module or "").split(".")[0]]
    else:
        return
    for root in roots:
        if root not in ALLOWED_ROOTS:
            raise CutError(f"it needs {ast.unparse(statement)!r} (line {statement.lineno}), "
                           "which is not the standard library or torch")


def _top_level(tree: ast.Module) -> dict[str, list[int]]:
    defines: dict[str, list[int]] = {}
    for index, statement in enumerate(tree.body):
        for name in _names_defined(statement):
            defines.setdefault(name, []).append(index)
    return defines


def _names_defined(statement: ast.stmt) -> list[str]:
    if isinstance(statement, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
        return [statement.name]
    if isinstance(statement, ast.Import | ast.ImportFrom):
        return [(a.asname or a.name).split(".")[0] for a in statement.names if a.name != "*"]
    if isinstance(statement, ast.Assign | ast.AnnAssign | ast.AugAssign):
        targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
        return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    return []


def _free_names(statement: ast.stmt) -> set[str]:
    """Names the statement reads that it does not bind itself (a generous approximation:
    any name loaded anywhere inside, less the statement's own parameters and locals)."""
    if isinstance(statement, ast.Import | ast.ImportFrom):
        return set()
    loaded = {n.id for n in ast.walk(statement)
              if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    bound = {n.id for n in ast.walk(statement)
             if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store | ast.Del)}
    bound |= {a.arg for n in ast.walk(statement) if isinstance(n, ast.arguments)
              for a in [*n.posonlyargs, *n.args, *n.kwonlyargs,
                        *([n.vararg] if n.vararg else []), *([n.kwarg] if n.kwarg else [])]}
    bound |= {n.name for n in ast.walk(statement)
              if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
              and n is not statement}
    bound |= {alias.asname or alias.name.split(".")[0] for n in ast.walk(statement)
              if isinstance(n, ast.Import | ast.ImportFrom) for alias in n.names}
    if isinstance(statement, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
        bound.discard(statement.name)
    return loaded - bound - {"__class__"}


def _with_decorators(file_source: str, statement: ast.stmt, text: str) -> str:
    decorators = getattr(statement, "decorator_list", [])
    if not decorators:
        return text
    first = min(d.lineno for d in decorators)
    lines = file_source.splitlines()
    return "\n".join(lines[first - 1:statement.lineno - 1]) + "\n" + text
