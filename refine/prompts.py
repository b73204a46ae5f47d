"""The first user message: an instruction, one worked example, then the reference source."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from evaluator import Problem

REFERENCE_SLOT = "{reference}"


def load_template(path: str | Path | None = None) -> str:
    """The packaged template, or a user's replacement; either must contain `{reference}`."""
    if path is None:
        text = resources.files("refine").joinpath("templates/first_turn.txt").read_text()
    else:
        text = Path(path).read_text()
    if REFERENCE_SLOT not in text:
        raise ValueError(f"prompt template {path or 'first_turn.txt'} has no {REFERENCE_SLOT} slot")
    return text


def build_prompt(problem: Problem, template: str) -> str:
    # str.replace, not str.format: templates hold Python code full of braces.
    return template.replace(REFERENCE_SLOT, problem.reference.strip("\n"))
