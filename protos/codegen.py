"""Regenerate the checked-in stubs: `python -m protos.codegen` from the repository root.

protoc writes `from drkernel.v1 import x_pb2`; the stubs live in the `protos` package, so
the imports are rewritten to `from protos.drkernel.v1 import x_pb2`.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parent
SOURCES = sorted((PROTO_ROOT / "drkernel" / "v1").glob("*.proto"))
_IMPORT = re.compile(r"^from drkernel\.v1 import ", re.MULTILINE)
_VERSIONS = [
    re.compile(r"^(GRPC_GENERATED_VERSION = ).*$", re.MULTILINE),
    re.compile(r"^(# Protobuf Python Version: ).*$", re.MULTILINE),
    re.compile(r"(ValidateProtobufRuntimeVersion\(\s*\S+,)\s*\d+,\s*\d+,\s*\d+,"),
]


def generate(out_dir: Path = PROTO_ROOT) -> list[Path]:
    """Writes the stubs for every source under `out_dir/drkernel/v1` and returns their paths."""
    include = str(Path(protoc.__file__).parent / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(path.relative_to(PROTO_ROOT)) for path in SOURCES),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")
    for source in SOURCES:
        if "\nservice " not in source.read_text():
            stub = source.relative_to(PROTO_ROOT).with_name(f"{source.stem}_pb2_grpc.py")
            (out_dir / stub).unlink()
    written = sorted((out_dir / "drkernel" / "v1").glob("*_pb2*.py*"))
    for path in written:
        path.write_text(_IMPORT.sub("from protos.drkernel.v1 import ", path.read_text()))
    return written


def without_versions(stub: str) -> str:
    """A stub's text with the generator's version stamps masked: what the code does, not which
    grpcio-tools release wrote it."""
    for pattern in _VERSIONS:
        stub = pattern.sub(r"\1<version>", stub)
    return stub


if __name__ == "__main__":
    for path in generate():
        print(path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path)
    sys.exit(0)
