"""Each written problem must load and run in a fresh interpreter that cannot see the user's
files: `python -I` (no user site, no PYTHONPATH, no script folder) in an empty folder."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

_TIMEOUT_S = 300
_SCRIPT = """
import json, runpy, sys, traceback
import torch
errors = {}
for path in sys.argv[1:]:
    try:
        ns = runpy.run_path(path, run_name="problem")
        torch.manual_seed(0)
        model = ns["Model"](*ns["get_init_inputs"]())
        with torch.no_grad():
            model(*ns["get_inputs"]())
    except BaseException as exc:
        errors[path] = f"{type(exc).__name__}: {exc}"
print(json.dumps(errors))
"""


def fresh_process_errors(paths: list[Path]) -> dict[str, str]:
    """Per problem file that failed, why; the others load, build and run."""
    if not paths:
        return {}
    with tempfile.TemporaryDirectory(prefix="drkernel-verify-") as empty:
        done = subprocess.run([sys.executable, "-I", "-c", _SCRIPT, *map(str, paths)],
                              cwd=empty, capture_output=True, text=True, timeout=_TIMEOUT_S,
                              check=False)
    try:
        errors: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {str(p): f"the check itself failed: {done.stderr.strip()[-500:]}" for p in paths}
    return errors
