"""In-process vLLM `AsyncLLM` (V1): the production backend, an optional extra.

Prompts go in as token ids that extend the previous turn's ids, so the prefix cache
hits on every turn; `num_cached_tokens` of each output says how much did.
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from refine.backends.protocol import (
    BackendDead,
    BackendError,
    Generation,
    PromptTooLong,
    new_token_budget,
)
from refine.chat import QWEN3_STOP_TOKENS, ChatFormat, Prompt
from refine.config import SamplingConfig
from refine.events import Usage

if TYPE_CHECKING:
    from refine.chat import ChatTokenizer

_CONTEXT_LENGTH = re.compile(r"maximum (model|context) length", re.IGNORECASE)


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


def _vllm_tokens_input(token_ids: list[int]) -> Any:
    """vLLM's token input (`{"type": "token", ...}`), which skips the deprecated raw-prompt
    preprocessing in a thread."""
    from vllm.inputs import tokens_input

    return tokens_input(token_ids)


def _vllm_sampling_params(**kwargs: Any) -> Any:
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    return SamplingParams(**kwargs, output_kind=RequestOutputKind.FINAL_ONLY)


class VLLMBackend:
    name = "vllm"

    def __init__(self, engine: Any, tokenizer: ChatTokenizer,
                 make_params: Callable[..., Any] = _vllm_sampling_params,
                 make_prompt: Callable[[list[int]], Any] = _vllm_tokens_input,
                 request_prefix: str | None = None, max_model_len: int | None = None):
        self.engine = engine
        self.max_model_len = max_model_len
        self.tokenizer = tokenizer
        self._chat = ChatFormat(tokenizer, QWEN3_STOP_TOKENS)
        self._make_params = make_params
        self._make_prompt = make_prompt
        self._request_ids = (f"{request_prefix or uuid.uuid4().hex[:8]}-{n}"
                             for n in itertools.count())

    @classmethod
    def from_model(cls, model: str, **engine_args: Any) -> VLLMBackend:
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        args = AsyncEngineArgs(**({"model": model, "enable_prefix_caching": True}
                                  | engine_args))
        engine = AsyncLLM.from_engine_args(args)
        # The engine's own tokenizer: built with engine_args' tokenizer, revision and
        # trust_remote_code, so our prompt ids and its detokenizer cannot diverge.
        return cls(engine, engine.get_tokenizer(), make_prompt=_vllm_tokens_input,
                   max_model_len=engine.model_config.max_model_len)

    @property
    def dead(self) -> bool:
        """`AsyncLLM.errored`: its engine core process is gone or its output handler died."""
        return bool(self.engine.errored)

    async def generate(self, prompt: Prompt, sampling: SamplingConfig) -> Generation:
        if self.dead:
            raise BackendDead("the vLLM engine is dead; the server needs a restart")
        request_id = next(self._request_ids)
        max_tokens = new_token_budget(len(prompt.token_ids), sampling, self.max_model_len)
        params = self._make_params(**sampling_kwargs(sampling, self._chat.stop_token_ids,
                                                     max_tokens))
        final = None
        try:
            # Cancelling the awaiting task makes AsyncLLM.generate abort the request itself.
            async for output in self.engine.generate(self._make_prompt(prompt.token_ids),
                                                     params, request_id):
                final = output
        except Exception as exc:
            raise self._backend_error(exc) from exc
        if final is None or not final.outputs:
            raise BackendError(f"vLLM request {request_id} ended without output")
        return self._generation(final, len(prompt.token_ids))

    def _backend_error(self, exc: Exception) -> Exception:
        """vLLM's errors as ours, told apart by class name so vllm need not be imported:
        EngineDeadError (or `errored`) is death, VLLMValidationError a bad request (a prompt
        over the context among them), EngineGenerateError a failure of this request."""
        names = {cls.__name__ for cls in type(exc).__mro__}
        if self.dead or "EngineDeadError" in names:
            return BackendDead(f"the vLLM engine died: {exc!r}")
        if "VLLMValidationError" in names and _CONTEXT_LENGTH.search(str(exc)):
            return PromptTooLong(f"vLLM: {exc}")
        if "VLLMError" in names:
            cause = f" (cause: {exc.__cause__!r})" if exc.__cause__ is not None else ""
            return BackendError(f"vLLM: {type(exc).__name__}: {exc}{cause}")
        return exc

    def _generation(self, final: Any, prompt_tokens: int) -> Generation:
        completion = final.outputs[0]
        token_ids = list(completion.token_ids)
        # vLLM keeps the token it stopped on (a stop id, or an EOS of the tokenizer or the
        # generation config, stop_reason None) in token_ids; a stop string is not a token.
        if (completion.finish_reason == "stop" and token_ids
                and not isinstance(completion.stop_reason, str)):
            token_ids = token_ids[:-1]
        token_ids, _ = self._chat.strip_stop(token_ids)
        usage = Usage(prompt_tokens=prompt_tokens,
                      cached_tokens=final.num_cached_tokens or 0,
                      generated_tokens=len(completion.token_ids))
        return Generation(completion.text, token_ids, usage, str(completion.finish_reason or ""))

    async def close(self) -> None:
        self.engine.shutdown()
