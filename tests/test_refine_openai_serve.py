"""The `openai` backend against a real `transformers serve` of the tiny model on loopback."""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from transformers import AutoTokenizer

from evaluator import EvalConfig, Evaluator, Problem
from refine import Evaluated, Loop, LoopConfig, Prompt, SamplingConfig
from refine.backends import PromptTooLong
from refine.backends.openai_api import OpenAIBackend
from server.commands import optimize

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
RELU = Problem((EXAMPLES / "relu/reference.py").read_text(), "relu")
STARTUP_S = 120
SHORT_CONTEXT = 1600


def optimize_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="drkernel")
    optimize.add_parser(parser.add_subparsers())
    return parser.parse_args(["optimize", *argv])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def served(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _serve(tiny_model_dir, tmp_path_factory)


@pytest.fixture(scope="module")
def short_context(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[str]:
    """A context that holds turn 1 (a 1488-token prompt) but not turn 2's feedback."""
    yield from _serve(tiny_model_dir, tmp_path_factory, "--max-model-len", str(SHORT_CONTEXT))


def _serve(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory,
           *extra: str) -> Iterator[str]:
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    command = [str(Path(sys.executable).parent / "transformers"), "serve", str(tiny_model_dir),
               "--host", "127.0.0.1", "--port", str(port), "--device", "cpu", *extra]
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_ready(base_url, process, log)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"transformers serve exited {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{base_url}/models", timeout=1).is_success:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    pytest.fail(f"transformers serve not ready after {STARTUP_S}s:\n{log.read_text()}")


async def test_generates_through_chat_when_token_prompts_are_refused(
        served: str, tiny_model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    backend = OpenAIBackend(served, str(tiny_model_dir), tokenizer)
    prompt = Prompt(tokenizer.encode("hi", add_special_tokens=False),
                    [{"role": "user", "content": "hi"}])
    try:
        generation = await backend.generate(prompt, SamplingConfig(max_new_tokens=6, seed=1))
    finally:
        await backend.close()
    assert backend.mode == "chat"
    assert 0 < generation.usage.generated_tokens <= 6
    assert generation.usage.prompt_tokens > 0
    assert generation.finish_reason in ("stop", "length")
    assert generation.token_ids == tokenizer.encode(generation.text, add_special_tokens=False)


async def test_loop_runs_turns_over_http(served: str, tiny_model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    backend = OpenAIBackend(served, str(tiny_model_dir), tokenizer, mode="chat")
    evaluator = Evaluator(workers=1, config=EvalConfig(device="cpu", trial_seed=7))
    config = LoopConfig(max_turns=2, feedback_format="concise",
                        sampling=SamplingConfig(max_new_tokens=8))
    try:
        events = [e async for e in Loop(backend, evaluator, config).run(RELU)]
    finally:
        await backend.close()
        await evaluator.close()
    turns = [e.turn for e in events if isinstance(e, Evaluated)]
    assert [t.turn for t in turns] == [1, 2]
    assert all(t.format_error and 0 < t.usage.generated_tokens <= 8 for t in turns)


def test_optimize_over_an_overflowing_endpoint_keeps_its_turns(
        short_context: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    args = optimize_args([str(EXAMPLES / "relu/reference.py"), "--backend", "openai",
                          "--base-url", short_context, "--model", str(tiny_model_dir),
                          "--device", "cpu", "--turns", "3", "--max-new-tokens", "8",
                          "--workers", "1", "--out", str(tmp_path)])
    assert optimize.run(args) == 1  # no correct kernel, and no traceback
    record = json.loads((tmp_path / "transcript.json").read_text())
    assert record["stop_reason"] == "context_length" and not record["partial"]
    assert [t["turn"] for t in record["turns"]] == [1]
    assert record["turns"][0]["feedback"].startswith("Now you have received")


async def test_an_overflow_is_prompt_too_long_and_the_backend_stays_usable(
        short_context: str, tiny_model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    backend = OpenAIBackend(short_context, str(tiny_model_dir), tokenizer, mode="chat")
    text = "word " * SHORT_CONTEXT
    long = Prompt(tokenizer.encode(text), [{"role": "user", "content": text}])
    short = Prompt(tokenizer.encode("hi"), [{"role": "user", "content": "hi"}])
    try:
        with pytest.raises(PromptTooLong, match="takes at most 1600"):
            await backend.generate(long, SamplingConfig(max_new_tokens=4))
        generation = await backend.generate(short, SamplingConfig(max_new_tokens=4))
    finally:
        await backend.close()
    assert 0 < generation.usage.generated_tokens <= 4
