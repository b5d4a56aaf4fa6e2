"""Marian binary reader: a synthetic file with known contents, then the real weights."""

import struct

import numpy as np
import pytest

from export.bergamot import bundled_model_dir
from export.marian_binary import TYPE_FLOAT32, TYPE_INT8_INTGEMM, read_marian_binary


def write_marian_binary(path, items):
    """items: list of (name, type_code, shape, raw bytes)."""
    names = [n.encode() + b"\0" for n, *_ in items]
    out = [struct.pack("<QQ", 1, len(items))]
    for (_, code, shape, raw), name in zip(items, names, strict=True):
        out.append(struct.pack("<QQQQ", len(name), code, len(shape), len(raw)))
    out += names
    out += [struct.pack(f"<{len(s)}i", *s) for _, _, s, _ in items]
    out.append(struct.pack("<Q", 3) + b"\0\0\0")
    out += [raw for *_, raw in items]
    path.write_bytes(b"".join(out))


def int8_item(values_out_in: np.ndarray, mult: float) -> bytes:
    raw = values_out_in.astype(np.int8).tobytes() + struct.pack("<f", mult)
    return raw + b"\xab" * (256 - 4)  # junk tail, as in real files


def test_synthetic_file_roundtrip(tmp_path):
    bias = np.arange(4, dtype=np.float32)
    q = np.array([[1, -2, 3], [4, 5, -6]], dtype=np.int8)  # stored [out=2, in=3]
    emb = np.array([[1, 2], [3, 4], [5, 6]], dtype=np.int8)  # embeddings: row-major as is
    write_marian_binary(
        tmp_path / "m.bin",
        [
            ("b", TYPE_FLOAT32, (1, 4), bias.tobytes()),
            ("W", TYPE_INT8_INTGEMM, (3, 2), int8_item(q, 2.0)),
            ("Wemb", TYPE_INT8_INTGEMM, (3, 2), int8_item(emb, 4.0)),
        ],
    )
    items = read_marian_binary(tmp_path / "m.bin")
    assert list(items) == ["b", "W", "Wemb"]
    np.testing.assert_array_equal(items["b"].array(), bias.reshape(1, 4))
    # header [in=3, out=2]; bytes are [out, in]: logical W = q.T / m
    np.testing.assert_allclose(items["W"].array(), q.T.astype(np.float32) / 2.0)
    np.testing.assert_allclose(items["Wemb"].array(), emb.astype(np.float32) / 4.0)


def test_trailing_garbage_is_rejected(tmp_path):
    write_marian_binary(tmp_path / "m.bin", [("b", TYPE_FLOAT32, (1,), b"\0\0\0\0")])
    (tmp_path / "m.bin").write_bytes((tmp_path / "m.bin").read_bytes() + b"xx")
    with pytest.raises(ValueError, match="trailing"):
        read_marian_binary(tmp_path / "m.bin")


def test_real_bergamot_file():
    model = next(bundled_model_dir("en-pt").glob("model.*.bin"))
    items = read_marian_binary(model)
    assert len(items) == 195
    wemb = items["Wemb"]
    assert wemb.shape == (32000, 256) and wemb.is_int8
    _, mult = wemb.int8_values()
    assert mult == pytest.approx(153.83, abs=0.01)
    assert "dec-cell: ssru" in items["special:model.yml"].text()
    w1 = items["encoder_l1_ffn_W1"].array()
    assert w1.shape == (256, 1536) and w1.dtype == np.float32
