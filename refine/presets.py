"""Named bundles of settings that reproduce a published protocol.

Keys are the dotted keys of the server's settings (`loop.*`, `reward.*`, `evaluator.*`), so
the same preset applies to `drkernel serve`/`batch` settings and to `drkernel optimize`;
`--set` and explicit flags still override it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    settings: Mapping[str, Any]
    turns: int
    """Turns one problem takes under this protocol (the batch's `--turns`)."""

    def section(self, prefix: str) -> dict[str, Any]:
        """The settings under `prefix` (`loop`, `reward`, `evaluator`), keys relative to it."""
        head = prefix + "."
        return {k[len(head):]: v for k, v in self.settings.items() if k.startswith(head)}


_DRKERNEL_14B = {
    # KernelGYM's evaluation of Dr.Kernel-14B (drkernel-14b-maxturns3.sh, kernel_grading.yaml):
    # 3 turns, full history, the training feedback, T=1.0, top_p=0.95, at most 8192 new
    # tokens per turn within a 28672-token context, the profiling reward off, decoys the
    # only hard failure. The chat template is the checkpoint's own, applied without
    # `enable_thinking`, as upstream does; stop ids 872, 77091, <|im_end|>, <|im_start|>
    # are always on (refine.chat.QWEN3_STOP_TOKENS).
    "loop.max_turns": 3,
    "loop.history": "all",
    "loop.feedback_format": "kernelgym",
    "loop.sampling.temperature": 1.0,
    "loop.sampling.top_p": 0.95,
    "loop.sampling.max_new_tokens": 8192,
    "loop.sampling.max_model_len": 28672,
    "reward.coverage_reward": False,
    "evaluator.policy": "kernelgym",
}

PRESETS: dict[str, Preset] = {
    "drkernel-14b": Preset(
        "drkernel-14b", "Dr.Kernel-14B's 3-turn evaluation protocol", _DRKERNEL_14B, turns=3),
    "drkernel-stts": Preset(
        "drkernel-stts",
        "Dr.Kernel's sequential test-time scaling: a 5-turn episode, then 9 iterations of "
        "one turn each from the best window of 4 turns (14 turns)",
        _DRKERNEL_14B | {"loop.history": "window", "loop.episode_turns": 5,
                         "loop.window_turns": 4, "loop.iterations": 10},
        turns=14),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}"
                         ) from None


def with_settings(obj: T, settings: Mapping[str, Any]) -> T:
    """`obj` (a dataclass) with dotted `settings` applied, nested dataclasses included;
    a key the dataclass does not have is skipped (an older evaluator without `policy`)."""
    changes: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    names = {f.name for f in dataclasses.fields(obj)}  # type: ignore[arg-type]
    for key, value in settings.items():
        head, _, rest = key.partition(".")
        if head not in names:
            continue
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            changes[head] = value
    for head, sub in nested.items():
        changes[head] = with_settings(getattr(obj, head), sub)
    return dataclasses.replace(obj, **changes)  # type: ignore[type-var]
