"""Any OpenAI-compatible endpoint: `vllm serve`, SGLang, `transformers serve`.

Token-id prompts go to `/v1/completions` where the server accepts them (vLLM, SGLang),
which keeps our chat rendering and the server's prefix cache. A server that refuses them
(`transformers serve` takes only text there) gets the same turns as chat messages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import httpx

from refine.backends.protocol import BackendError, Generation
from refine.chat import QWEN3_STOP_TOKENS, ChatFormat, Prompt
from refine.config import SamplingConfig
from refine.events import Usage

if TYPE_CHECKING:
    from refine.chat import ChatTokenizer

PromptMode = Literal["auto", "tokens", "chat"]


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
        if self.mode != "chat":
            response = await self._post("/completions", self._tokens_body(prompt, sampling))
            if response.is_success or self.mode == "tokens" or response.status_code not in (
                    400, 404, 422):
                return self._tokens_generation(_json(response), len(prompt.token_ids))
            self.mode = "chat"
        response = await self._post("/chat/completions", self._chat_body(prompt, sampling))
        return self._chat_generation(_json(response), len(prompt.token_ids))

    async def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        try:
            return await self._client.post(path, json=body)
        except httpx.TransportError as exc:
            raise BackendError(f"{self._client.base_url}{path}: {exc!r}") from exc

    def _common(self, sampling: SamplingConfig) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "temperature": sampling.temperature,
                                "top_p": sampling.top_p, "max_tokens": sampling.max_new_tokens}
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        return body

    def _tokens_body(self, prompt: Prompt, sampling: SamplingConfig) -> dict[str, Any]:
        # stop_token_ids and return_token_ids are vLLM/SGLang extensions; others ignore them.
        return self._common(sampling) | {"prompt": prompt.token_ids,
                                         "stop_token_ids": self._chat.stop_token_ids,
                                         "return_token_ids": True}

    def _chat_body(self, prompt: Prompt, sampling: SamplingConfig) -> dict[str, Any]:
        return self._common(sampling) | {"messages": prompt.messages}

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
