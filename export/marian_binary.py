"""Reader for Marian's binary model format (``*.bin``, file version 1).

Layout (marian-dev src/common/binary.cpp): uint64 version, uint64 item count, then one
header of four uint64 per item (name length incl. NUL, type code, shape length, data
length), then all names, then all shapes (int32), then a uint64 padding length and the
padding, then the data of every item back to back.

Bergamot students store int8 matrices (type 0x4101) with the float32 quantization
multiplier right after the rows*cols bytes, the rest of a 256-byte tail being junk. Every
such matrix except the embeddings is stored transposed: the header says [in, out] while
the bytes are [out, in] row-major (verified against the reference engine; reading them as
[in, out] produces "de de de").
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TYPE_FLOAT32 = 0x0404
TYPE_INT8_INTGEMM = 0x4101  # intgemm8 with trailing float multiplier

_DTYPES = {
    0x0404: np.float32,
    0x0808: np.float64,
    0x0101: np.int8,
    0x0202: np.int16,
    0x0204: np.int32,
    0x0208: np.int64,
    0x0301: np.uint8,
    0x0304: np.uint32,
    0x0308: np.uint64,
}


@dataclass
class Item:
    name: str
    type_code: int
    shape: tuple[int, ...]
    raw: bytes

    @property
    def is_int8(self) -> bool:
        return self.type_code == TYPE_INT8_INTGEMM

    def int8_values(self) -> tuple[np.ndarray, float]:
        """(int8 matrix in the stored byte order, multiplier m); W = int8 / m."""
        if not self.is_int8:
            raise TypeError(f"{self.name} is not an int8 item")
        n = int(np.prod(self.shape))
        q = np.frombuffer(self.raw, dtype=np.int8, count=n)
        (mult,) = struct.unpack_from("<f", self.raw, n)
        return q, float(mult)

    def array(self) -> np.ndarray:
        """Float32 values in the logical [in, out] orientation of the header."""
        if self.is_int8:
            q, mult = self.int8_values()
            rows, cols = self.shape
            w = q.astype(np.float32) * np.float32(1.0 / mult)
            if self.name == "Wemb":
                return w.reshape(rows, cols)
            return np.ascontiguousarray(w.reshape(cols, rows).T)
        dtype = _DTYPES.get(self.type_code)
        if dtype is None:
            raise ValueError(f"{self.name}: unsupported Marian type 0x{self.type_code:x}")
        count = int(np.prod(self.shape)) if self.shape else 1
        return np.frombuffer(self.raw, dtype=dtype, count=count).reshape(self.shape).copy()

    def text(self) -> str:
        return self.raw.split(b"\0", 1)[0].decode("utf-8")


def read_marian_binary(path: str | Path) -> dict[str, Item]:
    data = Path(path).read_bytes()
    version, count = struct.unpack_from("<QQ", data, 0)
    if version != 1:
        raise ValueError(f"{path}: Marian binary version {version}, expected 1")
    off = 16
    headers = []
    for _ in range(count):
        headers.append(struct.unpack_from("<QQQQ", data, off))
        off += 32
    names = []
    for name_len, *_ in headers:
        names.append(data[off : off + name_len].rstrip(b"\0").decode("utf-8"))
        off += name_len
    shapes = []
    for _, _, shape_len, _ in headers:
        shapes.append(struct.unpack_from(f"<{shape_len}i", data, off))
        off += 4 * shape_len
    (pad,) = struct.unpack_from("<Q", data, off)
    off += 8 + pad
    items: dict[str, Item] = {}
    for (_, type_code, _, data_len), name, shape in zip(headers, names, shapes, strict=True):
        items[name] = Item(name, type_code, tuple(shape), data[off : off + data_len])
        off += data_len
    if off != len(data):
        raise ValueError(f"{path}: {len(data) - off} trailing bytes; not a Marian binary?")
    return items
