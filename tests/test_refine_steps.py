"""The loop's pure steps: prompt, feedback, best pick, window, chat token appending."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from evaluator import ErrorInfo, EvalResult, Hack, HackKind, KernelRow, Problem, Profile, Status
from refine import (
    ChatFormat,
    Turn,
    build_prompt,
    load_template,
    pick_best,
    render_feedback,
    select_window,
)
from refine.best import pick_context
from refine.extraction import extract_code

REFERENCE = "class Model:\n    def forward(self, x):\n        return {'x': x}\n"


def _turn(turn: int, status: Status, speedup: float | None = None, reward: float = 0.0,
          sample: int = 0, hacks: list[Hack] | None = None) -> Turn:
    result = EvalResult(status=status, speedup=speedup, hacks=hacks or [])
    return Turn(turn, sample, f"response {turn}", "code", result, reward)


def test_prompt_holds_reference_verbatim() -> None:
    prompt = build_prompt(Problem(REFERENCE), load_template())
    assert REFERENCE.strip() in prompt
    assert "ModelNew" in prompt and "{reference}" not in prompt


def test_user_template_without_slot_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("no slot here")
    with pytest.raises(ValueError, match="reference"):
        load_template(tmp_path / "t.txt")
    (tmp_path / "ok.txt").write_text("Rewrite:\n{reference}\n")
    assert build_prompt(Problem("X = 1"), load_template(tmp_path / "ok.txt")) == "Rewrite:\nX = 1\n"


def test_compile_error_text_reaches_both_formats() -> None:
    result = EvalResult(status=Status.COMPILE_ERROR, error=ErrorInfo(
        "CompilationError", "at 4:8: unsupported op tl.foo", "File candidate.py, line 4"))
    kernelgym = render_feedback(result, 0.0, "kernelgym")
    state = json.loads(kernelgym[kernelgym.index("{"):kernelgym.rindex("}") + 1])
    assert (state["status"], state["compiled"], state["correctness"]) == ("failed", False, False)
    assert state["error_message"] == "CompilationError: at 4:8: unsupported op tl.foo"
    assert state["metadata"]["compilation_error"] == "File candidate.py, line 4"
    assert "ModelNew" in kernelgym
    concise = render_feedback(result, 0.0, "concise")
    assert "Status: compile_error" in concise
    assert "CompilationError: at 4:8: unsupported op tl.foo" in concise


def test_concise_feedback_shows_numbers_kernels_and_hacks() -> None:
    result = EvalResult(
        status=Status.HACKED, trials_passed=5, trials_total=5, max_abs_diff=1e-6,
        ref_ms=2.0, kernel_ms=1.0, speedup=2.0,
        profile=Profile(kernels=[KernelRow("relu_kernel", 12.5, 3, own=True),
                                 KernelRow("aten::addmm", 99.0, 1)]),
        hacks=[Hack(HackKind.OUTPUT_CACHING, "same output object on two calls")])
    text = render_feedback(result, 0.0, "concise")
    assert "5/5 trials passed" in text
    assert "speedup 2.000x" in text
    assert text.index("aten::addmm") < text.index("relu_kernel (yours)")
    assert "Rejected (output_caching): same output object on two calls" in text


def test_format_error_feedback() -> None:
    text = render_feedback(None, 0.0, "kernelgym")
    state = json.loads(text[text.index("{"):text.rindex("}") + 1])
    assert state == {"reward": 0.0, "score": 0.0, "success": False, "correctness": False,
                     "compiled": False, "speedup": 0.0,
                     "error": "Client validation failed: missing class ModelNew",
                     "status": "failed",
                     "error_message": "Client validation failed: missing class ModelNew"}
    assert "Status: format_error" in render_feedback(None, 0.0, "concise")


def test_best_is_fastest_correct_and_earliest_on_ties() -> None:
    turns = [
        _turn(1, Status.INCORRECT, 5.0),
        _turn(2, Status.CORRECT, 1.5),
        _turn(3, Status.HACKED, 9.0, hacks=[Hack(HackKind.DECOY, "no launch")]),
        _turn(4, Status.CORRECT, 1.5),
        _turn(5, Status.CORRECT, 1.2),
    ]
    best = pick_best(turns)
    assert best is not None and best.turn == 2


def test_best_on_cpu_is_first_correct() -> None:
    turns = [_turn(1, Status.RUNTIME_ERROR), _turn(2, Status.CORRECT), _turn(3, Status.CORRECT)]
    best = pick_best(turns)
    assert best is not None and best.turn == 2
    assert pick_best([_turn(1, Status.INCORRECT)]) is None


def test_context_continues_from_highest_reward_sample() -> None:
    samples = [_turn(1, Status.INCORRECT, reward=0.0, sample=0),
               _turn(1, Status.CORRECT, reward=0.5, sample=1),
               _turn(1, Status.CORRECT, reward=0.5, sample=2)]
    assert pick_context(samples).sample == 1


def test_window_has_highest_summed_reward() -> None:
    assert select_window([0.0, 0.0, 1.0, 0.5, 0.0], 2) == range(2, 4)
    assert select_window([1.0, 0.0, 0.0, 1.0], 2) == range(0, 2)  # earliest on ties
    assert select_window([0.3, 0.2], 4) == range(0, 2)


@pytest.fixture(scope="module")
def chat(tiny_model_dir: Path) -> ChatFormat:
    return ChatFormat(AutoTokenizer.from_pretrained(tiny_model_dir))


def test_chat_turns_append_tokens(chat: ChatFormat) -> None:
    first = chat.first_turn("optimize this")
    response_ids = chat.encode("```python\nx = 1\n```")
    second = chat.next_turn(first, response_ids, "```python\nx = 1\n```", "it failed")
    assert second.token_ids[:len(first.token_ids) + len(response_ids)] == [
        *first.token_ids, *response_ids]
    text = chat.tokenizer.decode(second.token_ids)
    assert text.endswith("x = 1\n```<|im_end|>\n<|im_start|>user\nit failed<|im_end|>\n"
                         "<|im_start|>assistant\n")
    assert [m["role"] for m in second.messages] == ["user", "assistant", "user"]


def test_chat_strips_only_a_trailing_stop_token(chat: ChatFormat) -> None:
    im_end, im_start, user = chat.stop_token_ids  # this vocabulary has no "assistant" token
    assert chat.tokenizer.convert_ids_to_tokens(user) == "user"
    assert chat.strip_stop([5, user]) == ([5], True)
    assert chat.strip_stop([5, 6, im_end]) == ([5, 6], True)
    assert chat.strip_stop([5, im_start]) == ([5], True)
    assert chat.strip_stop([im_end, 5]) == ([im_end, 5], False)


def test_chat_strips_any_end_of_sequence_id(tiny_model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    endoftext = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    chat = ChatFormat(tokenizer, eos_token_ids=[endoftext])
    assert chat.strip_stop([5, 6, endoftext]) == ([5, 6], True)
    assert chat.strip_stop([5, tokenizer.eos_token_id]) == ([5], True)


def test_code_extraction_as_upstream() -> None:
    model_new = "class ModelNew(nn.Module):\n    pass"
    assert extract_code(f"```python\nx = 1\n```\nthen\n```\n{model_new}\n```") == \
        model_new + "\n"
    assert extract_code(f"```cpp\n{model_new}\n```") == model_new + "\n"  # any language
    assert extract_code(f"import torch\n{model_new}\n") == f"import torch\n{model_new}\n"
    assert extract_code(f"```python\n{model_new}\n```\n```\nprint(1)\n```") is None
    assert extract_code("no code here") is None
