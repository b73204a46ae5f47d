"""The server's settings: the frozen key list, precedence of the sources, clear errors."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from evaluator.api import EvaluatorError
from refine.backends.protocol import BackendError
from server import errors
from server.config import ConfigError, config_keys, flag_overrides, load_config
from server.errors import ServiceError, status_for

KEYS = [
    "host", "port", "metrics_host", "metrics_port", "auth_token", "tls.cert_file",
    "tls.key_file", "tls.client_ca_file", "workers", "insecure_sandbox", "evaluator_gpus",
    "max_sessions",
    "max_pending_evaluations", "max_reward_items", "max_message_bytes", "drain_grace_s",
    "deadline_margin_s", "log_level", "log_json", "model.backend", "model.path",
    "model.base_url", "model.api_key", "model.device", "model.engine_args", "model.cache_dir",
    "evaluator.device", "evaluator.policy", "evaluator.correct_trials", "evaluator.perf_trials",
    "evaluator.warmup", "evaluator.atol", "evaluator.rtol", "evaluator.max_relative_error",
    "evaluator.seed", "evaluator.trial_seed",
    "evaluator.distributions", "evaluator.scale", "evaluator.check_hacks", "evaluator.profile",
    "evaluator.l2_flush", "evaluator.rerun_speedup_above", "evaluator.timeout_s",
    "evaluator.memory_mb", "evaluator.max_processes", "evaluator.max_output_bytes",
    "evaluator.max_source_bytes", "loop.max_turns", "loop.samples_per_turn", "loop.history",
    "loop.episode_turns", "loop.window_turns", "loop.iterations", "loop.feedback_format",
    "loop.target_speedup", "loop.patience_turns", "loop.max_wall_s",
    "loop.max_generated_tokens", "loop.prompt_template", "loop.sampling.temperature",
    "loop.sampling.top_p", "loop.sampling.max_new_tokens", "loop.sampling.max_model_len",
    "loop.sampling.seed",
    "reward.correct_weight", "reward.speedup_weight", "reward.speedup_cap",
    "reward.speedup_lower_bound", "reward.coverage_weight", "reward.coverage_reward",
    "reward.estimated_coverage", "reward.failure_penalty", "reward.hack_penalty",
]


def test_config_keys_are_the_agreed_ones() -> None:
    """A new knob fails here on purpose: add it to KEYS in the same change, beside its owner
    (evaluator/config.py, refine/config.py or server/config.py)."""
    assert config_keys() == KEYS


def test_sources_apply_file_then_env_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "drkernel.yaml"
    path.write_text("port: 1000\nworkers: 3\nloop: {max_turns: 4, sampling: {top_p: 0.5}}\n")
    env = {"DRKERNEL_PORT": "2000", "DRKERNEL_LOOP__MAX_TURNS": "5",
           "DRKERNEL_EVALUATOR__DISTRIBUTIONS": '["native"]',
           "DRKERNEL_WORKER_STDERR": "1", "OTHER": "x"}
    config = load_config(path, env=env, overrides={"port": "3000"})
    assert (config.port, config.workers, config.loop.max_turns) == (3000, 3, 5)
    assert config.loop.sampling.top_p == 0.5 and config.loop.sampling.max_new_tokens == 8192
    assert config.evaluator.distributions == ("native",)


def test_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "drkernel.toml"
    path.write_text('auth_token = "hunter2"\n[model]\nbackend = "openai"\nbase_url = "http://x/v1"\n')
    config = load_config(path, env={})
    assert config.model.backend == "openai" and config.auth_token is not None
    assert "hunter2" not in repr(config) and config.auth_token.get_secret_value() == "hunter2"


def test_every_bad_key_is_named_in_one_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(env={"DRKERNEL_PORTT": "1"}, overrides={
            "workers": 0, "loop.sampling.top_p": 2, "evaluator.devise": "cpu",
            "tls.cert_file": str(tmp_path / "missing.pem")})
    message = str(caught.value)
    for key in ("workers", "loop.sampling", "evaluator.devise", "tls"):
        assert f"  {key}:" in message
    assert "top_p must be in (0, 1]" in message and "go together" in message


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path, env={})


def _subclasses(cls: type) -> list[type]:
    return [cls] + [s for sub in cls.__subclasses__() for s in _subclasses(sub)]


def test_every_domain_error_has_a_status_code() -> None:
    raised = _subclasses(ServiceError)[1:]  # the base itself is never raised
    classes = raised + _subclasses(EvaluatorError) + _subclasses(BackendError)
    assert errors.Draining in classes and len(classes) >= 10
    for cls in classes:
        assert status_for(cls.__new__(cls)) is not grpc.StatusCode.INTERNAL, cls
    assert status_for(KeyError("bug")) is grpc.StatusCode.INTERNAL
    assert "request id" in errors.public_message(KeyError("secret internals"))


@pytest.mark.parametrize(("overrides", "message"), [
    ({"model.engine_args.max_model_len": 4096}, "engine_args apply to the vllm backend only"),
    ({"model.backend": "openai"}, "needs model.base_url"),
])
def test_model_settings_must_fit_the_backend(overrides, message) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(env={}, overrides=overrides)
    vllm = load_config(env={}, overrides={"model.backend": "vllm",
                                          "model.engine_args.max_model_len": 4096})
    assert vllm.model.engine_args == {"max_model_len": 4096}


def test_flags_and_set_items_become_dotted_overrides() -> None:
    values = {"port": 7, "model": None}
    keys = {"port": "port", "model": "model.path"}
    assert flag_overrides(values, keys, ["loop.max_turns=5", "a.b=c=d"]) == {
        "port": 7, "loop.max_turns": "5", "a.b": "c=d"}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        flag_overrides(values, keys, ["loop.max_turns"])
