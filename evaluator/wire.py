"""Framed messages between processes: a JSON header plus raw tensor bytes.

Nothing here unpickles: a child that ran untrusted code can only send JSON and plain bytes.

The report protocol between a child and the worker, read in one place (`ReportReader`):
the child sends exactly `KEY_REQUEST`, the worker answers with a fresh random key, the child
sends one report frame `REPORT_TAG + HMAC-SHA256(key, seq || payload) + payload`. Anything
else (a frame before the request, a bad tag, a frame over the size the problem allows,
bytes after the last report) is refused. The harness asks for the key only after the
candidate's last call, so a frame the candidate's code writes itself carries no valid tag.
"""

from __future__ import annotations

import _hashlib
import hmac
import json
import os
import secrets
import select
import struct
import time
from collections.abc import Callable
from typing import Any

import torch

_LEN = struct.Struct("<Q")
MAX_FRAME_BYTES = 1 << 31
KEY_REQUEST = b"\x00drkernel/report-key?"
REPORT_TAG = b"\x01"
KEY_BYTES = 32
NONCE_BYTES = 16
_MAC_BYTES = 32
MAX_HEADER_BYTES = 8 << 20
"""A report's JSON header (observations, launch table, error text) stays far below this."""

_DTYPES = {
    str(dt).removeprefix("torch."): dt
    for dt in (
        torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int8, torch.int16,
        torch.int32, torch.int64, torch.uint8, torch.bool, torch.complex64, torch.complex128,
    )
}


class WireError(Exception):
    """A peer sent something that is not a well-formed message."""


class ForgedReport(WireError):
    """A frame that the harness did not send: out of sequence or without a valid tag."""


class ReportTooLarge(WireError):
    """A frame larger than anything the problem's outputs can make."""


def report_mac(key: bytes, seq: int, payload: bytes,
               _digest: Callable[..., bytes] = _hashlib.hmac_digest) -> bytes:
    return _digest(key, seq.to_bytes(8, "little") + payload, "sha256")


def seal_report(key: bytes, seq: int, payload: bytes) -> bytes:
    """The child's report frame (length prefix included)."""
    body = REPORT_TAG + report_mac(key, seq, payload) + payload
    return _LEN.pack(len(body)) + body


def key_request(nonce: bytes) -> bytes:
    return _LEN.pack(len(KEY_REQUEST) + len(nonce)) + KEY_REQUEST + nonce


class ReportReader:
    """The worker's end of one child's report stream: bounded, strictly sequenced."""

    def __init__(self, out_fd: int, in_fd: int, max_report_bytes: int, nonce: bytes) -> None:
        self.out_fd, self.in_fd = out_fd, in_fd
        self.request = KEY_REQUEST + nonce
        self.max_frame = max_report_bytes + len(REPORT_TAG) + _MAC_BYTES
        self.seq = 0
        self._buffer = bytearray()

    def next_report(self, deadline: float, stop: Callable[[], bool]) -> bytes | None:
        """The next authenticated payload; None when the child ended or time ran out."""
        frame = self._frame(deadline, stop, len(self.request), ForgedReport)
        if frame is None:
            return None
        if not hmac.compare_digest(frame, self.request):
            raise ForgedReport("a frame arrived before the harness asked for its key, or "
                               "the key request lacks this run's nonce")
        key = secrets.token_bytes(KEY_BYTES)
        _write_all(self.in_fd, key)
        frame = self._frame(deadline, stop, self.max_frame, ReportTooLarge)
        if frame is None:
            return None
        payload = frame[len(REPORT_TAG) + _MAC_BYTES :]
        tag = frame[len(REPORT_TAG) : len(REPORT_TAG) + _MAC_BYTES]
        if not frame.startswith(REPORT_TAG) or not hmac.compare_digest(
                tag, report_mac(key, self.seq, payload)):
            raise ForgedReport("the report's tag does not match this run's key")
        self.seq += 1
        return payload

    def leftover(self) -> bool:
        """Whether anything was written after the last report (read without blocking)."""
        if self._buffer:
            return True
        try:
            ready, _, _ = select.select([self.out_fd], [], [], 0)
            return bool(ready) and bool(os.read(self.out_fd, 1))
        except OSError:
            return False

    def _frame(self, deadline: float, stop: Callable[[], bool], limit: int,
               too_large: type[WireError]) -> bytes | None:
        while True:
            if len(self._buffer) >= 8:
                (size,) = _LEN.unpack_from(self._buffer, 0)
                if size > limit:
                    raise too_large(f"a frame of {size} bytes (at most {limit} expected)")
                if len(self._buffer) >= 8 + size:
                    frame = bytes(self._buffer[8 : 8 + size])
                    del self._buffer[: 8 + size]
                    return frame
            left = deadline - time.monotonic()
            if left <= 0 or stop():
                return None
            ready, _, _ = select.select([self.out_fd], [], [], min(left, 0.5))
            if not ready:
                continue
            chunk = os.read(self.out_fd, 1 << 20)
            if not chunk:
                return None
            self._buffer += chunk


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
        if n > MAX_HEADER_BYTES:
            raise WireError(f"header of {n} bytes")
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
    numel = 1
    for s in shape:
        if s < 0:
            raise ValueError(f"negative size in {shape}")
        numel *= s
    if numel * dtype.itemsize != len(blob):  # a shape never allocates more than was sent
        raise ValueError(f"{len(blob)} bytes for a {dtype} tensor of shape {shape}")
    if not blob:
        return torch.empty(shape, dtype=dtype)
    flat = torch.frombuffer(bytearray(blob), dtype=torch.uint8).view(dtype)
    return flat.reshape(shape)


def write_frame(fd: int, frame: bytes) -> None:
    _write_all(fd, frame)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
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
