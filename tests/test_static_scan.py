"""The static second line: specific patterns only, nothing an honest kernel writes."""

from __future__ import annotations

import pytest

from evaluator import HackKind
from evaluator.static_scan import scan


@pytest.mark.parametrize(("source", "kind"), [
    ("threading.Thread(target=f).start()\n", HackKind.BACKGROUND_WORK),
    ("pool = ThreadPoolExecutor(2)\n", HackKind.BACKGROUND_WORK),
    ("y = x.to(torch.float16)\n", HackKind.PRECISION_DOWNCAST),
    ("y = x.half()\n", HackKind.PRECISION_DOWNCAST),
    ("a = a.to(tl.dtype('fp16'))\n", HackKind.PRECISION_DOWNCAST),
    ("f = run.__globals__\n", HackKind.INTROSPECTION),
    ("exec('x = 1')\n", HackKind.SANDBOX_ESCAPE),
    ("import ctypes\n", HackKind.SANDBOX_ESCAPE),
    ("lib = torch.library.Library('aten', 'IMPL')\n", HackKind.PATCHING),
    ("torch.allclose = lambda *a, **k: True\n", HackKind.PATCHING),
    ("setattr(torch.cuda.Event, 'elapsed_time', f)\n", HackKind.PATCHING),
    ("f = sys._getframe(1)\n", HackKind.INTROSPECTION),
    ("x = frame.f_back.f_locals\n", HackKind.INTROSPECTION),
    ("objs = gc.get_objects()\n", HackKind.INTROSPECTION),
    ("data = open('/etc/passwd').read()\n", HackKind.IO_ACCESS),
    ("home = os.environ['HOME']\n", HackKind.IO_ACCESS),
    ("import socket\n", HackKind.IO_ACCESS),
    ("y = x.as_subclass(Lazy)\n", HackKind.LAZY_TENSOR),
    ("class T(torch.Tensor):\n    def __torch_function__(cls, *a):\n        pass\n",
     HackKind.LAZY_TENSOR),
])
def test_pattern_is_flagged_as_static_evidence(source: str, kind: HackKind) -> None:
    hacks = scan(source)
    assert {h.kind for h in hacks} == {kind}
    assert all(h.static and h.evidence.startswith("line ") for h in hacks)


def test_plain_triton_code_and_broken_source_are_clean() -> None:
    honest = ("import torch\nimport triton\nimport triton.language as tl\n"
              "out = torch.empty_like(x)\nkernel[(4,)](x, out, BLOCK=128)\n")
    assert scan(honest) == []
    assert scan("def broken(:\n") == []


def test_common_honest_idioms_are_clean() -> None:
    """A lock around a cache, a dtype table and streams appear in real wrappers; they are not
    hacks (work a stream leaves unjoined is caught at run time)."""
    assert scan("s = torch.cuda.Stream()\nwith torch.cuda.stream(s):\n    pass\n") == []
    assert scan("import threading\n_lock = threading.Lock()\n") == []
    assert scan("TL = {torch.float16: tl.float16, torch.float32: tl.float32}\n") == []
    assert scan("if x.dtype == torch.bfloat16:\n    pass\n") == []
