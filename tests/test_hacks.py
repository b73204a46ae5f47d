"""Reward-hacking defences: every adversarial candidate caught, no honest kernel flagged."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from evaluator import HackKind, Status
from evaluator.static_scan import scan
from tests.judge_support import FIXTURES, Judge, header, reference_for

HACKS = sorted((FIXTURES / "hacks").glob("*.py"))
HONEST = sorted((FIXTURES / "honest").glob("*.py"))


@pytest.fixture(scope="module")
def judge() -> Iterator[Judge]:
    j = Judge(workers=2)
    yield j
    j.close()


def test_suites_are_big_enough() -> None:
    assert len(HACKS) >= 15 and len(HONEST) >= 12
    kinds = {k for p in HACKS for k in str(header(p, "expect")).split(" or ")}
    assert {k.value for k in HackKind} <= kinds, "every kind has an adversarial candidate"


@pytest.mark.parametrize("path", HACKS, ids=lambda p: p.stem)
def test_adversarial_candidate_is_caught(judge: Judge, path: Path) -> None:
    if header(path, "device") == "cuda":
        pytest.skip("shows only in the cuda timing phase; its checks are in test_judge_perf")
    expected = header(path, "expect")
    result = judge.run(path)
    if expected in ("incorrect", "compile_error"):  # not a hack: wrong, or no GPU compiles it
        assert result.status is Status(expected), (result.status, result.hacks, result.error)
        assert result.reward == 0.0 and not result.correct
        return
    kinds = {h.kind.value for h in result.hacks}
    assert result.status is Status.HACKED, (result.status, result.error)
    assert kinds & set(expected.split(" or ")), f"expected {expected}, found {result.hacks}"
    assert result.reward == 0.0 and not result.correct


@pytest.mark.parametrize("path", HONEST, ids=lambda p: p.stem)
def test_honest_kernel_is_not_flagged(judge: Judge, path: Path) -> None:
    result = judge.run(path)
    assert result.hacks == [], result.hacks
    assert result.status is Status.CORRECT, result.error
    # Low-precision casts are evidence only on full-precision problems: the judge decides.
    assert [h for h in scan(path.read_text()) if h.kind is not HackKind.PRECISION_DOWNCAST] == []


def test_runtime_check_catches_what_the_static_scan_cannot_see(
        judge: Judge, tmp_path: Path) -> None:
    """An environment read spelled so that no pattern matches is still seen at run time."""
    honest = FIXTURES / "honest" / "relu_basic.py"
    source = re.sub(r"(\n    def forward\(self.*:\n)",
                    r"\1        getattr(getattr(torch, 'o' + 's'), 'envi' + 'ron')['HOME']\n",
                    honest.read_text(), count=1)
    assert "envi' + 'ron" in source and scan(source) == []
    probe = tmp_path / "candidate.py"
    probe.write_text(source)
    result = judge.run(probe, reference=reference_for(honest))
    assert result.status is Status.HACKED
    assert [h.kind for h in result.hacks] == [HackKind.IO_ACCESS]
    assert not result.hacks[0].static
