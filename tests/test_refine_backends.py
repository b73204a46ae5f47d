"""Backends: the tiny model through `transformers`, and vLLM / OpenAI token bookkeeping."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import torch
from transformers import AutoModelForCausalLM

from evaluator import EvalConfig, Evaluator, Problem
from refine import (
    Evaluated,
    Finished,
    Generated,
    Generation,
    Loop,
    LoopConfig,
    Prompt,
    SamplingConfig,
    TurnStarted,
    build_prompt,
    load_template,
)
from refine.backends import BackendDead, BackendError, PromptTooLong, load_backend
from refine.backends.hf import TransformersBackend
from refine.backends.openai_api import OpenAIBackend
from refine.backends.vllm_engine import VLLMBackend

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
RELU = Problem((EXAMPLES / "relu/reference.py").read_text(), "relu")
SHORT = SamplingConfig(max_new_tokens=12, seed=0)


class Recording:
    """Wraps a real backend and keeps what it was asked and what it answered."""

    def __init__(self, backend: Any):
        self.backend = backend
        self.name = backend.name
        self.tokenizer = backend.tokenizer
        self.calls: list[tuple[Prompt, Generation]] = []

    async def generate(self, prompt: Prompt, sampling: SamplingConfig) -> Generation:
        generation = await self.backend.generate(prompt, sampling)
        self.calls.append((prompt, generation))
        return generation

    async def close(self) -> None:
        await self.backend.close()


async def run_loop(backend: Any, config: LoopConfig) -> list[Any]:
    # Never started: a tiny random model writes no code block, so nothing is evaluated.
    evaluator = Evaluator(workers=1, config=EvalConfig(device="cpu", trial_seed=7))
    try:
        return [event async for event in Loop(backend, evaluator, config).run(RELU)]
    finally:
        await evaluator.close()


def assert_prefix_property(calls: list[tuple[Prompt, Generation]]) -> None:
    for (before, generation), (after, _) in itertools.pairwise(calls):
        expected = before.token_ids + generation.token_ids
        assert after.token_ids[:len(expected)] == expected
        assert len(after.token_ids) > len(expected)


async def test_transformers_backend_drives_turns_end_to_end(tiny_model_dir: Path) -> None:
    backend = Recording(TransformersBackend.load(str(tiny_model_dir), device="cpu"))
    events = await run_loop(backend, LoopConfig(max_turns=2, sampling=SHORT))
    generated = [e for e in events if isinstance(e, Generated)]
    assert [g.turn for g in generated] == [1, 2]
    assert all(0 < g.usage.generated_tokens <= 12 for g in generated)
    assert all(g.code is None for g in generated)
    turns = [e.turn for e in events if isinstance(e, Evaluated)]
    assert all(t.format_error and t.reward == 0.0 for t in turns)
    assert "missing class ModelNew" in backend.calls[1][0].messages[-1]["content"]
    assert_prefix_property(backend.calls)
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.best is None


async def test_transformers_backend_stops_on_stop_token(tiny_model_dir: Path, tokenizer) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[im_end] = 100.0
    model.lm_head = head
    backend = TransformersBackend(model, tokenizer)
    generation = await backend.generate(Prompt(tokenizer.encode("hello")), SHORT)
    assert generation.finish_reason == "stop"
    assert generation.token_ids == [] and generation.usage.generated_tokens == 1


class VLLMError(Exception):
    """vLLM 0.33's error hierarchy (vllm/exceptions.py, vllm/v1/engine/exceptions.py)."""


class VLLMClientError(VLLMError):
    pass


class VLLMValidationError(VLLMClientError):
    pass


class VLLMServerError(VLLMError):
    pass


class EngineGenerateError(VLLMServerError):
    pass


class EngineDeadError(VLLMServerError):
    def __init__(self) -> None:
        super().__init__("EngineCore encountered an issue. See stack trace (above) for the "
                         "root cause.")


def tokens_input(token_ids: list[int]) -> dict[str, Any]:
    """`vllm.inputs.tokens_input`."""
    return {"type": "token", "prompt_token_ids": token_ids}


