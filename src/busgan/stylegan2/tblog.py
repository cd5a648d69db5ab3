"""TensorBoard event files (scalars and PNG images) written without TensorFlow.

Why hand-written: ``tf.summary`` would import TensorFlow under the JAX backend, and
tensorboardX is one more dependency. The format is small: TFRecord framing (length, masked
CRC-32C, payload, masked CRC-32C) around ``Event`` protocol buffers, encoded here by hand for
the few fields used (wall_time, step, file_version, summary.value{tag, simple_value, image}).
"""

from __future__ import annotations

import io
import socket
import struct
import time
from pathlib import Path

import numpy as np

_POLY = 0x82F63B78  # CRC-32C (Castagnoli), reflected


def _table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _table()


def crc32c(data: bytes) -> int:
    """CRC-32C of ``data``."""
    c = 0xFFFFFFFF
    t = _TABLE
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def _masked(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(num: int, wire: int, payload: bytes) -> bytes:
    key = _varint((num << 3) | wire)
    if wire == 2:
        return key + _varint(len(payload)) + payload
    return key + payload


def _event(step: int, wall_time: float, summary: bytes | None = None,
           file_version: str | None = None) -> bytes:
    msg = _field(1, 1, struct.pack("<d", wall_time)) + _field(2, 0, _varint(step))
    if file_version is not None:
        msg += _field(3, 2, file_version.encode())
    if summary is not None:
        msg += _field(5, 2, summary)
    return msg


def _png(image: np.ndarray) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buf, format="PNG")
    return buf.getvalue()


class EventWriter:
    """Append-only TensorBoard event file in ``log_dir`` (one per process start)."""

    def __init__(self, log_dir: Path) -> None:
        self.dir = Path(log_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}"
        self._f = open(self.path, "ab")
        self._write(_event(0, time.time(), file_version="brain.Event:2"))

    def _write(self, record: bytes) -> None:
        header = struct.pack("<Q", len(record))
        self._f.write(header + struct.pack("<I", _masked(header)) + record
                      + struct.pack("<I", _masked(record)))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """One event with a scalar per tag."""
        summary = b"".join(
            _field(1, 2, _field(1, 2, tag.encode()) + _field(2, 5, struct.pack("<f", float(v))))
            for tag, v in values.items())
        self._write(_event(step, time.time(), summary))
        self._f.flush()

    def image(self, step: int, tag: str, image: np.ndarray) -> None:
        """One uint8 HWC image (1 or 3 channels), stored as PNG."""
        h, w, c = image.shape
        img = (_field(1, 0, _varint(h)) + _field(2, 0, _varint(w)) + _field(3, 0, _varint(c))
               + _field(4, 2, _png(image)))
        summary = _field(1, 2, _field(1, 2, tag.encode()) + _field(4, 2, img))
        self._write(_event(step, time.time(), summary))
        self._f.flush()

    def close(self) -> None:
        self._f.close()
