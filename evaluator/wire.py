"""Framed messages between processes: a JSON header plus raw tensor bytes.

Nothing here unpickles: a child that ran untrusted code can only send JSON and plain bytes.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

import torch

_LEN = struct.Struct("<Q")
MAX_FRAME_BYTES = 1 << 31

_DTYPES = {
    str(dt).removeprefix("torch."): dt
    for dt in (
        torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int8, torch.int16,
        torch.int32, torch.int64, torch.uint8, torch.bool, torch.complex64, torch.complex128,
    )
}


class WireError(Exception):
    """A peer sent something that is not a well-formed message."""


def pack(header: dict[str, Any], tensors: list[torch.Tensor] | None = None) -> bytes:
    tensors = tensors or []
    metas, blobs = [], []
    for t in tensors:
        t = t.detach().to("cpu").contiguous()
        metas.append({"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape)})
        blobs.append(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    head = json.dumps({"header": header, "tensors": metas}).encode()
    parts = [_LEN.pack(len(head)), head]
    for blob in blobs:
        parts += [_LEN.pack(len(blob)), blob]
    body = b"".join(parts)
    return _LEN.pack(len(body)) + body


def unpack(body: bytes) -> tuple[dict[str, Any], list[torch.Tensor]]:
    try:
        (n,) = _LEN.unpack_from(body, 0)
        meta = json.loads(body[8 : 8 + n])
        pos = 8 + n
        tensors = []
        for m in meta["tensors"]:
            (size,) = _LEN.unpack_from(body, pos)
            pos += 8
            tensors.append(_tensor(m, body[pos : pos + size]))
            pos += size
        return meta["header"], tensors
    except (struct.error, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise WireError(f"malformed message: {exc}") from exc


def _tensor(meta: dict[str, Any], blob: bytes) -> torch.Tensor:
    dtype = _DTYPES[meta["dtype"]]
    shape = [int(s) for s in meta["shape"]]
    if not blob:
        return torch.empty(shape, dtype=dtype)
    flat = torch.frombuffer(bytearray(blob), dtype=torch.uint8).view(dtype)
    return flat.reshape(shape)


def write_frame(fd: int, frame: bytes) -> None:
    view = memoryview(frame)
    while view:
        view = view[os.write(fd, view) :]


def read_frame(fd: int) -> bytes | None:
    """Blocking read of one length-prefixed frame; None at end of stream."""
    head = _read_exact(fd, 8)
    if head is None:
        return None
    (size,) = _LEN.unpack(head)
    if size > MAX_FRAME_BYTES:
        raise WireError(f"frame of {size} bytes exceeds the limit")
    body = _read_exact(fd, size)
    if body is None:
        raise WireError("stream ended inside a frame")
    return body


def _read_exact(fd: int, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)
