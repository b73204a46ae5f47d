"""Replays given responses in order (tests only); records every prompt it was given."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from refine.backends.protocol import BackendError, Generation
from refine.chat import Prompt
from refine.config import SamplingConfig
from refine.events import Usage

if TYPE_CHECKING:
    from refine.chat import ChatTokenizer


class ScriptedBackend:
    name = "scripted"

    def __init__(self, tokenizer: ChatTokenizer, responses: Iterable[str],
                 delays_s: Sequence[float] = ()):
        """`delays_s[i]` is how long response i takes to "generate" (0 when not given)."""
        self.tokenizer = tokenizer
        self.responses = list(responses)
        self.delays_s = list(delays_s)
        self.prompts: list[Prompt] = []

    async def generate(self, prompt: Prompt, sampling: SamplingConfig) -> Generation:
        if len(self.prompts) >= len(self.responses):
            raise BackendError(f"script exhausted after {len(self.responses)} responses")
        index = len(self.prompts)
        self.prompts.append(prompt)
        await asyncio.sleep(self.delays_s[index] if index < len(self.delays_s) else 0.0)
        text = self.responses[index]
        token_ids = list(self.tokenizer.encode(text, add_special_tokens=False))
        usage = Usage(prompt_tokens=len(prompt.token_ids), generated_tokens=len(token_ids))
        return Generation(text, token_ids, usage, "stop")

    async def close(self) -> None:
        return None
