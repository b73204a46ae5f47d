"""Replays given responses in order (tests only); records every prompt it was given."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from refine.backends.protocol import BackendDead, BackendError, Generation
from refine.chat import Prompt
from refine.config import SamplingConfig
from refine.events import Usage

if TYPE_CHECKING:
    from refine.chat import ChatTokenizer


class ScriptedBackend:
    name = "scripted"

    def __init__(self, tokenizer: ChatTokenizer, responses: Iterable[str | BackendError],
                 delays_s: Sequence[float] = ()):
        """`delays_s[i]` is how long response i takes to "generate" (0 when not given).

        A `BackendError` among `responses` is raised in its place; a `BackendDead` also
        leaves the backend dead, as a crashed engine would.
        """
        self.tokenizer = tokenizer
        self.responses = list(responses)
        self.delays_s = list(delays_s)
        self.prompts: list[Prompt] = []
        self.dead = False

    async def generate(self, prompt: Prompt, sampling: SamplingConfig) -> Generation:
        if self.dead:
            raise BackendDead("the scripted engine is dead")
        if len(self.prompts) >= len(self.responses):
            raise BackendError(f"script exhausted after {len(self.responses)} responses")
        index = len(self.prompts)
        self.prompts.append(prompt)
        await asyncio.sleep(self.delays_s[index] if index < len(self.delays_s) else 0.0)
        response = self.responses[index]
        if isinstance(response, BackendError):
            self.dead = isinstance(response, BackendDead)
            raise response
        token_ids = list(self.tokenizer.encode(response, add_special_tokens=False))
        usage = Usage(prompt_tokens=len(prompt.token_ids), generated_tokens=len(token_ids))
        return Generation(response, token_ids, usage, "stop")

    async def close(self) -> None:
        return None
