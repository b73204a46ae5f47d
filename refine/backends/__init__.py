"""Generation backends behind one `Backend` protocol; heavy ones are imported on use."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from refine.backends.protocol import (
    Backend,
    BackendDead,
    BackendError,
    Generation,
    PromptTooLong,
)

BackendName = Literal["vllm", "openai", "transformers"]
BACKENDS: tuple[BackendName, ...] = ("vllm", "openai", "transformers")


def load_backend(name: BackendName, model: str, *, base_url: str | None = None,
                 api_key: str | None = None, device: str = "auto",
                 engine_args: Mapping[str, Any] | None = None) -> Backend:
    """Build a backend by name; `model` is a path or hub id (the served name for `openai`).

    `base_url` and `api_key` are the `openai` endpoint's, `device` is where `transformers`
    runs the model, `engine_args` are extra `vllm.AsyncEngineArgs`.
    """
    if engine_args and name != "vllm":
        raise ValueError("engine_args apply to the vllm backend only")
    if name == "transformers":
        from refine.backends.hf import TransformersBackend

        return TransformersBackend.load(model, device=device)
    if name == "vllm":
        from refine.backends.vllm_engine import VLLMBackend

        return VLLMBackend.from_model(model, **(engine_args or {}))
    if name == "openai":
        from transformers import AutoTokenizer

        from refine.backends.openai_api import OpenAIBackend

        if base_url is None:
            raise ValueError("the openai backend needs a base URL")
        return OpenAIBackend(base_url, model, AutoTokenizer.from_pretrained(model),
                             api_key=api_key)
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Backend", "BackendDead", "BackendError", "BackendName", "Generation",
           "PromptTooLong", "load_backend"]
