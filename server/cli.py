"""`drkernel` console script: one subcommand per module in `server.commands`."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS = ("eval", "optimize", "serve", "client", "batch", "extract", "apply")
"""Each names `server.commands.<name>`, which defines `add_parser(subparsers)` and `run(args)`."""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Every subcommand, or only `command`: each module imports what its command needs
    (torch, through `evaluator`, takes seconds), which `drkernel client` should not pay."""
    parser = argparse.ArgumentParser(prog="drkernel", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS if command is None else (command,):
        module = importlib.import_module(f"server.commands.{name}")
        sub = module.add_parser(subparsers)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    args = build_parser(command).parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
