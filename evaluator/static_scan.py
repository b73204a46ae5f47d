"""A second line behind the run-time checks: patterns in the candidate's source itself."""

from __future__ import annotations

import ast

from evaluator.result import Hack, HackKind

_CALLS = {
    "torch.cuda.Stream": HackKind.SIDE_STREAM,
    "torch.cuda.stream": HackKind.SIDE_STREAM,
    "torch.cuda.set_stream": HackKind.SIDE_STREAM,
    "torch.cuda.ExternalStream": HackKind.SIDE_STREAM,
    "torch.Tensor._make_subclass": HackKind.LAZY_TENSOR,
    "sys._getframe": HackKind.INTROSPECTION,
    "inspect.currentframe": HackKind.INTROSPECTION,
    "inspect.stack": HackKind.INTROSPECTION,
    "gc.get_objects": HackKind.INTROSPECTION,
    "gc.get_referrers": HackKind.INTROSPECTION,
    "os.getenv": HackKind.IO_ACCESS,
    "os.system": HackKind.BACKGROUND_WORK,
    "os.fork": HackKind.BACKGROUND_WORK,
    "open": HackKind.IO_ACCESS,
}
_IMPORTS = {
    "threading": HackKind.BACKGROUND_WORK,
    "_thread": HackKind.BACKGROUND_WORK,
    "multiprocessing": HackKind.BACKGROUND_WORK,
    "concurrent": HackKind.BACKGROUND_WORK,
    "subprocess": HackKind.BACKGROUND_WORK,
    "socket": HackKind.IO_ACCESS,
    "urllib": HackKind.IO_ACCESS,
    "requests": HackKind.IO_ACCESS,
    "http": HackKind.IO_ACCESS,
}
_PATCHABLE_ROOTS = ("torch", "time", "triton", "np", "numpy", "builtins", "evaluator")
_SUBCLASS_HOOKS = ("__torch_function__", "__torch_dispatch__")


def scan(source: str) -> list[Hack]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    hacks: dict[tuple[HackKind, str], Hack] = {}

    def add(kind: HackKind, evidence: str, node: ast.AST) -> None:
        line = getattr(node, "lineno", 0)
        hacks.setdefault((kind, evidence), Hack(kind, f"line {line}: {evidence}", static=True))

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = dotted(node.func)
            if name in _CALLS:
                add(_CALLS[name], f"calls {name}", node)
            elif name.endswith(".as_subclass"):
                add(HackKind.LAZY_TENSOR, "calls Tensor.as_subclass", node)
            elif name == "setattr" and node.args and dotted(node.args[0]).startswith(
                    _PATCHABLE_ROOTS):
                add(HackKind.PATCHING, f"setattr on {dotted(node.args[0])}", node)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for mod in _imported(node):
                root = mod.split(".")[0]
                if root in _IMPORTS:
                    add(_IMPORTS[root], f"imports {mod}", node)
        elif isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                name = dotted(target)
                if isinstance(target, ast.Attribute) and name.startswith(_PATCHABLE_ROOTS):
                    add(HackKind.PATCHING, f"assigns {name}", node)
        elif isinstance(node, ast.Attribute):
            if dotted(node) in ("os.environ",):
                add(HackKind.IO_ACCESS, "reads os.environ", node)
            elif node.attr in ("f_back", "f_locals", "f_globals", "tb_frame"):
                add(HackKind.INTROSPECTION, f"reads .{node.attr}", node)
        elif isinstance(node, ast.FunctionDef) and node.name in _SUBCLASS_HOOKS:
            add(HackKind.LAZY_TENSOR, f"defines {node.name}", node)
    return list(hacks.values())


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr}" if base else node.attr
    return ""


def _imported(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    return [node.module or ""]
