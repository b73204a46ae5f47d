"""A second line behind the run-time checks: patterns in the candidate's source itself."""

from __future__ import annotations

import ast

from evaluator.result import Hack, HackKind

_CALLS = {
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
    "exec": HackKind.SANDBOX_ESCAPE,
    "eval": HackKind.SANDBOX_ESCAPE,
    "compile": HackKind.SANDBOX_ESCAPE,
    "__import__": HackKind.SANDBOX_ESCAPE,
    "types.CodeType": HackKind.SANDBOX_ESCAPE,
    "types.FunctionType": HackKind.SANDBOX_ESCAPE,
    "threading.Thread": HackKind.BACKGROUND_WORK,
    "threading.Timer": HackKind.BACKGROUND_WORK,
    "Thread": HackKind.BACKGROUND_WORK,
    "Timer": HackKind.BACKGROUND_WORK,
    "_thread.start_new_thread": HackKind.BACKGROUND_WORK,
    "ThreadPoolExecutor": HackKind.BACKGROUND_WORK,
    "ProcessPoolExecutor": HackKind.BACKGROUND_WORK,
    "concurrent.futures.ThreadPoolExecutor": HackKind.BACKGROUND_WORK,
    "torch.utils.dlpack.from_dlpack": HackKind.FRAMEWORK_COMPUTE,
    "torch.utils.dlpack.to_dlpack": HackKind.FRAMEWORK_COMPUTE,
    "torch.from_dlpack": HackKind.FRAMEWORK_COMPUTE,
    "torch.library.Library": HackKind.PATCHING,
    "torch.library.impl": HackKind.PATCHING,
    "torch.library.custom_op": HackKind.PATCHING,
}
_IMPORTS = {
    "_thread": HackKind.BACKGROUND_WORK,
    "multiprocessing": HackKind.BACKGROUND_WORK,
    "subprocess": HackKind.BACKGROUND_WORK,
    "socket": HackKind.IO_ACCESS,
    "urllib": HackKind.IO_ACCESS,
    "requests": HackKind.IO_ACCESS,
    "http": HackKind.IO_ACCESS,
    "ctypes": HackKind.SANDBOX_ESCAPE,
    "cffi": HackKind.SANDBOX_ESCAPE,
    "posix": HackKind.SANDBOX_ESCAPE,
    "_posixsubprocess": HackKind.SANDBOX_ESCAPE,
    "mmap": HackKind.SANDBOX_ESCAPE,
    "marshal": HackKind.SANDBOX_ESCAPE,
    "importlib": HackKind.SANDBOX_ESCAPE,
    "gc": HackKind.INTROSPECTION,
    "evaluator": HackKind.PATCHING,
}
_FRAME_ATTRS = ("f_back", "f_locals", "f_globals", "tb_frame", "gi_frame", "cr_frame",
                "__globals__", "__closure__", "cell_contents", "__wrapped__", "__code__",
                "__func__", "__defaults__", "__kwdefaults__", "__builtins__")
_DISPATCH_ESCAPES = frozenset({
    "_python_dispatch", "_disable_current_modes", "_pop_mode", "_pop_mode_temporarily",
    "_disable_infra_mode", "_pop_torch_dispatch_stack", "_unset_dispatch_mode",
    "_DisableTorchDispatch", "_DisablePythonDispatcher", "_disabled_torch_dispatch_impl",
})
_LOW_PRECISION = ("float16", "bfloat16", "half", "float8e4nv", "float8e5", "float8_e4m3fn",
                  "float8_e5m2")
_PATCHABLE_ROOTS = ("torch", "time", "triton", "np", "numpy", "builtins", "evaluator")
_BACKEND_SETTINGS = frozenset({
    "torch.backends.cuda.matmul.allow_tf32", "torch.backends.cudnn.allow_tf32",
    "torch.backends.cudnn.benchmark", "torch.backends.cudnn.deterministic",
})
_SUBCLASS_HOOKS = ("__torch_function__", "__torch_dispatch__")


def scan(source: str) -> list[Hack]:
    """Static evidence. `precision_downcast` findings only count for full-precision problems
    (the judge decides); everything else is a pattern no honest kernel needs."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    hacks: dict[tuple[HackKind, str], Hack] = {}
    # Casts under an `if` are often dead branches of a dtype-generic kernel (`if IS_FP16:`).
    conditional = {id(n) for branch in ast.walk(tree) if isinstance(branch, ast.If)
                   for stmt in [*branch.body, *branch.orelse] for n in ast.walk(stmt)}
    conditional |= {id(n) for branch in ast.walk(tree) if isinstance(branch, ast.IfExp)
                    for part in (branch.body, branch.orelse) for n in ast.walk(part)}

    def add(kind: HackKind, evidence: str, node: ast.AST) -> None:
        line = getattr(node, "lineno", 0)
        hacks.setdefault((kind, evidence), Hack(kind, f"line {line}: {evidence}", static=True))

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = dotted(node.func)
            cast = _low_precision_cast(node)
            if cast and id(node) not in conditional:
                add(HackKind.PRECISION_DOWNCAST, f"casts to {cast}", node)
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
                if set(mod.split(".")) & _DISPATCH_ESCAPES:
                    add(HackKind.PATCHING, f"imports {mod} (outside the op tracer)", node)
        elif isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                name = dotted(target)
                if isinstance(target, ast.Attribute) and name.startswith(_PATCHABLE_ROOTS) \
                        and name not in _BACKEND_SETTINGS:
                    add(HackKind.PATCHING, f"assigns {name}", node)
        elif isinstance(node, ast.Attribute):
            if dotted(node) in ("os.environ",):
                add(HackKind.IO_ACCESS, "reads os.environ", node)
            elif node.attr in _DISPATCH_ESCAPES:
                add(HackKind.PATCHING, f"uses {node.attr} (outside the op tracer)", node)
            elif dotted(node) == "sys.modules":
                add(HackKind.PATCHING, "reaches into sys.modules", node)
            elif node.attr in _FRAME_ATTRS:
                add(HackKind.INTROSPECTION, f"reads .{node.attr}", node)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value in _FRAME_ATTRS:
                add(HackKind.INTROSPECTION, f"names .{node.value}", node)
            elif "drkernel_" in node.value or node.value.startswith("evaluator") or \
                    node.value in _DISPATCH_ESCAPES:
                add(HackKind.PATCHING, f"names the judge's {node.value!r}", node)
        elif isinstance(node, ast.FunctionDef) and node.name in _SUBCLASS_HOOKS:
            add(HackKind.LAZY_TENSOR, f"defines {node.name}", node)
    return list(hacks.values())


def _low_precision_cast(call: ast.Call) -> str:
    """The low-precision type a call casts to (`.to(x)`, `dtype=x`, `.half()`), or ''."""
    if isinstance(call.func, ast.Attribute) and call.func.attr in ("half", "bfloat16"):
        return call.func.attr
    for arg in [*call.args, *(k.value for k in call.keywords)]:
        name = dotted(arg) if isinstance(arg, ast.Attribute) else ""
        text = arg.value if isinstance(arg, ast.Constant) else None
        if name.rsplit(".", 1)[-1] in _LOW_PRECISION:
            return name
        if isinstance(text, str) and text in ("fp16", "bf16", "float16", "bfloat16"):
            return text
    return ""


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
