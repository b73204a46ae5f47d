"""The refinement loop: prompts, feedback, code extraction, generation backends, turn policy.

Imports `evaluator`; knows nothing of gRPC or `server`.
"""

from refine.backends.protocol import Backend, BackendError, Generation
from refine.best import is_better, is_valid, pick_best
from refine.chat import ChatFormat, Prompt
from refine.config import FeedbackFormat, History, LoopConfig, SamplingConfig
from refine.events import (
    BestUpdated,
    Evaluated,
    Event,
    Finished,
    Generated,
    Turn,
    TurnStarted,
    Usage,
)
from refine.feedback import render_feedback
from refine.loop import Judge, Loop
from refine.prompts import build_prompt, load_template
from refine.transcript import transcript
from refine.window import select_window

__all__ = [
    "Backend",
    "BackendError",
    "BestUpdated",
    "ChatFormat",
    "Evaluated",
    "Event",
    "FeedbackFormat",
    "Finished",
    "Generated",
    "Generation",
    "History",
    "Judge",
    "Loop",
    "LoopConfig",
    "Prompt",
    "SamplingConfig",
    "Turn",
    "TurnStarted",
    "Usage",
    "build_prompt",
    "is_better",
    "is_valid",
    "load_template",
    "pick_best",
    "render_feedback",
    "select_window",
    "transcript",
]
