"""Dr.Kernel's test-time window: the consecutive turns with the highest summed reward."""

from __future__ import annotations

from collections.abc import Sequence


def select_window(rewards: Sequence[float], size: int) -> range:
    """Indices of the best `size` consecutive turns; the earliest window wins ties."""
    if size < 1:
        raise ValueError(f"window size must be at least 1, got {size}")
    if len(rewards) <= size:
        return range(len(rewards))
    best_start = max(range(len(rewards) - size + 1),
                     key=lambda start: (sum(rewards[start:start + size]), -start))
    return range(best_start, best_start + size)
