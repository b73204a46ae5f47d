"""deploy/: Prometheus config and alerts, the Grafana dashboard, the Dockerfile and compose."""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from metric_names import (
    OWN_FAMILIES,
    PROMETHEUS_OWN,
    TARGET_LABELS,
    Family,
    allowed_sample_names,
    matchers,
    metric_names,
)

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "drkernel.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
HEALTH_SERVICE = "drkernel.v1.KernelOptimizer"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.skip("promtool not installed (Debian package `prometheus`)")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120)


def test_prometheus_config_is_valid() -> None:
    done = promtool("check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 rule files found" in done.stdout


def test_alert_rules_are_valid() -> None:
    done = promtool("check", "rules", str(ALERTS))
    assert done.returncode == 0, done.stdout + done.stderr


def test_alerts_fire_on_synthetic_series() -> None:
    done = promtool("test", "rules", str(DEPLOY / "prometheus" / "alerts_test.yml"))
    assert done.returncode == 0, done.stdout + done.stderr


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_alerts_cover_the_operational_failures() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    assert {
        "DrKernelDown", "DrKernelSessionFailuresHigh", "DrKernelEvaluatorCrashesHigh",
        "DrKernelEvaluatorBacklog", "DrKernelNoSessionsCompleting",
        "DrKernelGenerateLatencyHigh", "DrKernelHackedShareRising",
    } <= names
    tested = (DEPLOY / "prometheus" / "alerts_test.yml").read_text()
    untested = {name for name in names if f"alertname: {name}\n" not in tested}
    assert not untested, f"alerts without a promtool unit test: {untested}"
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def expressions() -> dict[str, list[str]]:
    return {
        "dashboard": [n["expr"] for n in walk(dashboard()) if isinstance(n.get("expr"), str)],
        "alerts": [rule["expr"] for rule in alert_rules()],
    }


def test_promql_name_parser() -> None:
    expr = ('histogram_quantile(0.99, sum by (le, phase) (rate(a_bucket{phase="generate"}'
            '[$__rate_interval]))) / on (job) group_left b offset 1d > 1e3 and vllm:c_total')
    assert metric_names(expr) == {"a_bucket", "b", "vllm:c_total"}
    [matcher] = matchers('x_total{status=~"crashed|timeout", job="j"}')[:1]
    assert (matcher.metric, matcher.label, matcher.literal_values()) == (
        "x_total", "status", ["crashed", "timeout"])


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_every_metric_used_is_agreed(source: str) -> None:
    exprs = expressions()[source]
    assert exprs, f"no PromQL found in the {source}"
    allowed = allowed_sample_names().keys() | PROMETHEUS_OWN
    unknown = {name for expr in exprs for name in metric_names(expr)} - allowed
    assert not unknown, f"{source} uses metrics nobody exports: {sorted(unknown)}"


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_every_label_value_used_is_agreed(source: str) -> None:
    families = allowed_sample_names()
    for expr in expressions()[source]:
        for matcher in matchers(expr):
            if matcher.metric in PROMETHEUS_OWN or matcher.label in TARGET_LABELS:
                continue
            allowed = families[matcher.metric].labels
            assert matcher.label in allowed, f"{matcher.metric} has no label {matcher.label}"
            values = allowed[matcher.label]
            for value in matcher.literal_values() if values is not None else []:
                where = f"{matcher.metric}{{{matcher.label}={value!r}}}"
                assert value in values, f"{where} never occurs"


def test_dashboard_shows_what_operators_need() -> None:
    used = {name for expr in expressions()["dashboard"] for name in metric_names(expr)}
    assert {
        "drkernel_sessions_total", "drkernel_sessions_in_flight", "drkernel_turns_total",
        "drkernel_phase_duration_seconds_bucket", "drkernel_best_speedup_bucket",
        "drkernel_tokens_total", "drkernel_evaluator_queue_depth",
        "vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total",
    } <= used
    exprs = " ".join(expressions()["dashboard"])
    assert "histogram_quantile(0.5" in exprs and "histogram_quantile(0.99" in exprs
    assert 'drkernel_tokens_total{kind="cached"}' in exprs


def test_dashboard_layout_is_consistent() -> None:
    panels = dashboard()["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        area = {(pos["x"] + i, pos["y"] + j) for i in range(pos["w"]) for j in range(pos["h"])}
        assert not cells & area, f"panel {panel['title']!r} overlaps another"
        cells |= area
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"
    variables = {v["name"] for v in dashboard()["templating"]["list"]}
    assert "datasource" in variables


def exported_families() -> list[Family]:
    """The families `server.metrics` registers, read back through prometheus-client."""
    if importlib.util.find_spec("server.metrics") is None:
        pytest.skip("server/metrics.py does not exist yet")
    from prometheus_client import REGISTRY, CollectorRegistry

    module = importlib.import_module("server.metrics")
    registries = [v for v in vars(module).values() if isinstance(v, CollectorRegistry)]
    kinds = {"counter": "counter", "gauge": "gauge", "histogram": "histogram", "info": "gauge"}
    families = []
    for registry in registries or [REGISTRY]:
        for metric in registry.collect():
            name = metric.name + ("_info" if metric.type == "info" else "")
            if name.startswith(("drkernel_", "grpc_server_")):
                families.append(Family(name, kinds[metric.type]))
    return families


def test_server_exports_the_agreed_metrics() -> None:
    exported = {name for fam in exported_families() for name in fam.sample_names()}
    agreed = {name for fam in OWN_FAMILIES for name in fam.sample_names()}
    assert agreed - exported == set(), "agreed but not exported"
    used = {n for exprs in expressions().values() for e in exprs for n in metric_names(e)}
    own_used = {n for n in used if n.startswith(("drkernel_", "grpc_server_"))}
    assert own_used <= exported


class Dockerfile:
    """Instructions of a Dockerfile with continuation lines joined and ARG defaults applied."""

    def __init__(self, path: Path) -> None:
        text = re.sub(r"\\\n", " ", path.read_text())
        lines = [ln.strip() for ln in text.splitlines()]
        lines = [ln for ln in lines if ln and not ln.startswith("#")]
        args: dict[str, str] = {}
        self.instructions: list[tuple[str, str]] = []
        for line in lines:
            op, _, rest = line.partition(" ")
            if op.upper() == "ARG" and "=" in rest:
                key, _, value = rest.partition("=")
                args[key.strip()] = value.strip()
            for key, value in args.items():
                rest = rest.replace("${" + key + "}", value).replace("$" + key, value)
            self.instructions.append((op.upper(), rest.strip()))

    def all(self, op: str) -> list[str]:
        return [rest for name, rest in self.instructions if name == op]


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return Dockerfile(DEPLOY / "Dockerfile")


def test_dockerfile_builds_on_cuda(dockerfile: Dockerfile) -> None:
    [base] = dockerfile.all("FROM")
    assert base.startswith("nvidia/cuda:"), base


def test_dockerfile_runs_as_non_root(dockerfile: Dockerfile) -> None:
    users = dockerfile.all("USER")
    assert users and users[-1] not in {"root", "0"}


def test_dockerfile_installs_the_vllm_extra(dockerfile: Dockerfile) -> None:
    installs = [run for run in dockerfile.all("RUN") if "pip install" in run]
    assert any(re.search(r"""pip install ["']?\.\[vllm\]""", run) for run in installs), installs


def test_dockerfile_healthcheck_uses_grpc_health(dockerfile: Dockerfile) -> None:
    [check] = dockerfile.all("HEALTHCHECK")
    command = json.loads(check[check.index("CMD") + 3:])
    assert HEALTH_SERVICE in command
    script = next(c for c in command if c.startswith("/usr/local/bin/"))
    copied = [shlex.split(c) for c in dockerfile.all("COPY")]
    [source] = [c[-2] for c in copied if c[-1] == script]
    assert "grpc_health.v1" in (ROOT / source).read_text()


def test_dockerfile_copies_only_existing_files(dockerfile: Dockerfile) -> None:
    for copy in dockerfile.all("COPY"):
        sources = [w for w in shlex.split(copy) if not w.startswith("--")][:-1]
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: missing in the build context"


def test_dockerfile_exposes_the_configured_ports(dockerfile: Dockerfile) -> None:
    config = yaml.safe_load((DEPLOY / "drkernel.yaml").read_text())
    exposed = {int(p) for e in dockerfile.all("EXPOSE") for p in e.split()}
    assert exposed == {config["port"], config["metrics_port"]}


def healthcheck(*args: str) -> subprocess.CompletedProcess[str]:
    script = DEPLOY / "healthcheck.py"
    return subprocess.run([sys.executable, str(script), *args], capture_output=True,
                          text=True, timeout=60)


def test_healthcheck_reports_serving_and_not_serving() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        servicer.set(HEALTH_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        address = f"--address=127.0.0.1:{port}"
        ok = healthcheck(address, f"--service={HEALTH_SERVICE}")
        assert (ok.returncode, ok.stdout.strip()) == (0, "SERVING")
        servicer.set(HEALTH_SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)
        assert healthcheck(address, f"--service={HEALTH_SERVICE}").returncode == 1
        unknown = healthcheck(address, "--service=nope")
        assert unknown.returncode == 1 and "NOT_FOUND" in unknown.stderr
    finally:
        server.stop(None)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_mounts_existing_files(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"
    build = compose["services"]["drkernel"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"


def test_prometheus_scrapes_the_compose_server(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "drkernel"]
    [target] = job["static_configs"][0]["targets"]
    host, port = target.split(":")
    settings = yaml.safe_load((DEPLOY / "drkernel.yaml").read_text())
    assert host in compose["services"] and int(port) == settings["metrics_port"]
    assert f"{port}:{port}" in compose["services"]["drkernel"]["ports"]


def test_grafana_provisioning_matches_compose(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]["volumes"]
    dashboards_at = next(v.split(":")[1] for v in grafana if "dashboards" in v.split(":")[0])
    provisioning = DEPLOY / "grafana" / "provisioning"
    provider = yaml.safe_load((provisioning / "dashboards" / "drkernel.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == dashboards_at
    source = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    url = source["datasources"][0]["url"]
    assert url == "http://prometheus:9090" and "prometheus" in compose["services"]


def test_compose_gives_the_model_and_the_evaluator_separate_gpus(compose: dict[str, Any]) -> None:
    server = compose["services"]["drkernel"]
    [devices] = server["deploy"]["resources"]["reservations"]["devices"]
    assert len(devices["device_ids"]) == 2 and "gpu" in devices["capabilities"]
    config = yaml.safe_load((DEPLOY / "drkernel.yaml").read_text())
    assert config["evaluator_gpus"] == ["1"] and config["workers"] == 1
    assert server["shm_size"]
