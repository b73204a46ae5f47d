"""A finished session as one JSON-ready dict: the prompt, every turn, the best one."""

from __future__ import annotations

import dataclasses
from typing import Any

from refine.config import LoopConfig
from refine.events import Finished, Turn


def turn_dict(turn: Turn) -> dict[str, Any]:
    return {
        "turn": turn.turn,
        "sample": turn.sample,
        "response": turn.response,
        "code": turn.code,
        "format_error": turn.format_error,
        "result": turn.result.to_dict() if turn.result else None,
        "reward": turn.reward,
        "feedback": turn.feedback,
        "finish_reason": turn.finish_reason,
        "usage": dataclasses.asdict(turn.usage),
        "generate_s": turn.generate_s,
        "evaluate_s": turn.evaluate_s,
    }


def transcript(finished: Finished, config: LoopConfig, **meta: Any) -> dict[str, Any]:
    best = finished.best
    return {
        **meta,
        "config": dataclasses.asdict(config),
        "prompt": finished.prompt,
        "turns": [turn_dict(t) for t in finished.turns],
        "best": {"turn": best.turn, "sample": best.sample} if best else None,
        "stop_reason": finished.stop_reason,
        "partial": finished.partial,
        "error": finished.error,
        "usage": dataclasses.asdict(finished.usage),
        "elapsed_s": finished.elapsed_s,
    }
