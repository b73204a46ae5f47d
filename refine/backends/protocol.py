"""The one interface every generation backend implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from refine.chat import Prompt
from refine.config import SamplingConfig
from refine.events import Usage

if TYPE_CHECKING:
    from refine.chat import ChatTokenizer


class BackendError(RuntimeError):
    """The model server or engine failed to produce a generation."""


class BackendDead(BackendError):
    """The engine has died and will not generate again; only a restart brings it back."""


class PromptTooLong(BackendError):
    """The conversation no longer leaves room for new tokens in the model's context."""


def new_token_budget(prompt_tokens: int, sampling: SamplingConfig,
                     max_model_len: int | None) -> int:
    """`sampling.max_new_tokens`, cut to what the context has left (as KernelGYM's rollout
    does); the context is the smaller of the model's and `sampling.max_model_len`."""
    max_new_tokens = sampling.max_new_tokens
    limits = [n for n in (max_model_len, sampling.max_model_len) if n is not None]
    if not limits:
        return max_new_tokens
    max_model_len = min(limits)
    room = max_model_len - prompt_tokens
    if room < 1:
        raise PromptTooLong(f"prompt of {prompt_tokens} tokens fills the {max_model_len}-token "
                            "context")
    return min(max_new_tokens, room)


@dataclass
class Generation:
    text: str
    token_ids: list[int]
    """Generated ids without the final stop token, so prompts can be appended to them."""
    usage: Usage
    finish_reason: str
    """`stop`, `length` or `abort`."""


class Backend(Protocol):
    name: str
    tokenizer: ChatTokenizer

    @property
    def dead(self) -> bool:
        """True once the backend can never generate again (its engine died); a server then
        reports NOT_SERVING so probes restart it and balancers route elsewhere."""
        ...

    async def generate(self, prompt: Prompt, sampling: SamplingConfig) -> Generation:
        """Continue `prompt`; cancelling the awaiting task stops the generation."""
        ...

    async def close(self) -> None: ...