class StandInEngine:
    """The slice of vLLM 0.33's AsyncLLM the backend uses, with a block-free prefix cache.

    As the real one: token inputs carry `"type": "token"` (a raw dict takes the deprecated
    path, counted here); a prompt that fills `max_model_len` is a VLLMValidationError; a
    failure inside a request is an EngineGenerateError, a dead core an EngineDeadError with
    `errored` set; cancelling `generate` aborts the request itself; the token it stopped on
    stays in `token_ids` (`stop_reason` its id, None for an EOS).
    """

    def __init__(self, replies: list[list[int]], hang: bool = False, dies: bool = False,
                 fails: bool = False, stop_ids: tuple[int, ...] = (), max_model_len: int = 1 << 20,
                 tokenizer: Any = None):
        self.replies = replies
        self.hang = hang
        self.dies = dies
        self.fails = fails
        self.stop_ids = stop_ids
        self.errored = False
        self.model_config = SimpleNamespace(max_model_len=max_model_len)
        self.tokenizer = tokenizer
        self.requests: list[tuple[dict[str, Any], dict[str, Any], str]] = []
        self.raw_prompts = 0
        self.aborted: list[str] = []
        self.seen: list[list[int]] = []

    def get_tokenizer(self) -> Any:
        return self.tokenizer

    async def generate(self, prompt: dict[str, Any], params: dict[str, Any],
                       request_id: str) -> AsyncIterator[Any]:
        self.requests.append((prompt, params, request_id))
        self.raw_prompts += "type" not in prompt
        ids = prompt["prompt_token_ids"]
        if len(ids) >= self.model_config.max_model_len:
            raise VLLMValidationError(
                f"The decoder prompt (length {len(ids)}) is longer than the maximum model "
                f"length of {self.model_config.max_model_len}. Make sure that `max_model_len` "
                "is no smaller than the number of text tokens.")
        try:
            if self.hang:
                await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.aborted.append(request_id)
            raise
        if self.dies:  # as AsyncLLM when its core process exits mid-request
            self.errored = True
            raise EngineDeadError()
        if self.fails:
            raise EngineGenerateError() from RuntimeError("CUDA error: an illegal access")
        cached = max((_common_prefix(ids, seq) for seq in self.seen), default=0)
        output = self.replies.pop(0)
        self.seen.append(ids + output)
        stop_reason = output[-1] if output and output[-1] in self.stop_ids else None
        yield SimpleNamespace(num_cached_tokens=cached, outputs=[SimpleNamespace(
            text="no code", token_ids=output, finish_reason="stop", stop_reason=stop_reason)])

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)

    def shutdown(self) -> None:
        return None


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def vllm_backend(engine: StandInEngine, tokenizer: Any,
                 max_model_len: int | None = None) -> VLLMBackend:
    return VLLMBackend(engine, tokenizer, make_params=dict, make_prompt=tokens_input,
                       request_prefix="t", max_model_len=max_model_len)


async def test_vllm_request_has_token_prompt_and_chatml_stops(tokenizer) -> None:
    im_end, im_start = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|im_start|>"])
    engine = StandInEngine([[7, 8, im_end], [9, im_end]])
    backend = vllm_backend(engine, tokenizer)
    generation = await backend.generate(Prompt([1, 2, 3]), SamplingConfig())
    await backend.generate(Prompt([1, 2, 3, 7, 8, 4]), SamplingConfig())
    prompt, params, _ = engine.requests[0]
    assert prompt == {"type": "token", "prompt_token_ids": [1, 2, 3]}
    assert engine.raw_prompts == 0
    user = tokenizer.convert_tokens_to_ids("user")
    assert params["stop_token_ids"] == [im_end, im_start, user]
    assert (params["temperature"], params["top_p"], params["max_tokens"]) == (1.0, 0.95, 8192)
    assert [r[2] for r in engine.requests] == ["t-0", "t-1"]
    assert generation.token_ids == [7, 8] and generation.finish_reason == "stop"
    assert generation.usage.generated_tokens == 3


async def test_vllm_turns_hit_the_prefix_cache(tokenizer) -> None:
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    engine = StandInEngine([[11, 12, 13, im_end], [14, 15, im_end], [16, im_end]])
    backend = Recording(vllm_backend(engine, tokenizer))
    events = await run_loop(backend, LoopConfig(max_turns=3))
    usages = [e.usage for e in events if isinstance(e, Generated)]
    assert usages[0].cached_tokens == 0
    for (prompt, generation), usage in zip(backend.calls, usages[1:], strict=False):
        # The appended turn starts with the very <|im_end|> the engine sampled.
        assert usage.cached_tokens == len(prompt.token_ids) + generation.usage.generated_tokens
    assert_prefix_property(backend.calls)
    finished = events[-1]
    assert finished.usage.cached_tokens == sum(u.cached_tokens for u in usages)


