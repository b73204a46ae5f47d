"""`drkernel serve`: the gRPC service, configured by file, `DRKERNEL_*` variables and flags."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from server.app import serve
from server.config import ConfigError, flag_overrides, load_config
from server.logs import configure_logging

_FLAGS = {"host": "host", "port": "port", "metrics_port": "metrics_port", "model": "model.path",
          "backend": "model.backend", "device": "evaluator.device", "workers": "workers",
          "insecure_sandbox": "insecure_sandbox"}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "serve", help="serve KernelOptimizer over gRPC (no model configured: the tiny test model)")
    p.add_argument("--config", type=Path, help="YAML or TOML settings file")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--metrics-port", type=int, help="Prometheus /metrics port")
    p.add_argument("--model", help="model path or hub id")
    p.add_argument("--backend", help="vllm, openai or transformers")
    p.add_argument("--device", help="where candidates are judged: cpu, cuda or auto")
    p.add_argument("--workers", type=int, help="evaluator worker processes")
    p.add_argument("--insecure-sandbox", action="store_const", const=True, default=None,
                   help="serve even where no kernel sandbox is available (trusted users only)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any setting by its dotted key, e.g. loop.max_turns=5 (repeatable)")
    return p


def run(args: argparse.Namespace) -> int:
    try:
        overrides = flag_overrides(vars(args), _FLAGS, args.set)
        config = load_config(args.config, overrides=overrides)
    except ConfigError as exc:
        print(f"drkernel serve: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level, config.log_json)
    asyncio.run(serve(config))
    return 0
