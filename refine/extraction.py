"""Code extraction as Dr.Kernel's trainer does it (`kernel_reward.py`, `reward_client.py`):
the last fenced block of any language, else the whole response, then a `class ModelNew`
check; a response that fails the check is never sent to the judge."""

from __future__ import annotations

import re

_FENCE = re.compile(r"```(?:\w+)?\s*\n?(.*?)```", re.DOTALL)


def extract_code(text: str) -> str | None:
    """The candidate source in a response, or None when it defines no `class ModelNew`."""
    blocks = _FENCE.findall(text)
    code = (blocks[-1] if blocks else text).strip()
    if "class ModelNew" not in code:
        return None
    return code + "\n"