async def test_cancelling_vllm_generation_aborts_the_request(tokenizer) -> None:
    engine = StandInEngine([[1]], hang=True)
    task = asyncio.create_task(vllm_backend(engine, tokenizer).generate(Prompt([1]),
                                                                         SamplingConfig()))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert engine.aborted == ["t-0"]


async def test_a_dead_vllm_engine_is_backend_dead(tokenizer) -> None:
    engine = StandInEngine([[1]], dies=True)
    backend = vllm_backend(engine, tokenizer)
    assert not backend.dead
    with pytest.raises(BackendDead, match="EngineCore encountered an issue"):
        await backend.generate(Prompt([1]), SamplingConfig())
    assert backend.dead
    with pytest.raises(BackendDead):
        await backend.generate(Prompt([1]), SamplingConfig())
    assert len(engine.requests) == 1, "a dead engine is not sent another request"


async def test_vllm_errors_become_backend_errors(tokenizer) -> None:
    backend = vllm_backend(StandInEngine([[1]], fails=True), tokenizer)
    with pytest.raises(BackendError, match=r"EngineGenerateError.*illegal access") as failed:
        await backend.generate(Prompt([1]), SamplingConfig())
    assert not isinstance(failed.value, BackendDead) and not backend.dead
    engine = StandInEngine([[1]], max_model_len=4)
    with pytest.raises(PromptTooLong, match="maximum model length of 4"):
        await vllm_backend(engine, tokenizer).generate(Prompt([1, 2, 3, 4]), SamplingConfig())
    with pytest.raises(BackendDead, match="EngineCore"):
        await vllm_backend(StandInEngine([[1]], dies=True), tokenizer).generate(
            Prompt([1]), SamplingConfig())


async def test_vllm_carries_no_end_of_sequence_id(tokenizer) -> None:
    endoftext = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    engine = StandInEngine([[7, 8, endoftext], [9, im_end]], stop_ids=(im_end,))
    backend = vllm_backend(engine, tokenizer)
    eos = await backend.generate(Prompt([1, 2]), SamplingConfig())
    stop = await backend.generate(Prompt([1, 2]), SamplingConfig())
    assert (eos.token_ids, stop.token_ids) == ([7, 8], [9])
    assert eos.usage.generated_tokens == 3


def test_vllm_from_model_merges_engine_args_and_uses_the_engine_tokenizer(
        monkeypatch, tokenizer) -> None:
    built: list[Any] = []

    @dataclasses.dataclass
    class AsyncEngineArgs:  # a keyword given twice raises TypeError, as vLLM's does
        model: str
        enable_prefix_caching: bool | None = None
        max_model_len: int | None = None
        revision: str | None = None

    class AsyncLLM:
        @staticmethod
        def from_engine_args(args: AsyncEngineArgs) -> StandInEngine:
            built.append(args)
            return StandInEngine([], max_model_len=args.max_model_len or 32768,
                                 tokenizer=tokenizer)

    modules = {"vllm": SimpleNamespace(AsyncEngineArgs=AsyncEngineArgs),
               "vllm.inputs": SimpleNamespace(tokens_input=tokens_input),
               "vllm.v1": SimpleNamespace(), "vllm.v1.engine": SimpleNamespace(),
               "vllm.v1.engine.async_llm": SimpleNamespace(AsyncLLM=AsyncLLM)}
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    backend = VLLMBackend.from_model("org/model", enable_prefix_caching=False,
                                     max_model_len=2048, revision="abc")
    assert built == [AsyncEngineArgs("org/model", False, 2048, "abc")]
    assert backend.tokenizer is tokenizer and backend.max_model_len == 2048
    assert VLLMBackend.from_model("org/model").engine.model_config.max_model_len == 32768
    assert built[-1].enable_prefix_caching is True


