"""Any OpenAI-compatible endpoint: `vllm serve`, SGLang, `transformers serve`.

Token-id prompts go to `/v1/completions` where the server accepts them (vLLM, SGLang),
which keeps our chat rendering and the server's prefix cache. A server that refuses them
(`transformers serve` takes only text there) gets the same turns as chat messages. A prompt
the endpoint refuses as too long for its context is `PromptTooLong`, and does not switch
the backend to chat messages.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

import httpx

from refine.backends.protocol import BackendError, Generation, PromptTooLong, new_token_budget
from refine.chat import QWEN3_STOP_TOKENS, ChatFormat, Prompt
from refine.config import SamplingConfig
from refine.events import Usage

if TYPE_CHECKING:
    from refine.chat import ChatTokenizer

PromptMode = Literal["auto", "tokens", "chat"]
_CONTEXT_LENGTH = re.compile(r"maximum (model |context )?length|context length|context window|"
                             r"takes at most \d+|prompt is too long|too many tokens",
                             re.IGNORECASE)


class OpenAIBackend:
    name = "openai"
    dead = False
    """Endpoint failures are per request: the server behind it may come back."""

    def __init__(self, base_url: str, model: str, tokenizer: ChatTokenizer, *,
                 api_key: str | None = None, mode: PromptMode = "auto",
                 timeout_s: float = 600.0, transport: httpx.AsyncBaseTransport | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.mode = mode
        self._chat = ChatFormat(tokenizer, QWEN3_STOP_TOKENS)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(base_url=base_url.rstrip("/"), headers=headers,
                                         timeout=timeout_s, transport=transport)

    async def generate(self, prompt: Prompt, sampling: SamplingConfig) -> Generation:
        max_tokens = new_token_budget(len(prompt.token_ids), sampling, None)
        if self.mode != "chat":
            response = await self._post("/completions",
                                        self._tokens_body(prompt, sampling, max_tokens))
            _raise_if_too_long(response)
            if response.is_success or self.mode == "tokens" or response.status_code not in (
                    400, 404, 422):
                return self._tokens_generation(_json(response), len(prompt.token_ids))
            self.mode = "chat"
        response = await self._post("/chat/completions",
                                    self._chat_body(prompt, sampling, max_tokens))
        _raise_if_too_long(response)
        return self._chat_generation(_json(response), len(prompt.token_ids))

    async def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        try:
            return await self._client.post(path, json=body)
        except httpx.TransportError as exc:
            raise BackendError(f"{self._client.base_url}{path}: {exc!r}") from exc

    def _common(self, sampling: SamplingConfig, max_tokens: int) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "temperature": sampling.temperature,
                                "top_p": sampling.top_p, "max_tokens": max_tokens}
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        return body

    def _tokens_body(self, prompt: Prompt, sampling: SamplingConfig,
                     max_tokens: int) -> dict[str, Any]:
        # stop_token_ids and return_token_ids are vLLM/SGLang extensions; others ignore them.
        return self._common(sampling, max_tokens) | {
            "prompt": prompt.token_ids, "stop_token_ids": self._chat.stop_token_ids,
            "return_token_ids": True}

    def _chat_body(self, prompt: Prompt, sampling: SamplingConfig,
                   max_tokens: int) -> dict[str, Any]:
        return self._common(sampling, max_tokens) | {"messages": prompt.messages}

    def _tokens_generation(self, data: dict[str, Any], prompt_tokens: int) -> Generation:
        choice = data["choices"][0]
        ids = choice.get("token_ids") or self._chat.encode(choice["text"])
        return self._generation(choice["text"], ids, choice, data, prompt_tokens)

    def _chat_generation(self, data: dict[str, Any], prompt_tokens: int) -> Generation:
        choice = data["choices"][0]
        text = choice["message"].get("content") or ""
        return self._generation(text, self._chat.encode(text), choice, data, prompt_tokens)

    def _generation(self, text: str, ids: list[int], choice: dict[str, Any],
                    data: dict[str, Any], prompt_tokens: int) -> Generation:
        token_ids, _ = self._chat.strip_stop(ids)
        usage = data.get("usage") or {}
        details = usage.get("prompt_tokens_details") or {}
        return Generation(text, token_ids, Usage(
            prompt_tokens=usage.get("prompt_tokens", prompt_tokens),
            cached_tokens=details.get("cached_tokens") or 0,
            generated_tokens=usage.get("completion_tokens", len(ids)),
        ), choice.get("finish_reason") or "")

    async def close(self) -> None:
        await self._client.aclose()


def _raise_if_too_long(response: httpx.Response) -> None:
    """A request refused because the prompt leaves no room in the context: vLLM and
    SGLang answer 400 naming the maximum context length, `transformers serve` says the
    model takes at most so many tokens."""
    if response.status_code in (400, 413, 422) and _CONTEXT_LENGTH.search(response.text):
        raise PromptTooLong(f"{response.request.url} answered {response.status_code}: "
                            f"{response.text[:500]}")


def _json(response: httpx.Response) -> dict[str, Any]:
    if not response.is_success:
        raise BackendError(f"{response.request.url} answered {response.status_code}: "
                           f"{response.text[:500]}")
    try:
        data = response.json()
    except ValueError as exc:
        raise BackendError(f"{response.request.url} answered with no JSON: "
                           f"{response.text[:500]}") from exc
    if not isinstance(data, dict) or not data.get("choices"):
        raise BackendError(f"{response.request.url} answered without choices: "
                           f"{response.text[:500]}")
    return data
