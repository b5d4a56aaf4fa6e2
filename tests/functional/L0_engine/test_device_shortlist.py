"""The shortlist graph (control_plane.engine.device_shortlist) against the host's numpy
(BergamotModel._shortlist_layer, itself checked against Shortlist.candidates) on the CPU
execution provider: the same columns, output layer and bias, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from control_plane.engine.bergamot_engine import BergamotModel
from evaluation.sets import gettext_set


@pytest.fixture(scope="module")
def model(model_dir) -> BergamotModel:
    m = BergamotModel(
        model_dir / "bergamot-en-pt", "fp32", decoder_loop="device", device_shortlist=True
    )
    assert m._device.shortlist is not None
    return m


def device_layer(model: BergamotModel, srcs: list[np.ndarray]):
    ids, mask = model._source_ids(srcs)
    dev = model._device
    mapped = dev.shortlist.map_ids(ids, mask)
    cols, out_w, bias = dev.shortlist.layer(dev._upload(mapped, np.int64))
    return cols.numpy(), out_w.numpy(), bias.numpy()


@pytest.mark.parametrize("size", [1, 7, 300])
def test_device_shortlist_is_the_hosts(model, size):
    rows = gettext_set("en-pt")
    srcs = [np.array(model.encode(s)) for s, _ in rows[:size]]
    cols, out_w, bias = device_layer(model, srcs)
    h_cols, h_out_w, h_allowed, h_colbias = model._shortlist_layer(srcs)
    np.testing.assert_array_equal(cols, h_cols)
    np.testing.assert_array_equal(out_w, h_out_w)
    np.testing.assert_array_equal(bias, np.where(h_allowed, h_colbias, np.float32(-np.inf)))


def test_odd_ids_and_rows_without_eos(model):
    """Ids outside the shortlist table, repeats and rows of different lengths without EOS
    (the zero padding must not lend a row EOS's list)."""
    srcs = [np.array([431, 431, 431]), np.array([5]), np.array([10**6, 7, 31999, 12])]
    cols, out_w, bias = device_layer(model, srcs)
    h_cols, _, h_allowed, h_colbias = model._shortlist_layer(srcs)
    np.testing.assert_array_equal(cols, h_cols)
    np.testing.assert_array_equal(bias, np.where(h_allowed, h_colbias, np.float32(-np.inf)))
    # 8k candidates per row, one fewer where <unk> is among them
    assert set((np.isfinite(bias).sum(axis=1) % 8).tolist()) <= {0, 7}


def test_only_when_asked(model_dir):
    """Left to itself the engine keeps the host's numpy (faster on the H200 measured and
    on the CPU EP)."""
    m = BergamotModel(model_dir / "bergamot-en-pt", "fp32", decoder_loop="device")
    assert m._device.shortlist is None
