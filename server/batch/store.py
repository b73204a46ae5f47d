"""The output folder: `results.jsonl` (appended, one record per problem), the best kernels."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from server.batch.record import ProblemRecord

RESULTS = "results.jsonl"
KERNELS = "kernels"


class ResultStore:
    def __init__(self, out: Path):
        self.out = out
        self.results = out / RESULTS
        out.mkdir(parents=True, exist_ok=True)

    def load(self) -> dict[str, ProblemRecord]:
        """The latest record of each problem; a line cut short by a crash is ignored."""
        records: dict[str, ProblemRecord] = {}
        if not self.results.exists():
            return records
        for line in self.results.read_text(encoding="utf-8").splitlines():
            try:
                record = ProblemRecord.from_dict(json.loads(line))
            except (json.JSONDecodeError, TypeError, KeyError):
                continue
            records[record.name] = record
        return records

    def finished(self) -> set[str]:
        """Problems a rerun skips: every recorded one except those whose session failed."""
        return {name for name, r in self.load().items() if r.outcome != "error"}

    def save_kernel(self, name: str, code: str) -> str:
        relative = f"{KERNELS}/{kernel_file_name(name)}"
        path = self.out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(code, encoding="utf-8")
        return relative

    def append(self, record: ProblemRecord) -> None:
        with self.results.open("a", encoding="utf-8") as f:
            f.write(record.to_json() + "\n")
            f.flush()
            os.fsync(f.fileno())


def kernel_file_name(name: str) -> str:
    return re.sub(r"[^\w.-]+", "__", name) + ".py"
