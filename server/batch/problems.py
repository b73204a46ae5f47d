"""Finding the KernelBench-format problems a batch names: files, folders and globs."""

from __future__ import annotations

import glob
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_MODEL = re.compile(r"^class Model\b", re.MULTILINE)
_INPUTS = re.compile(r"^def get_inputs\b", re.MULTILINE)


DATA_SET_SUFFIXES = (".jsonl", ".parquet")


@dataclass(frozen=True)
class ProblemFile:
    name: str
    """Unique within the batch: the path below the folder it was found in, without `.py`;
    for a data set row, its name or id in the row."""
    path: Path
    source: str
    prompt: str | None = None
    """A data set row's first-turn prompt, used verbatim instead of the template."""


def is_problem(source: str) -> bool:
    """A reference defines `class Model` and `get_inputs` at top level (a solution does not)."""
    return bool(_MODEL.search(source) and _INPUTS.search(source))


def find_problems(specs: list[str]) -> list[ProblemFile]:
    """Every problem the specs name, in a stable order: Python files (folders and globs
    searched for them) and data set files (`.jsonl`, `.parquet`), one problem per row."""
    found: dict[Path, str] = {}
    rows: list[ProblemFile] = []
    for spec in specs:
        if Path(spec).suffix in DATA_SET_SUFFIXES and Path(spec).is_file():
            rows += read_data_set(Path(spec))
            continue
        for path, name in _expand(spec):
            found.setdefault(path.resolve(), name)
    problems = []
    for path, name in found.items():
        source = path.read_text(encoding="utf-8")
        if is_problem(source):
            problems.append(ProblemFile(name, path, source))
    problems = _unique(sorted(problems, key=lambda p: p.name))
    names = [p.name for p in problems + rows]
    if len(set(names)) < len(names):
        raise ValueError("two problems of the batch share a name: "
                         + ", ".join(sorted({n for n in names if names.count(n) > 1})))
    return problems + rows


def read_data_set(path: Path) -> list[ProblemFile]:
    """Rows as Dr.Kernel's data sets hold them (`prompt` a list of chat messages whose
    first user message is the first turn, `reward_model.ground_truth` the reference,
    `extra_info.name`/`problem_id`), or flat (`reference`, `prompt` text, `name`)."""
    problems = []
    for index, row in enumerate(_rows(path)):
        try:
            problems.append(_row_problem(path, index, row))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path} row {index}: {exc}") from None
    return problems


def _rows(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ValueError(f"reading {path} needs pyarrow (pip install pyarrow), or "
                             "convert it to JSON lines") from None
        rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
        return rows
    lines = path.read_text(encoding="utf-8").splitlines()
    try:
        return [json.loads(line) for line in lines if line.strip()]
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON lines: {exc}") from None


def _row_problem(path: Path, index: int, row: dict[str, Any]) -> ProblemFile:
    reference = row.get("reference") or (row.get("reward_model") or {}).get("ground_truth")
    if not isinstance(reference, str) or not is_problem(reference):
        raise ValueError("no KernelBench-format reference (`reference` or "
                         "`reward_model.ground_truth`)")
    prompt = row.get("prompt")
    if isinstance(prompt, list):
        prompt = next(m["content"] for m in prompt if m.get("role") == "user")
    if prompt is not None and not isinstance(prompt, str):
        raise ValueError("`prompt` is neither text nor a list of chat messages")
    extra = row.get("extra_info") or {}
    name = row.get("name") or extra.get("name") or extra.get("problem_id")
    return ProblemFile(str(name) if name is not None else f"{path.stem}/{index}",
                       path, reference, prompt)


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
