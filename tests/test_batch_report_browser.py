"""report.html in a real headless Chromium: no console errors, plots with data, counts as
integers, and no speed plots where speed was not measured."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from server.batch import ProblemRecord, TurnRecord, render_report

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# Every chart's marks: line points, bars, and the text of each bar's value label.
MARKS = """() => [...document.querySelectorAll('svg')].map(svg => ({
  title: svg.getAttribute('aria-label'),
  points: [...svg.querySelectorAll('circle')].length,
  bars: [...svg.querySelectorAll('rect')].filter(r => +r.getAttribute('width') > 12).length,
  labels: [...svg.querySelectorAll('text')].map(t => t.textContent),
}))"""


def record(name: str, statuses: list[str], speedups: list[float | None]) -> ProblemRecord:
    turns = [TurnRecord(i + 1, 0, s, x, 0.5 if s == "correct" else 0.0, 10)
             for i, (s, x) in enumerate(zip(statuses, speedups, strict=True))]
    best = next((t for t in reversed(turns) if t.correct), None)
    return ProblemRecord(name, f"{name}.py", "correct" if best else "failed", turns,
                         best.turn if best else None, best.speedup if best else None)


def open_in_chromium(html: str, tmp_path: Path) -> tuple[list[str], list[dict[str, Any]], str]:
    page_file = tmp_path / "report.html"
    page_file.write_text(html, encoding="utf-8")
    errors: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(user_agent="drkernel-test")
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_file.as_uri())
            charts = page.evaluate(MARKS)
            text = page.inner_text("body")
        finally:
            browser.close()
    return errors, charts, text


def test_a_cuda_batch_report_has_speed_plots_with_data(tmp_path: Path) -> None:
    records = [record("relu", ["incorrect", "correct"], [None, 1.4]),
               record("gelu", ["correct", "correct"], [0.8, 2.1]),
               record("conv", ["compile_error"], [None])]
    errors, charts, text = open_in_chromium(render_report(records), tmp_path)
    assert errors == []
    by_title = {c["title"]: c for c in charts}
    assert by_title["fast_p by turn"]["points"] == 2 * 5
    assert by_title["best speedup per problem"]["bars"] == 2
    outcomes = by_title["problem outcomes"]
    assert outcomes["bars"] == 2 and {"1", "2"} <= set(outcomes["labels"])
    assert not any("." in label for label in outcomes["labels"] if label[:1].isdigit())
    assert "3 problems" in text and "5 turns" in text


def test_a_cpu_batch_report_says_speed_was_not_measured(tmp_path: Path) -> None:
    records = [record("relu", ["incorrect", "correct"], [None, None])]
    errors, charts, text = open_in_chromium(render_report(records), tmp_path)
    assert errors == []
    titles = [c["title"] for c in charts]
    assert "best speedup per problem" not in titles
    [line] = [c for c in charts if "by turn" in c["title"]]
    assert line["points"] == 2, "one series (correct), not five stacked at 0 %"
    assert "Speed was not measured" in text
    assert "1 problem ·" in text and "1 with a correct kernel" in text
