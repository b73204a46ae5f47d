"""Batch test helpers: a scripted backend that answers each problem from its own script."""

from __future__ import annotations

from pathlib import Path

from refine.backends import BackendError, Generation
from refine.backends.scripted import ScriptedBackend
from refine.chat import Prompt
from refine.config import SamplingConfig

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def source(name: str) -> str:
    return (EXAMPLES / name).read_text()


def answer(code: str) -> str:
    return f"Here is the kernel.\n```python\n{code}```\n"


class ScriptedByProblem:
    """Replays each problem's responses; the problem is recognised by its reference source,
    which the first prompt quotes."""

    name = "scripted"
    dead = False

    def __init__(self, tokenizer: object, scripts: dict[str, list[str]]):
        """`scripts` maps an example folder (`relu`) to the responses for its reference."""
        self.tokenizer = tokenizer
        self.scripts = {source(f"{folder}/reference.py").strip(): ScriptedBackend(tokenizer, r)
                        for folder, r in scripts.items()}

    async def generate(self, prompt: Prompt, sampling: SamplingConfig) -> Generation:
        first = prompt.messages[0]["content"]
        for reference, backend in self.scripts.items():
            if reference in first:
                return await backend.generate(prompt, sampling)
        raise BackendError("no script for this problem")

    def calls(self) -> int:
        return sum(len(b.prompts) for b in self.scripts.values())

    async def close(self) -> None:
        return None


def scripted_backend(tokenizer_dir: str, scripts: dict[str, list[str]]) -> ScriptedByProblem:
    """For Ray actors: builds the backend where it runs."""
    from transformers import AutoTokenizer

    return ScriptedByProblem(AutoTokenizer.from_pretrained(tokenizer_dir), scripts)