async def test_openai_context_overflow_is_prompt_too_long_and_keeps_token_mode(
        tokenizer) -> None:
    calls: list[str] = []

    def vllm_like(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(400, json={"error": {"message": (
            "This model's maximum context length is 4096 tokens. However, your prompt "
            "contains 5000 input tokens, which exceeds this limit."), "code": 400}})

    backend = OpenAIBackend("http://vllm/v1", "m", tokenizer,
                            transport=httpx.MockTransport(vllm_like))
    with pytest.raises(PromptTooLong, match="maximum context length is 4096"):
        await backend.generate(Prompt([1] * 10), SamplingConfig())
    assert backend.mode == "auto" and calls == ["/v1/completions"]
    with pytest.raises(PromptTooLong, match="fills the 8-token context"):
        await backend.generate(Prompt([1] * 10), SamplingConfig(max_model_len=8))
    assert len(calls) == 1, "a prompt over the configured context is never sent"
    await backend.close()


async def test_openai_token_prompts_and_cached_usage(tokenizer) -> None:
    im_end, im_start = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|im_start|>"])
    bodies: list[dict[str, Any]] = []

    def vllm_like(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        assert request.url.path == "/v1/completions"
        assert request.headers["authorization"] == "Bearer k"
        return httpx.Response(200, json={
            "choices": [{"text": "hi", "token_ids": [5, 6, im_end], "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 3,
                      "prompt_tokens_details": {"cached_tokens": 2}}})

    backend = OpenAIBackend("http://vllm/v1", "m", tokenizer, api_key="k",
                            transport=httpx.MockTransport(vllm_like))
    generation = await backend.generate(Prompt([1, 2, 3]), SamplingConfig(max_new_tokens=9))
    await backend.close()
    assert bodies[0]["prompt"] == [1, 2, 3] and bodies[0]["max_tokens"] == 9
    assert bodies[0]["stop_token_ids"] == [im_end, im_start,
                                           tokenizer.convert_tokens_to_ids("user")]
    assert generation.token_ids == [5, 6] and generation.usage.cached_tokens == 2
    assert backend.mode == "auto"


async def test_openai_endpoint_failures_are_backend_errors(tokenizer) -> None:
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    def html_proxy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>gateway</html>")

    for handler, message in ((unreachable, "connection refused"), (html_proxy, "no JSON")):
        backend = OpenAIBackend("http://vllm/v1", "m", tokenizer, mode="tokens",
                                transport=httpx.MockTransport(handler))
        with pytest.raises(BackendError, match=message):
            await backend.generate(Prompt([1, 2, 3]), SamplingConfig())
        assert not backend.dead
        await backend.close()


async def test_cancelling_the_loop_aborts_the_engine_request(tokenizer) -> None:
    engine = StandInEngine([[1]], hang=True)
    judge = Evaluator(config=EvalConfig(device="cpu", trial_seed=7))
    loop = Loop(vllm_backend(engine, tokenizer), judge)
    events = loop.run(RELU)
    assert isinstance(await anext(events), TurnStarted)
    task = asyncio.create_task(anext(events))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert engine.aborted == ["t-0"]


async def test_new_tokens_fit_the_context_and_an_overlong_prompt_ends_the_loop(
        tokenizer) -> None:
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    engine = StandInEngine([[5, im_end]])
    backend = vllm_backend(engine, tokenizer, max_model_len=10)
    await backend.generate(Prompt([1] * 8), SamplingConfig())
    assert engine.requests[0][1]["max_tokens"] == 2
    with pytest.raises(PromptTooLong):
        await backend.generate(Prompt([1] * 10), SamplingConfig())
    first = backend._chat.first_turn(build_prompt(RELU, load_template()))
    engine.replies = [[5, im_end]]
    backend.max_model_len = len(first.token_ids) + 20  # room for turn 1, not for feedback
    events = await run_loop(backend, LoopConfig(max_turns=3))
    finished = events[-1]
    assert len(finished.turns) == 1
    assert finished.stop_reason == "context_length" and not finished.partial


async def test_transformers_generation_leaves_the_event_loop_free(tiny_model_dir: Path,
                                                                  tokenizer) -> None:
    backend = TransformersBackend.load(str(tiny_model_dir), device="cpu")
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    started = asyncio.get_running_loop().time()
    await backend.generate(Prompt(tokenizer.encode("def f(x):") * 50),
                           SamplingConfig(max_new_tokens=48, temperature=0.0))
    elapsed = asyncio.get_running_loop().time() - started
    ticker.cancel()
    assert ticks >= elapsed / 0.01 / 4


def test_load_backend_forwards_engine_args_to_vllm_only(monkeypatch) -> None:
    built: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(VLLMBackend, "from_model",
                        classmethod(lambda cls, model, **args: built.append((model, args))))
    load_backend("vllm", "org/model", engine_args={"max_model_len": 4096})
    assert built == [("org/model", {"max_model_len": 4096})]
    with pytest.raises(ValueError, match="vllm backend only"):
        load_backend("transformers", "org/model", engine_args={"max_model_len": 4096})
