"""What Dr.Kernel sees and how its turns are ranked, pinned against the fidelity review
(KernelGYM's multi_turn_kernel.yaml, its evaluation response, the paper's Fig. 14)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from evaluator import (
    EvalResult,
    Hack,
    HackKind,
    KernelRow,
    OpWork,
    Problem,
    Profile,
    Status,
)
from refine import Finished, Loop, LoopConfig, TurnStarted, render_feedback
from refine.backends import PromptTooLong
from refine.backends.scripted import ScriptedBackend
from refine.presets import PRESETS, get_preset, with_settings

module_loop = pytest.mark.asyncio(loop_scope="module")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
RELU = Problem((EXAMPLES / "relu/reference.py").read_text(), "relu")
SOLUTION = (EXAMPLES / "relu/solution.py").read_text()
WRONG = (EXAMPLES / "relu/wrong_mask.py").read_text()
COMPILE_ERROR = (EXAMPLES / "broken/syntax_error.py").read_text()
WRAPPER_HEAD = (
    "Now you have received the server feedback for your last implementation. Based on that "
    "and all your previous responses, improve the implementation.\n\nHere is the server "
    "feedback. Please refer to this feedback to improve the implementation:\nServer feedback "
    "(status/metrics/errors):\n")
WRAPPER_TAIL = ("\n\nReturn an improved Triton implementation named `ModelNew` as a single "
                "```python``` block. Let's think step by step.\n")
RESPONSE_KEYS = ["status", "compiled", "correctness", "decoy_kernel", "reference_runtime",
                 "kernel_runtime", "speedup", "metadata", "error_message", "processing_time",
                 "reward", "score", "success", "profiling", "num_custom_kernel",
                 "num_total_kernels", "custom_kernel_cuda_time_in_profiling_us",
                 "total_kernel_run_time_in_profiling_us"]


def answer(code: str) -> str:
    return f"Let me think.\n```python\n{code}```\n"


def feedback_state(message: str) -> dict[str, Any]:
    assert message.startswith(WRAPPER_HEAD) and message.endswith(WRAPPER_TAIL)
    state: dict[str, Any] = json.loads(message[len(WRAPPER_HEAD):-len(WRAPPER_TAIL)])
    return state


@module_loop
async def test_three_turn_conversation_has_the_training_structure(tokenizer,
                                                                   evaluator) -> None:
    responses = [answer(COMPILE_ERROR), answer(WRONG), answer(SOLUTION)]
    backend = ScriptedBackend(tokenizer, responses)
    events = [e async for e in Loop(backend, evaluator, LoopConfig(max_turns=3)).run(RELU)]
    assert isinstance(events[-1], Finished) and events[-1].best is not None
    messages = backend.prompts[2].messages
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert [messages[1]["content"], messages[3]["content"]] == responses[:2]

    first = messages[0]["content"]
    sections = ["You write custom Triton kernels", "replace some of them with custom Triton "
                "kernels and keep the others", "The given example architecture:\n\n```\n",
                "torch.randn(1, 128).cuda()", "rewritten with a custom Triton kernel:\n\n```\n",
                "def triton_add(", "You are given the following architecture:\n\n```\n"
                + RELU.reference.strip("\n") + "\n```\n\n", "Optimize the architecture named "
                "Model with custom Triton operators", "Let's think step by step.\n"]
    positions = [first.index(s) for s in sections]
    assert positions == sorted(positions) and first.endswith(sections[-1])
    assert "```python" not in first  # bare fences, as in the training prompt

    compile_state, wrong_state = (feedback_state(messages[i]["content"]) for i in (2, 4))
    assert list(wrong_state) == RESPONSE_KEYS
    assert (compile_state["status"], compile_state["compiled"]) == ("failed", False)
    assert "compilation_error" in compile_state["metadata"]
    assert compile_state["error_message"]
    assert (wrong_state["status"], wrong_state["compiled"], wrong_state["correctness"]) == (
        "completed", True, False)
    assert wrong_state["metadata"]["correctness_issue"] == "Output mismatch"
    assert wrong_state["metadata"]["correctness_trials"].startswith("(")
    assert (wrong_state["reward"], wrong_state["speedup"], wrong_state["kernel_runtime"]) == (
        0.0, 0.0, -1.0)

    text = tokenizer.decode(backend.prompts[2].token_ids)
    assert "<|im_start|>system" not in text
    assert text.count("<|im_start|>user\n") == 3 and text.count("<|im_start|>assistant\n") == 3
    assert text.endswith(WRAPPER_TAIL + "<|im_end|>\n<|im_start|>assistant\n")


def test_correct_verdict_keeps_kernelgym_shape_and_adds_our_findings() -> None:
    result = EvalResult(
        status=Status.CORRECT, compiled=True, correct=True, trials_passed=5, trials_total=5,
        max_abs_diff=1e-6, ref_ms=2.0, kernel_ms=1.0, speedup=2.0, device="cuda",
        findings=[Hack(HackKind.FRAMEWORK_COMPUTE, "the forward ran torch convolution")],
        policy="kernelgym", trial_seed=1234,
        profile=Profile(kernels=[KernelRow("relu_kernel", 30.0, 10, own=True),
                                 KernelRow("aten::conv2d", 70.0, 10)],
                        triton_launches=["relu_kernel"], triton_time_coverage=0.3,
                        torch_compute_ops=["aten.convolution"],
                        torch_work=[OpWork("aten.convolution", 0.7)], triton_work_share=0.3))
    state = feedback_state(render_feedback(result, 1.5, "kernelgym"))
    assert list(state) == RESPONSE_KEYS
    assert (state["status"], state["correctness"], state["decoy_kernel"]) == (
        "completed", True, False)
    assert (state["reference_runtime"], state["kernel_runtime"], state["speedup"]) == (
        2.0, 1.0, 2.0)
    assert (state["reward"], state["score"], state["success"]) == (1.5, 1.5, True)
    assert (state["num_custom_kernel"], state["num_total_kernels"]) == (1, 2)
    assert state["custom_kernel_cuda_time_in_profiling_us"] == 30.0
    meta = state["metadata"]
    assert meta["triton_profiler_matches"] == ["relu_kernel"]
    assert meta["triton_kernel_coverage"] == ("Run 1 custom kernels / Total 2 kernels, "
                                              "Coverage: 50.00%")
    assert meta["profiling"]["kernels"][0] == {"name": "aten::conv2d", "cuda_time_us": 70.0,
                                               "count": 10}
    # Partial work is named, not failed; the evaluation's own bookkeeping stays out.
    assert meta["torch_compute_ops"] == ["aten.convolution"]
    assert meta["torch_work"] == [{"op": "aten.convolution", "share": 0.7}]
    assert meta["triton_work_share"] == 0.3
    assert meta["judge_findings"] == ["framework_compute: the forward ran torch convolution"]
    assert "trial_seed" not in meta and "policy" not in meta
    hacked = EvalResult(status=Status.HACKED, compiled=True,
                        hacks=[Hack(HackKind.DECOY, "no Triton launch in the forward")])
    state = feedback_state(render_feedback(hacked, 0.0, "kernelgym"))
    assert state["decoy_kernel"] is True
    assert state["metadata"]["hack_evidence"] == ["decoy: no Triton launch in the forward"]


class CoverageJudge:
    """Stands in for a GPU judge: the CPU one measures neither speed nor device coverage."""

    def __init__(self, verdicts: list[tuple[float, float]]):
        self.verdicts = verdicts

    async def evaluate(self, problem: Problem, candidate: str) -> EvalResult:
        speedup, coverage = self.verdicts.pop(0)
        return EvalResult(status=Status.CORRECT, compiled=True, correct=True, speedup=speedup,
                          profile=Profile(triton_time_coverage=coverage))


@module_loop
async def test_window_is_ranked_without_the_coverage_term(tokenizer) -> None:
    # Rewards with coverage: 0.5+0.5*1.0+0.5*1.0 = 1.5 for turn 1, 0.5+0.5*1.2 = 1.1 for
    # turn 2; without it 1.0 and 1.1, so the window of one keeps turn 2.
    backend = ScriptedBackend(tokenizer, [answer(f"# {i}\nclass ModelNew: pass\n")
                                          for i in range(3)])
    judge = CoverageJudge([(1.0, 1.0), (1.2, 0.0), (1.0, 0.0)])
    config = LoopConfig(history="window", episode_turns=2, window_turns=1, iterations=2)
    events = [e async for e in Loop(backend, judge, config).run(RELU)]
    done = events[-1]
    assert isinstance(done, Finished) and [t.reward for t in done.turns][:2] == [1.5, 1.1]
    third = [m["content"] for m in backend.prompts[2].messages if m["role"] == "assistant"]
    assert third == [backend.responses[1]]


@module_loop
async def test_an_overlong_prompt_in_window_mode_starts_the_next_iteration(tokenizer,
                                                                          evaluator) -> None:
    responses: list[Any] = [answer(WRONG), answer(SOLUTION), "none 3",
                            PromptTooLong("prompt of 900 tokens fills the 800-token context"),
                            "none 4", "none 5"]
    backend = ScriptedBackend(tokenizer, responses)
    config = LoopConfig(history="window", episode_turns=4, window_turns=2, iterations=3)
    events = [e async for e in Loop(backend, evaluator, config).run(RELU)]
    started = [(e.turn, e.iteration) for e in events if isinstance(e, TurnStarted)]
    assert started == [(1, 1), (2, 1), (3, 1), (4, 1), (4, 2), (5, 3)]
    done = events[-1]
    assert isinstance(done, Finished) and done.stop_reason == "max_turns" and not done.partial
    assert [t.turn for t in done.turns] == [1, 2, 3, 4, 5]
    kept = [m["content"] for m in backend.prompts[4].messages if m["role"] == "assistant"]
    assert kept == [responses[0], responses[1]]


@module_loop
async def test_a_first_turn_prompt_from_data_is_used_verbatim(tokenizer, evaluator) -> None:
    backend = ScriptedBackend(tokenizer, ["no code"])
    prompt = "Exact training prompt:\n```\n" + RELU.reference + "```\n"
    loop = Loop(backend, evaluator, LoopConfig(max_turns=1))
    done = [e async for e in loop.run(RELU, prompt=prompt)][-1]
    assert isinstance(done, Finished) and done.prompt == prompt
    assert backend.prompts[0].messages == [{"role": "user", "content": prompt}]


def test_presets_hold_the_upstream_defaults() -> None:
    loop = with_settings(LoopConfig(), get_preset("drkernel-14b").section("loop"))
    sampling = loop.sampling
    assert (loop.max_turns, loop.history, loop.feedback_format) == (3, "all", "kernelgym")
    assert (sampling.temperature, sampling.top_p, sampling.max_new_tokens,
            sampling.max_model_len) == (1.0, 0.95, 8192, 28672)
    assert get_preset("drkernel-14b").section("reward") == {"coverage_reward": False}
    stts = PRESETS["drkernel-stts"]
    loop = with_settings(LoopConfig(), stts.section("loop"))
    assert (loop.history, loop.episode_turns, loop.window_turns, loop.iterations) == (
        "window", 5, 4, 10)
    assert stts.turns == 5 + 9
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("gpt-5")


@module_loop
async def test_an_overlong_window_ends_the_session(tokenizer, evaluator) -> None:
    overflow = PromptTooLong("prompt of 900 tokens fills the 800-token context")
    backend = ScriptedBackend(tokenizer, ["none 1", "none 2", "none 3", overflow, overflow,
                                          "never asked"])
    config = LoopConfig(history="window", episode_turns=4, window_turns=2, iterations=4)
    events = [e async for e in Loop(backend, evaluator, config).run(RELU)]
    started = [(e.turn, e.iteration) for e in events if isinstance(e, TurnStarted)]
    assert started == [(1, 1), (2, 1), (3, 1), (4, 1), (4, 2)]
    done = events[-1]
    assert isinstance(done, Finished) and done.stop_reason == "context_length"
    assert len(backend.prompts) == 5
