"""`manifest.json`: what `drkernel extract` wrote, and where each problem stands in the model."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
PROBLEMS = "problems"
VERSION = 1


@dataclass(frozen=True)
class ProblemEntry:
    name: str
    file: str
    """Relative to the manifest's folder."""
    module_class: str
    paths: list[str]
    """Where the instances stand in the model (dotted submodule paths)."""
    instances: int
    time_share: float
    flop_share: float | None
    time_us: float
    flops: int
    how: str
    """torch_builtin (a torch.nn class as it is), source (the class cut from its file with
    what it needs) or fx_trace (code generated from the traced graph)."""
    init_args: str
    """`get_init_inputs()` as Python source: what `optimize` passes to `ModelNew`."""
    input_signature: list[Any]
    note: str = ""


@dataclass(frozen=True)
class SkippedEntry:
    module_class: str
    paths: list[str]
    time_share: float
    reason: str


@dataclass
class Manifest:
    target: dict[str, str]
    """spec, init and inputs, as given to `drkernel extract`."""
    device: str
    total_us: float
    total_flops: int
    problems: list[ProblemEntry] = field(default_factory=list)
    skipped: list[SkippedEntry] = field(default_factory=list)
    uncovered_share: float = 0.0
    """Time spent outside every group considered (the model's own glue code)."""
    version: int = VERSION

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    def write(self, folder: Path) -> Path:
        path = folder / MANIFEST
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def read(cls, path: Path) -> Manifest:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != VERSION:
            raise ValueError(f"{path}: manifest version {data.get('version')}, expected "
                             f"{VERSION}")
        data["problems"] = [ProblemEntry(**p) for p in data.get("problems", [])]
        data["skipped"] = [SkippedEntry(**s) for s in data.get("skipped", [])]
        return cls(**data)
