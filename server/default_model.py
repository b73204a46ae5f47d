"""The model `drkernel serve` runs when none is configured: the tiny test model, built once.

Its builder lives with the tests (`tests/tiny_model.py`) and is loaded by path, so this
works from a checkout or an editable install, not from a wheel.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path

_BUILDER = Path(__file__).resolve().parents[1] / "tests" / "tiny_model.py"


def tiny_model(cache_dir: Path) -> Path:
    """The tiny model's directory under `cache_dir`, built on first use."""
    path = cache_dir / "tiny-qwen3"
    if (path / "config.json").is_file():
        return path
    if not _BUILDER.is_file():
        raise FileNotFoundError(
            f"no model is configured and the tiny test model's builder {_BUILDER} is missing "
            "(it ships with a source checkout); set model.path")
    spec = importlib.util.spec_from_file_location("drkernel_tiny_model", _BUILDER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cache_dir.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=cache_dir, prefix=".tiny-qwen3-"))
    module.build_tiny_model(building)
    try:
        building.rename(path)
    except OSError:  # another server built it first
        shutil.rmtree(building, ignore_errors=True)
    return path
