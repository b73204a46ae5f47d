"""`drkernel extract TARGET --inputs SPEC --out DIR`: the hot submodules of a user's model
as KernelBench-format problems, and `DIR/manifest.json`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HELP = "profile a PyTorch model and write its hot submodules as KernelBench problems"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser("extract", help=HELP, description=HELP)
    p.add_argument("target", help="path/to/file.py:Name or package.module:Name: an nn.Module "
                                  "class or a function returning a model")
    p.add_argument("--init", default="", help="constructor arguments as JSON: a list, or an "
                                              "object of keyword arguments")
    p.add_argument("--inputs", required=True,
                   help='JSON list, one per forward argument: a shape ([2, 64]), '
                        '{"shape": [2, 16], "dtype": "int64", "high": 1000}, or a number; '
                        "or the name of a function in the target's file returning the inputs")
    p.add_argument("--out", type=Path, required=True, help="problems/ and manifest.json go here")
    p.add_argument("--top", type=int, help="write the K slowest groups (default: those that "
                                           "together cover 80%% of the time)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the model is profiled")
    return p


def run(args: argparse.Namespace) -> int:
    import torch

    from server.models.extract import extract
    from server.models.target import Target, TargetError, default_device

    device = default_device() if args.device == "auto" else torch.device(args.device)
    try:
        result = extract(Target(args.target, args.init, args.inputs), args.out, top=args.top,
                         device=device)
    except (TargetError, json.JSONDecodeError, OSError) as exc:
        print(f"drkernel extract: {exc}", file=sys.stderr)
        return 2
    manifest = result.manifest
    print(f"profiled {args.target} on {manifest.device}: {manifest.total_us / 1e3:.1f} ms, "
          f"{manifest.total_flops / 1e6:.1f} MFLOP")
    for p in manifest.problems:
        flops = f"{p.flop_share:6.1%}" if p.flop_share is not None else "     -"
        print(f"  {p.file:32} {p.module_class:18} x{p.instances:<3} time {p.time_share:6.1%}  "
              f"flops {flops}  written from {p.how}")
    for s in manifest.skipped:
        print(f"  skipped {s.module_class} ({', '.join(s.paths)}; time {s.time_share:.1%}): "
              f"{s.reason}")
    print(f"manifest: {args.out / 'manifest.json'}")
    return 0 if manifest.problems else 1
