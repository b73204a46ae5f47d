from __future__ import annotations

from pathlib import Path

import pytest

from refine.tiny_model import build_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen3-shaped model with a ChatML tokenizer, saved once per session."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen3"))
