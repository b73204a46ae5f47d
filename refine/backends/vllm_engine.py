"""In-process vLLM `AsyncLLM` (V1): the production backend, an optional extra.

Prompts go in as token ids that extend the previous turn's ids, so the prefix cache
hits on every turn; `num_cached_tokens` of each output says how much did.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from refine.backends.protocol import BackendDead, BackendError, Generation, new_token_budget
from refine.chat import QWEN3_STOP_TOKENS, ChatFormat, Prompt
from refine.config import SamplingConfig
from refine.events import Usage

if TYPE_CHECKING:
    from refine.chat import ChatTokenizer


def sampling_kwargs(sampling: SamplingConfig, stop_token_ids: list[int],
                    max_tokens: int) -> dict[str, Any]:
    """Keyword arguments of `vllm.SamplingParams` for one turn."""
    return {
        "n": 1,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": max_tokens,
        "seed": sampling.seed,
        "stop_token_ids": list(stop_token_ids),
        "skip_special_tokens": True,
    }


def _vllm_sampling_params(**kwargs: Any) -> Any:
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    return SamplingParams(**kwargs, output_kind=RequestOutputKind.FINAL_ONLY)


class VLLMBackend:
    name = "vllm"

    def __init__(self, engine: Any, tokenizer: ChatTokenizer,
                 make_params: Callable[..., Any] = _vllm_sampling_params,
                 request_prefix: str | None = None, max_model_len: int | None = None):
        self.engine = engine
        self.max_model_len = max_model_len
        self.tokenizer = tokenizer
        self._chat = ChatFormat(tokenizer, QWEN3_STOP_TOKENS)
        self._make_params = make_params
        self._request_ids = (f"{request_prefix or uuid.uuid4().hex[:8]}-{n}"
                             for n in itertools.count())

    @classmethod
    def from_model(cls, model: str, **engine_args: Any) -> VLLMBackend:
        from transformers import AutoTokenizer
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        args = AsyncEngineArgs(model=model, enable_prefix_caching=True, **engine_args)
        engine = AsyncLLM.from_engine_args(args)
        return cls(engine, AutoTokenizer.from_pretrained(model),
                   max_model_len=engine.model_config.max_model_len)

    @property
    def dead(self) -> bool:
        """`AsyncLLM.errored`: its engine core process is gone or its output handler died."""
        return bool(self.engine.errored)

    async def generate(self, prompt: Prompt, sampling: SamplingConfig) -> Generation:
        if self.dead:
            raise BackendDead("the vLLM engine is dead; the server needs a restart")
        request_id = next(self._request_ids)
        max_tokens = new_token_budget(len(prompt.token_ids), sampling.max_new_tokens,
                                      self.max_model_len)
        params = self._make_params(**sampling_kwargs(sampling, self._chat.stop_token_ids,
                                                     max_tokens))
        final = None
        try:
            async for output in self.engine.generate({"prompt_token_ids": prompt.token_ids},
                                                     params, request_id):
                final = output
        except asyncio.CancelledError:
            await self.engine.abort(request_id)
            raise
        except Exception as exc:
            # AsyncLLM raises EngineDeadError once its core is gone; `errored` tells that
            # apart from a failure of this one request without importing vllm here.
            if self.dead:
                raise BackendDead(f"the vLLM engine died: {exc!r}") from exc
            raise
        if final is None or not final.outputs:
            raise BackendError(f"vLLM request {request_id} ended without output")
        return self._generation(final, len(prompt.token_ids))

    def _generation(self, final: Any, prompt_tokens: int) -> Generation:
        completion = final.outputs[0]
        token_ids, _ = self._chat.strip_stop(completion.token_ids)
        usage = Usage(prompt_tokens=prompt_tokens,
                      cached_tokens=final.num_cached_tokens or 0,
                      generated_tokens=len(completion.token_ids))
        return Generation(completion.text, token_ids, usage, str(completion.finish_reason or ""))

    async def close(self) -> None:
        self.engine.shutdown()
