"""scripts/gpu-check, the parts that run without a GPU: arguments, wheels, verdicts, table."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load() -> ModuleType:
    path = ROOT / "scripts" / "gpu-check"
    loader = importlib.machinery.SourceFileLoader("gpu_check", str(path))
    spec = importlib.util.spec_from_loader("gpu_check", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up
    loader.exec_module(module)
    return module


gpu_check = _load()


def test_defaults_fit_the_eight_minute_run() -> None:
    args = gpu_check.parse([])
    assert args.device == "cuda" and args.workers == 1 and args.budget_s < 8 * 60
    assert args.platforms == ["manylinux2014_x86_64", "manylinux_2_28_x86_64"]
    assert args.download_wheels is None


def test_wheel_folder_comes_from_flag_or_environment(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    assert gpu_check.parse(["--wheels", str(tmp_path)]).wheels == tmp_path
    monkeypatch.setenv("DRKERNEL_WHEELS", str(tmp_path / "w"))
    assert gpu_check.parse([]).wheels == tmp_path / "w"


@pytest.mark.parametrize("argv", [["--workers", "0"], ["--repeats", "1"],
                                  ["--budget-s", "0"], ["--device", "tpu"],
                                  ["--perf-trials", "0"]])
def test_bad_arguments_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        gpu_check.parse(argv)
    assert exc.value.code == 2


def test_requirements_leave_out_what_the_host_brings() -> None:
    reqs = gpu_check.requirements()
    names = {gpu_check._name(r) for r in reqs}
    assert {"structlog", "pydantic", "grpcio-tools", "grpcio-health-checking",
            "grpcio-reflection"} <= names
    assert not names & {"torch", "triton", "numpy"}


def test_wheel_commands_work_offline_on_the_host(tmp_path: Path) -> None:
    down = gpu_check.download_command(tmp_path, ["structlog>=24.1"], "3.11",
                                      ["manylinux2014_x86_64"])
    assert down[1:4] == ["-m", "pip", "download"] and "--only-binary=:all:" in down
    assert down[down.index("--python-version") + 1] == "3.11" and down[-1] == "structlog>=24.1"
    install = gpu_check.install_command(tmp_path, ["structlog>=24.1"])
    assert "--no-index" in install and install[install.index("--find-links") + 1] == str(tmp_path)


def test_nothing_is_missing_in_the_development_venv() -> None:
    assert gpu_check.missing(gpu_check.requirements()) == []
    assert gpu_check.missing(["surely-not-installed-pkg>=1"]) == ["surely-not-installed-pkg>=1"]


def test_without_a_gpu_it_stops_with_a_hint(capsys: pytest.CaptureFixture[str]) -> None:
    assert gpu_check.main(["--limit", "1"]) == 2
    assert "--device cpu" in capsys.readouterr().err


def test_cases_cover_examples_and_suites() -> None:
    cases = gpu_check.example_cases(None)
    assert len(cases["solutions"]) >= 10 and cases["wrong"] and cases["broken"]
    assert all(expected == "correct" for _, _, expected in cases["solutions"])
    on_cpu = gpu_check.suite_cases("hacks", None, "cpu")
    on_cuda = gpu_check.suite_cases("hacks", None, "cuda")
    assert len(on_cuda) > len(on_cpu) > 50  # the timing tricks are checked on cuda only
    assert all(ref.is_file() for ref, _, _ in on_cuda)


def test_expectations_come_from_expect_or_the_standard_verdict(tmp_path: Path) -> None:
    lazy = tmp_path / "lazy.py"
    lazy.write_text("# verdicts: standard=hacked strict=hacked kernelgym=correct\n")
    honest = tmp_path / "honest.py"
    honest.write_text("# problem: examples/relu/reference.py\n")
    caught = tmp_path / "caught.py"
    caught.write_text("# expect: decoy\n# verdicts: standard=correct\n")
    assert [gpu_check.expectation(p) for p in (lazy, honest, caught)] == [
        "hacked", "correct", "decoy"]


def _result(status: str, hacks: tuple[str, ...] = ()) -> SimpleNamespace:
    return SimpleNamespace(status=SimpleNamespace(value=status),
                           hacks=[SimpleNamespace(kind=SimpleNamespace(value=k)) for k in hacks])


def test_verdicts_are_matched_to_expectations() -> None:
    assert gpu_check.verdict_ok("correct", _result("correct"))
    assert not gpu_check.verdict_ok("correct", _result("correct", ("decoy",)))
    assert gpu_check.verdict_ok("not correct", _result("incorrect"))
    assert gpu_check.verdict_ok("decoy", _result("hacked", ("decoy",)))
    assert gpu_check.verdict_ok("timeout", _result("timeout"))
    assert not gpu_check.verdict_ok("decoy", _result("correct"))


def test_coefficient_of_variation() -> None:
    assert gpu_check.coefficient_of_variation([1.0]) is None
    cv = gpu_check.coefficient_of_variation([1.0, 1.1, 0.9])
    assert cv == pytest.approx(0.1)


def test_table_renders_given_rows() -> None:
    rows = [gpu_check.Row("examples: solutions correct", 11, 11, "median speedup 1.31x"),
            gpu_check.Row("timing noise (CV)", None, None, "1.2% across 5 evaluations")]
    table = gpu_check.render(rows).splitlines()
    assert table[0].startswith("| check") and set(table[1]) <= {"|", "-"}
    assert "| 11/11  |" in table[2] and table[3].split("|")[2].strip() == ""
    assert len({len(line) for line in table}) == 1
