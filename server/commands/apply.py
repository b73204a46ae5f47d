"""`drkernel apply DIR/manifest.json RESULTS_DIR --out optimized.py`: the optimised model,
verified against the original on the user's inputs."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

HELP = "write optimize(model), swapping the extracted modules for the batch's best kernels"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser("apply", help=HELP, description=HELP)
    p.add_argument("manifest", type=Path, help="manifest.json written by drkernel extract")
    p.add_argument("results", type=Path, help="the output folder of drkernel batch")
    p.add_argument("--out", type=Path, required=True, help="the Python module to write")
    p.add_argument("--target", help="the model, when it moved since extract (same syntax)")
    return p


def run(args: argparse.Namespace) -> int:
    import torch

    if not torch.cuda.is_available():  # before Triton is imported: its kernels need it
        os.environ.setdefault("TRITON_INTERPRET", "1")
    from server.models.apply import ApplyError, find_swaps, render, verify_and_write
    from server.models.manifest import Manifest
    from server.models.target import Target, TargetError

    try:
        manifest = Manifest.read(args.manifest)
        applied = find_swaps(manifest, args.manifest.parent, args.results)
        if not applied.swaps:
            raise ApplyError(f"{args.results} holds no correct kernel for any problem of "
                             f"{args.manifest}")
        spec = manifest.target
        target = Target(args.target or spec["spec"], spec["init"], spec["inputs"])
        source = render(applied, f"{args.manifest} and {args.results}")
        verify_and_write(applied, source, target, args.out)
    except (ApplyError, TargetError, OSError, ValueError) as exc:
        print(f"drkernel apply: {exc}", file=sys.stderr)
        return 1
    _report(applied, args.out)
    return 0


def _report(applied: Any, out: Path) -> None:
    for swap in applied.swaps:
        e = swap.entry
        speed = f"{swap.speedup:.2f}x" if swap.speedup is not None else "not measured"
        print(f"  {e.name:20} x{e.instances:<3} time {e.time_share:6.1%}  speedup {speed}")
    for name in applied.missing:
        print(f"  {name:20} kept as it is (no correct kernel in the results)")
    print(f"verified on {applied.device}: outputs match (max abs diff "
          f"{applied.max_abs_diff:.2e}, atol = rtol = 1e-2)")
    if applied.expected_speedup is not None:
        print(f"expected end-to-end speedup: {applied.expected_speedup:.2f}x (Amdahl, from each "
              "module's speedup and time share)")
    else:
        print("expected end-to-end speedup: unknown (the kernels' speedups were not measured; "
              "the judge measures speed on cuda only)")
    if applied.measured_speedup is not None:
        print(f"measured end-to-end speedup: {applied.measured_speedup:.2f}x")
    print(f"wrote {out}")
