"""Chat turns as token ids, appended so every turn's prompt extends the previous one.

Re-rendering the whole history can re-tokenise earlier text differently, and Qwen3's
template rewrites earlier assistant turns; either breaks vLLM's prefix cache. So only the
first message and each new feedback turn go through the tokenizer's chat template.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase as ChatTokenizer

QWEN3_STOP_TOKENS = ("<|im_end|>", "<|im_start|>", "user", "assistant")
"""Dr.Kernel's stop ids 151645, 151644, 872, 77091 in Qwen's vocabulary (KernelGYM's
`stop_token_ids`): the ChatML markers and the bare words "user" and "assistant". A tokenizer
without one of them as a single token simply does not stop on it."""
_ASSISTANT = "\x00assistant-slot\x00"
_USER = "\x00user-slot\x00"


@dataclass
class Prompt:
    """What a backend is asked to continue: token ids, and the same turns as messages."""

    token_ids: list[int]
    messages: list[dict[str, str]] = field(default_factory=list)


class ChatFormat:
    def __init__(self, tokenizer: ChatTokenizer, stop_tokens: Sequence[str] = QWEN3_STOP_TOKENS,
                 eos_token_ids: Sequence[int] = ()):
        """`eos_token_ids`: ids the engine also ends on (a generation config's EOS)."""
        self.tokenizer = tokenizer
        self.stop_token_ids = _known_ids(tokenizer, stop_tokens)
        eos = tokenizer.eos_token_id
        self.end_ids = {*self.stop_token_ids, *eos_token_ids,
                        *([eos] if isinstance(eos, int) else [])}
        self._feedback_head, self._feedback_tail = self._feedback_frame()

    def first_turn(self, user_text: str) -> Prompt:
        messages = [{"role": "user", "content": user_text}]
        return Prompt(self.encode(self._render(messages)), messages)

    def next_turn(self, prompt: Prompt, response_ids: Sequence[int], response: str,
                  feedback: str, feedback_ids: Sequence[int] | None = None) -> Prompt:
        """`prompt` + the response (stop token excluded) + a closed turn and a feedback turn.

        Pass `feedback_ids` (from `feedback_ids(feedback)`) to avoid tokenising it again.
        """
        if feedback_ids is None:
            feedback_ids = self.feedback_ids(feedback)
        token_ids = [*prompt.token_ids, *response_ids, *feedback_ids]
        messages = [*prompt.messages, {"role": "assistant", "content": response},
                    {"role": "user", "content": feedback}]
        return Prompt(token_ids, messages)

    def feedback_ids(self, feedback: str) -> list[int]:
        return self.encode(self._feedback_head + feedback + self._feedback_tail)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, token_ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(token_ids), skip_special_tokens=True))

    def strip_stop(self, token_ids: Sequence[int]) -> tuple[list[int], bool]:
        """Drop a trailing stop or end-of-sequence token; say whether there was one.

        The next turn's frame closes the reply itself, and an EOS left in the carried ids
        (`<|endoftext|>` before `<|im_end|>`) is text the model never saw in training.
        """
        ids = list(token_ids)
        if ids and ids[-1] in self.end_ids:
            return ids[:-1], True
        return ids, False

    def _render(self, messages: list[dict[str, str]]) -> str:
        text = self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=True)
        if not isinstance(text, str):
            raise TypeError(f"chat template rendered {type(text).__name__}, not text")
        return text

    def _feedback_frame(self) -> tuple[str, str]:
        # Render placeholders once: the text after the assistant's content closes its turn
        # and opens a user turn; the text after the user's content opens the next reply.
        messages = [{"role": "user", "content": "task"},
                    {"role": "assistant", "content": _ASSISTANT},
                    {"role": "user", "content": _USER}]
        after_assistant = self._render(messages).split(_ASSISTANT, 1)[1]
        head, tail = after_assistant.split(_USER, 1)
        return head, tail


def _known_ids(tokenizer: ChatTokenizer, tokens: Sequence[str]) -> list[int]:
    ids = [tokenizer.convert_tokens_to_ids(token) for token in tokens]
    unk = tokenizer.unk_token_id
    return [i for i in ids if isinstance(i, int) and i != unk]
