"""Finding the KernelBench-format problems a batch names: files, folders and globs."""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from pathlib import Path

_MODEL = re.compile(r"^class Model\b", re.MULTILINE)
_INPUTS = re.compile(r"^def get_inputs\b", re.MULTILINE)


@dataclass(frozen=True)
class ProblemFile:
    name: str
    """Unique within the batch: the path below the folder it was found in, without `.py`."""
    path: Path
    source: str


def is_problem(source: str) -> bool:
    """A reference defines `class Model` and `get_inputs` at top level (a solution does not)."""
    return bool(_MODEL.search(source) and _INPUTS.search(source))


def find_problems(specs: list[str]) -> list[ProblemFile]:
    """Every problem file the specs name, in a stable order; explicit files must be problems."""
    found: dict[Path, str] = {}
    for spec in specs:
        for path, name in _expand(spec):
            found.setdefault(path.resolve(), name)
    problems = []
    for path, name in found.items():
        source = path.read_text(encoding="utf-8")
        if is_problem(source):
            problems.append(ProblemFile(name, path, source))
    return _unique(sorted(problems, key=lambda p: p.name))


def _expand(spec: str) -> list[tuple[Path, str]]:
    path = Path(spec)
    if path.is_dir():
        return [(p, p.relative_to(path).with_suffix("").as_posix())
                for p in sorted(path.rglob("*.py"))]
    if path.is_file():
        return [(path, path.stem)]
    matches = sorted(Path(m) for m in glob.glob(spec, recursive=True))
    if not matches:
        raise FileNotFoundError(f"no file or folder matches {spec!r}")
    return [pair for match in matches for pair in _expand(str(match))]


def _unique(problems: list[ProblemFile]) -> list[ProblemFile]:
    """Files that share a name (a/x.py and b/x.py given as files) are named by as many of
    their parent folders as it takes to tell them apart."""
    counts: dict[str, int] = {}
    for problem in problems:
        counts[problem.name] = counts.get(problem.name, 0) + 1
    clashing = [p.path.with_suffix("") for p in problems if counts[p.name] > 1]
    depth = 2
    while len({_tail(path, depth) for path in clashing}) < len(clashing):
        depth += 1
    return [p if counts[p.name] == 1 else
            ProblemFile(_tail(p.path.with_suffix(""), depth), p.path, p.source)
            for p in problems]


def _tail(path: Path, parts: int) -> str:
    return "/".join(path.parts[-parts:])
