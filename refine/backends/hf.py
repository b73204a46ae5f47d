"""In-process Hugging Face model (CPU or GPU), for small models and development.

`generate` runs in a worker thread so the event loop keeps serving; cancelling the
awaiting task sets a flag that a stopping criterion checks after every token.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any

from refine.backends.protocol import Generation, new_token_budget
from refine.chat import QWEN3_STOP_TOKENS, ChatFormat, Prompt
from refine.config import SamplingConfig
from refine.events import Usage

if TYPE_CHECKING:
    from refine.chat import ChatTokenizer


class TransformersBackend:
    name = "transformers"
    dead = False

    def __init__(self, model: Any, tokenizer: ChatTokenizer):
        self.model = model
        self.tokenizer = tokenizer
        self._chat = ChatFormat(tokenizer, QWEN3_STOP_TOKENS)

    @classmethod
    def load(cls, path: str, device: str = "auto") -> TransformersBackend:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype="auto")
        torch.nn.Module.to(model, torch.device(device)).eval()
        return cls(model, tokenizer)

    async def generate(self, prompt: Prompt, sampling: SamplingConfig) -> Generation:
        cancelled = threading.Event()
        try:
            return await asyncio.to_thread(self._generate, prompt.token_ids, sampling, cancelled)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    def _generate(self, prompt_ids: list[int], sampling: SamplingConfig,
                  cancelled: threading.Event) -> Generation:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        class _Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return cancelled.is_set()

        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        max_new_tokens = new_token_budget(len(prompt_ids), sampling,
                                          self.model.config.max_position_embeddings)
        inputs = torch.tensor([prompt_ids], device=self.model.device)
        sample = sampling.temperature > 0
        with torch.inference_mode():
            output = self.model.generate(
                inputs,
                attention_mask=torch.ones_like(inputs),
                max_new_tokens=max_new_tokens,
                do_sample=sample,
                temperature=sampling.temperature if sample else None,
                top_p=sampling.top_p if sample else None,
                top_k=None,
                eos_token_id=sorted(self._chat.end_ids),
                pad_token_id=self._chat.stop_token_ids[0],
                stopping_criteria=StoppingCriteriaList([_Cancelled()]),
            )
        generated = output[0, len(prompt_ids):].tolist()
        token_ids, stopped = self._chat.strip_stop(generated)
        finish = "abort" if cancelled.is_set() else "stop" if stopped else "length"
        text = self._chat.decode(token_ids)
        usage = Usage(prompt_tokens=len(prompt_ids), generated_tokens=len(generated))
        return Generation(text, token_ids, usage, finish)

    async def close(self) -> None:
        return None
