"""The model `drkernel serve` runs when none is configured: the tiny test model, built once."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from refine.tiny_model import build_tiny_model


def tiny_model(cache_dir: Path) -> Path:
    """The tiny model's directory under `cache_dir`, built on first use."""
    path = cache_dir / "tiny-qwen3"
    if (path / "config.json").is_file():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=cache_dir, prefix=".tiny-qwen3-"))
    build_tiny_model(building)
    try:
        building.rename(path)
    except OSError:  # another server built it first
        shutil.rmtree(building, ignore_errors=True)
    return path
