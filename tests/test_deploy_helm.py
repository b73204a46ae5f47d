"""deploy/helm/drkernel and deploy/ray: render with Helm's own engine, validate the objects
against the Kubernetes schemas, and check what the chart promises (GPUs, probes, config)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_deploy import ALERTS, promtool

helm = pytest.importorskip("helm_python", reason="pip install helm-python-sdk (Helm's Go SDK)")
kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="pip install kubernetes-validate")

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "drkernel"
RAYJOB = ROOT / "deploy" / "ray" / "rayjob.yaml"
HEALTH_SERVICE = "drkernel.v1.KernelOptimizer"
KUBE_VERSION = "1.30.0"
CRDS = {"ServiceMonitor", "RayJob"}
EVERYTHING_ON = {
    "auth": {"enabled": True, "token": "s3cret"},
    "tls": {"enabled": True, "secretName": "drkernel-tls", "clientAuth": True},
    "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "huggingface": {"existingSecret": "hf"},
    "modelCache": {"existingClaim": "models"},
    "evaluator": {"gpus": 2},
    "config": {"loop": {"max_turns": 5}},
}


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    with helm.Chart.load(CHART) as chart:
        files = chart.render(values or {}, name="dk", namespace="ml")
    docs = [yaml.safe_load_all(text) for name, text in files.items() if name.endswith(".yaml")]
    return [doc for stream in docs for doc in stream if doc]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [found] = [o for o in objects if o["kind"] == kind]
    return found


def server_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    [container] = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def config_file(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return yaml.safe_load(one(objects, "ConfigMap")["data"]["drkernel.yaml"])


def schema_errors(obj: dict[str, Any]) -> str | None:
    try:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = "/".join(map(str, error.path))
        return f"{obj['kind']} {obj['metadata']['name']}: {where}: {error.message}"
    return None


def test_chart_lints_clean() -> None:
    report = helm.lint(str(CHART), strict=True, kube_version=f"v{KUBE_VERSION}")
    assert not report["errors"], report
    assert not [m for m in report["messages"] if m["severity"] >= 2], report["messages"]


@pytest.mark.parametrize("values", [{}, EVERYTHING_ON], ids=["defaults", "everything-on"])
def test_rendered_objects_match_kubernetes_schemas(values: dict[str, Any]) -> None:
    objects = render(values)
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget"} <= kinds
    errors = [schema_errors(o) for o in objects if o["kind"] not in CRDS]
    assert not [e for e in errors if e], errors


def test_defaults_fit_the_14b_model_on_one_gpu_plus_an_evaluator_gpu() -> None:
    objects = render()
    container = server_container(objects)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 2
    config = config_file(objects)
    assert config["model"] == {
        "backend": "vllm", "path": "hkust-nlp/drkernel-14b",
        "engine_args": {"max_model_len": 32768, "gpu_memory_utilization": 0.9,
                        "tensor_parallel_size": 1},
    }
    assert config["evaluator_gpus"] == ["1"] and config["workers"] == 1
    assert config["evaluator"]["device"] == "cuda"


def test_evaluator_pool_follows_the_model_gpus() -> None:
    objects = render({"model": {"tensorParallelSize": 2}, "evaluator": {"gpus": 3}})
    assert server_container(objects)["resources"]["limits"]["nvidia.com/gpu"] == 5
    assert config_file(objects)["evaluator_gpus"] == ["2", "3", "4"]
    shared = config_file(render({"evaluator": {"gpus": 0}}))
    assert shared["evaluator_gpus"] == []


def test_probes_use_the_grpc_health_service() -> None:
    container = server_container(render())
    assert container["readinessProbe"]["grpc"] == {"port": 50051, "service": HEALTH_SERVICE}
    for probe in ("livenessProbe", "startupProbe"):
        assert container[probe]["grpc"]["port"] == 50051
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600


def test_tls_mounts_the_secret_and_probes_through_the_checker() -> None:
    objects = render(EVERYTHING_ON)
    container = server_container(objects)
    command = container["readinessProbe"]["exec"]["command"]
    assert f"--service={HEALTH_SERVICE}" in command
    assert "--tls-ca=/etc/drkernel/tls/ca.crt" in command
    assert "--server-name=dk-drkernel.ml.svc" in command
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["tls"] == "/etc/drkernel/tls"
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "drkernel-tls"
    tls = config_file(objects)["tls"]
    assert tls["client_ca_file"] == "/etc/drkernel/tls/ca.crt"
    assert all(tls[key].startswith(mounts["tls"]) for key in ("cert_file", "key_file"))


def test_token_comes_from_a_secret() -> None:
    objects = render(EVERYTHING_ON)
    secret = one(objects, "Secret")
    env = {e["name"]: e for e in server_container(objects)["env"]}
    ref = env["DRKERNEL_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == secret["metadata"]["name"]
    assert secret["stringData"][ref["key"]] == "s3cret"
    assert "s3cret" not in yaml.safe_dump(one(objects, "ConfigMap"))
    with pytest.raises(helm.HelmError, match=r"auth\.token or auth\.existingSecret"):
        render({"auth": {"enabled": True}})


def test_shm_and_model_cache_volumes() -> None:
    spec = one(render(), "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
    assert mounts["dshm"] == "/dev/shm"
    assert spec["securityContext"]["runAsNonRoot"] is True
    claim = {v["name"]: v for v in one(render(EVERYTHING_ON), "Deployment")
             ["spec"]["template"]["spec"]["volumes"]}["model-cache"]
    assert claim["persistentVolumeClaim"]["claimName"] == "models"


def test_service_monitor_and_disruption_budget_select_the_pods() -> None:
    objects = render(EVERYTHING_ON)
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    monitor = one(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    service_ports = {p["name"] for p in one(objects, "Service")["spec"]["ports"]}
    assert "metrics" in service_ports
    for kind in ("ServiceMonitor", "PodDisruptionBudget"):
        selector = one(objects, kind)["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod_labels.items()
    assert "ServiceMonitor" not in {o["kind"] for o in render()}


def test_config_change_rolls_the_pods() -> None:
    def checksum(values: dict[str, Any]) -> str:
        meta = one(render(values), "Deployment")["spec"]["template"]["metadata"]
        return str(meta["annotations"]["checksum/config"])

    assert checksum({}) != checksum({"config": {"loop": {"max_turns": 7}}})


def server_accepts(config: dict[str, Any], tmp_path: Path) -> Any:
    """`config` as `drkernel serve --config` would load it."""
    from server.config import load_config

    path = tmp_path / "drkernel.yaml"
    path.write_text(yaml.safe_dump(config))
    return load_config(path, env={})


def test_rendered_config_loads_in_the_server(tmp_path: Path) -> None:
    rendered = config_file(render({"config": {"loop": {"max_turns": 5}}}))
    config = server_accepts(rendered, tmp_path)
    assert (config.port, config.metrics_port, config.loop.max_turns) == (50051, 9400, 5)
    assert config.model.backend == "vllm" and config.evaluator.device == "cuda"


def test_a_non_vllm_backend_renders_without_engine_args(tmp_path: Path) -> None:
    values = {"model": {"backend": "openai"},
              "config": {"model": {"base_url": "http://vllm:8000/v1"}}}
    config = server_accepts(config_file(render(values)), tmp_path)
    assert config.model.backend == "openai" and not config.model.engine_args


def test_example_config_loads_in_the_server(tmp_path: Path) -> None:
    example = yaml.safe_load((ROOT / "deploy" / "drkernel.yaml").read_text())
    config = server_accepts(example, tmp_path)
    assert config.model.path == "hkust-nlp/drkernel-14b"


def rayjob() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(RAYJOB.read_text()) if doc]


def test_rayjob_pod_templates_are_valid_pods() -> None:
    job = one(rayjob(), "RayJob")
    assert job["apiVersion"] == "ray.io/v1"
    cluster = job["spec"]["rayClusterSpec"]
    templates = [cluster["headGroupSpec"]["template"]] + [
        group["template"] for group in cluster["workerGroupSpecs"]]
    for n, template in enumerate(templates):
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"ray-{n}"},
               "spec": template["spec"]}
        assert schema_errors(pod) is None, schema_errors(pod)
    gpus = [g["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
            for g in cluster["workerGroupSpecs"]]
    assert all(n == 1 for n in gpus), "one GPU per worker keeps timing off the model's GPU"
    assert schema_errors(one(rayjob(), "ConfigMap")) is None


def test_rayjob_entrypoint_is_a_valid_batch_command() -> None:
    argv = shlex.split(one(rayjob(), "RayJob")["spec"]["entrypoint"])
    assert argv[:2] == ["drkernel", "batch"] and "--ray" in argv
    from server import cli

    args = cli.build_parser().parse_args(argv[1:])
    assert (args.command, args.ray, args.generators) == ("batch", "", 1)
    assert args.config == Path("/etc/drkernel/drkernel.yaml")


def test_rayjob_config_loads_in_the_server(tmp_path: Path) -> None:
    data = yaml.safe_load(one(rayjob(), "ConfigMap")["data"]["drkernel.yaml"])
    config = server_accepts(data, tmp_path)
    assert config.model.backend == "vllm"


RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                      "persistentVolumeClaim", "projected", "secret"}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """The Pod Security Standards' `restricted` rules (baseline included) that `pod` breaks."""
    found = [f"{key} is set" for key in ("hostNetwork", "hostPID", "hostIPC") if pod.get(key)]
    pod_ctx = pod.get("securityContext", {})
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            found.append(f"volume {volume['name']} uses {sorted(kinds - RESTRICTED_VOLUMES)}")
    for c in pod.get("initContainers", []) + pod["containers"]:
        ctx, name = c.get("securityContext", {}), c["name"]
        if ctx.get("privileged"):
            found.append(f"{name}: privileged")
        if ctx.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation is not false")
        if not ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")):
            found.append(f"{name}: runAsNonRoot is not true")
        if ctx.get("runAsUser", pod_ctx.get("runAsUser")) == 0:
            found.append(f"{name}: runs as uid 0")
        seccomp = ctx.get("seccompProfile", pod_ctx.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{name}: seccompProfile is {seccomp}")
        caps = ctx.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            found.append(f"{name}: capabilities do not drop ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            found.append(f"{name}: adds capabilities {caps['add']}")
        found += [f"{name}: hostPort {p['hostPort']}" for p in c.get("ports", [])
                  if p.get("hostPort")]
    return found


@pytest.mark.parametrize("values", [{}, EVERYTHING_ON], ids=["defaults", "everything-on"])
def test_pod_is_admissible_under_pod_security_restricted(values: dict[str, Any]) -> None:
    pod = one(render(values), "Deployment")["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []


def test_the_restricted_check_catches_what_it_should() -> None:
    pod = one(render(), "Deployment")["spec"]["template"]["spec"]
    pod["securityContext"].pop("seccompProfile")
    pod["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    pod["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    assert len(restricted_violations(pod)) == 3


def test_root_filesystem_is_read_only_with_writable_scratch() -> None:
    objects = render()
    container = server_container(objects)
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in one(objects, "Deployment")["spec"]["template"]["spec"][
        "volumes"]}
    for path in ("/tmp", "/home/drkernel/.cache", "/home/drkernel/.triton"):
        assert path in mounts and "configMap" not in volumes[mounts[path]], path


def job_label_of_scrapes(objects: list[dict[str, Any]]) -> str:
    """The `job` label the Prometheus Operator gives the ServiceMonitor's targets: the value
    of the Service label named by `jobLabel`, else the Service's name."""
    monitor, service = one(objects, "ServiceMonitor"), one(objects, "Service")
    label = monitor["spec"].get("jobLabel")
    labels = service["metadata"].get("labels", {})
    return labels[label] if label in labels else service["metadata"]["name"]


@pytest.mark.parametrize("release", ["dk", "drkernel", "prod-kernels"])
def test_down_alert_follows_the_chart_scrape_job(release: str, tmp_path: Path) -> None:
    """promtool: DrKernelDown stays quiet while the chart's target is up, fires when it is
    down, for any release name."""
    with helm.Chart.load(CHART) as chart:
        files = chart.render({"serviceMonitor": {"enabled": True}}, name=release,
                             namespace="ml")
    objects = [d for n, t in files.items() if n.endswith(".yaml")
               for d in yaml.safe_load_all(t) if d]
    job = job_label_of_scrapes(objects)
    series = f'up{{job="{job}",instance="10.0.0.7:9400"}}'
    [rule] = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]
              if r.get("alert") == "DrKernelDown"]
    down = {key: text.replace("{{ $labels.instance }}", "10.0.0.7:9400")
            for key, text in rule["annotations"].items()}
    tests = [
        {"interval": "1m", "input_series": [{"series": series, "values": "1x20"}],
         "alert_rule_test": [{"eval_time": "10m", "alertname": "DrKernelDown",
                              "exp_alerts": []}]},
        {"interval": "1m", "input_series": [{"series": series, "values": "1x3 0x20"}],
         "alert_rule_test": [{"eval_time": "10m", "alertname": "DrKernelDown",
                              "exp_alerts": [{"exp_labels": {
                                  "severity": "critical", "job": job,
                                  "instance": "10.0.0.7:9400"}, "exp_annotations": down}]}]},
    ]
    spec = tmp_path / "chart_alerts_test.yml"
    spec.write_text(yaml.safe_dump({"rule_files": [str(ALERTS)], "evaluation_interval": "1m",
                                    "tests": tests}))
    done = promtool("test", "rules", str(spec))
    assert done.returncode == 0, done.stdout + done.stderr
