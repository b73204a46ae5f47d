"""The server's settings: one pydantic schema over a file, `DRKERNEL_*` variables and flags.

Precedence, lowest first: defaults, the file (YAML or TOML), the environment, flags. Nested
keys use `__` in the environment (`DRKERNEL_EVALUATOR__DEVICE=cpu`) and dots in flags
(`--set evaluator.device=cpu`). The evaluator's and the loop's settings are their owners'
dataclasses, composed here and validated by their own checks.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from evaluator import EvalConfig, RewardConfig
from refine.backends import BackendName
from refine.config import LoopConfig

ENV_PREFIX = "DRKERNEL_"


class ConfigError(ValueError):
    """The settings do not validate; the message lists every offending key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class ModelConfig(_Section):
    backend: BackendName = "transformers"
    path: str | None = None
    """Model path or hub id (the served name for `openai`); unset: the tiny test model."""
    base_url: str | None = None
    """The `openai` backend's endpoint, e.g. http://localhost:8000/v1."""
    api_key: SecretStr | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where the `transformers` backend runs the model."""
    engine_args: dict[str, Any] = {}
    """`vllm` only: extra AsyncEngineArgs, e.g. max_model_len, tensor_parallel_size."""
    cache_dir: Path = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "drkernel"
    """Where the tiny test model is built when no model is configured."""

    @model_validator(mode="after")
    def _fits_backend(self) -> ModelConfig:
        if self.engine_args and self.backend != "vllm":
            raise ValueError("model.engine_args apply to the vllm backend only")
        if self.backend == "openai" and self.base_url is None:
            raise ValueError("the openai backend needs model.base_url")
        return self


class TLSConfig(_Section):
    cert_file: Path | None = None
    key_file: Path | None = None
    client_ca_file: Path | None = None
    """Set to require client certificates signed by this CA (mTLS)."""

    @model_validator(mode="after")
    def _complete(self) -> TLSConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("tls.cert_file and tls.key_file go together")
        if self.client_ca_file is not None and self.cert_file is None:
            raise ValueError("tls.client_ca_file (mTLS) needs tls.cert_file and tls.key_file")
        for path in (self.cert_file, self.key_file, self.client_ca_file):
            if path is not None and not path.is_file():
                raise ValueError(f"TLS file {path} does not exist")
        return self

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None


class ServerConfig(_Section):
    host: str = "[::]"
    port: int = Field(50051, ge=0, le=65535)
    """gRPC port; 0 picks a free one."""
    metrics_host: str = "0.0.0.0"
    metrics_port: int | None = Field(9400, ge=0, le=65535)
    """Prometheus `/metrics` port; unset turns the endpoint off."""
    auth_token: SecretStr | None = None
    """When set, every call but health and reflection needs `authorization: Bearer <token>`."""
    tls: TLSConfig = TLSConfig()
    workers: int = Field(2, ge=1)
    """Evaluator worker processes."""
    insecure_sandbox: bool = False
    """Accept untrusted sources even where the host allows no kernel confinement of the
    evaluator's children (no namespaces, no seccomp): only for trusted users."""
    evaluator_gpus: list[str] = []
    """GPUs that time kernels, assigned to workers in turn; keep them off the model's GPUs."""
    max_sessions: int = Field(64, ge=1)
    """Concurrent Optimize sessions; one more is refused with RESOURCE_EXHAUSTED."""
    max_pending_evaluations: int = Field(256, ge=1)
    """Evaluations waiting for a worker beyond which Evaluate and ComputeRewards are refused."""
    max_reward_items: int = Field(1024, ge=1)
    max_message_bytes: int = Field(64 << 20, ge=1 << 20)
    drain_grace_s: float = Field(30.0, ge=0)
    """On SIGTERM, how long running sessions may take to finish."""
    deadline_margin_s: float = Field(1.0, ge=0)
    """The loop stops this long before the client's deadline, so the final event arrives."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = True
    model: ModelConfig = ModelConfig()
    evaluator: EvalConfig = EvalConfig()
    loop: LoopConfig = LoopConfig()
    reward: RewardConfig = RewardConfig()

    @model_validator(mode="after")
    def _token_not_empty(self) -> ServerConfig:
        # compose passes `DRKERNEL_AUTH_TOKEN=` through from an unset host variable: a server
        # whose password is the empty string must not start.
        if self.auth_token is not None and not self.auth_token.get_secret_value().strip():
            raise ValueError("auth_token is set but empty; set a token, or unset "
                             "DRKERNEL_AUTH_TOKEN / auth_token to turn authentication off")
        return self


def load_config(path: Path | None = None, env: Mapping[str, str] | None = None,
                overrides: Mapping[str, Any] | None = None) -> ServerConfig:
    """Merges the sources and validates once; raises ConfigError naming every bad key."""
    data = _read_file(path) if path is not None else {}
    for source in (_from_env(os.environ if env is None else env), _from_dotted(overrides or {})):
        _merge(data, source)
    try:
        return ServerConfig.model_validate(data)
    except ValidationError as exc:
        lines = [f"  {'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors()]
        origin = f" (file {path})" if path else ""
        raise ConfigError("invalid server configuration" + origin + ":\n" + "\n".join(lines)
                          ) from None


def flag_overrides(values: Mapping[str, Any], keys: Mapping[str, str],
                   sets: Iterable[str]) -> dict[str, Any]:
    """Dotted overrides from command-line flags: `values[flag]` for each flag of `keys` that
    was given (flag → dotted key), then each `--set KEY=VALUE` of `sets`."""
    overrides = {key: values[flag] for flag, key in keys.items() if values[flag] is not None}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set needs KEY=VALUE, got {item!r}")
        overrides[key.strip()] = value
    return overrides


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (OSError, tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys")
    return data or {}


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """`DRKERNEL_<FIELD>[__<KEY>...]`; other DRKERNEL_ variables belong to other parts."""
    dotted = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        keys = name[len(ENV_PREFIX):].lower().split("__")
        if keys[0] in ServerConfig.model_fields:
            dotted[".".join(keys)] = _parse(value)
    return _from_dotted(dotted)


def _from_dotted(overrides: Mapping[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return data


def _parse(value: str) -> Any:
    """JSON for lists and objects (`["native"]`); everything else stays text for pydantic."""
    if value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            pass
    return value


def _merge(into: dict[str, Any], new: Mapping[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def config_keys(model: type[BaseModel] = ServerConfig, prefix: str = "") -> list[str]:
    """Every settable key, dotted; the frozen list in the tests is diffed against this."""
    keys = []
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            keys += config_keys(kind, f"{prefix}{name}.")
        elif isinstance(kind, type) and hasattr(kind, "__dataclass_fields__"):
            keys += _dataclass_keys(kind, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def _dataclass_keys(kind: type, prefix: str) -> list[str]:
    keys = []
    for name, field in kind.__dataclass_fields__.items():  # type: ignore[attr-defined]
        default = field.default_factory() if callable(field.default_factory) else field.default
        if hasattr(default, "__dataclass_fields__"):
            keys += _dataclass_keys(type(default), f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys
