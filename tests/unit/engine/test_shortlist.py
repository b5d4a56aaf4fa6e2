import struct

import numpy as np
import sentencepiece as spm

from control_plane.engine.shortlist import MAGIC, Shortlist
from evaluation.sets import gettext_set
from export.bergamot import bundled_model_dir


def test_candidates_follow_marian_rules():
    path = next(bundled_model_dir("en-pt").glob("lex.*.s2t.bin"))
    sl = Shortlist(path, 32000)
    assert sl.first == 50 and sl.best == 50
    cand = sl.candidates([431, 5, 0])
    assert len(cand) % 8 == 0
    assert np.all(np.diff(cand) > 0)
    assert set(range(50)) <= set(cand.tolist())
    own = set(sl.lists[sl.offsets[431] : sl.offsets[432]].tolist())
    assert own <= set(cand.tolist())
    # order and repetition of source ids do not matter
    np.testing.assert_array_equal(cand, sl.candidates([0, 5, 431, 431]))


def test_batch_mask_is_each_rows_candidates():
    """The vectorised batch form gives candidates() row for row, padding included, on
    real sentences and on odd ones (repeats, ids past the table, empty)."""
    folder = bundled_model_dir("en-pt")
    sl = Shortlist(next(folder.glob("lex.*.s2t.bin")), 32000)
    sp = spm.SentencePieceProcessor(model_file=str(next(folder.glob("*.spm"))))
    rows = [np.array(sp.encode(s) + [0]) for s, _ in gettext_set("en-pt")[:300]]
    rows += [np.array([431, 431, 431]), np.array([], dtype=np.int64), np.array([10**6, -1, 5])]
    mask = sl.batch_mask(rows)
    assert mask.shape == (len(rows), 32000)
    for r, src in enumerate(rows):
        np.testing.assert_array_equal(np.flatnonzero(mask[r]), sl.candidates(src))
    assert {int(n) % 8 for n in mask.sum(axis=1)} == {0}


def test_batch_mask_pads_past_a_full_window(tmp_path):
    """A row whose ids just after ``first`` are all taken still gets its padding (the
    one-row path) - a shortlist file built here, one source word listing 50..130."""
    lists = np.arange(50, 131, dtype=np.uint32)  # 81 words: 131 with the first 50
    offsets = np.array([0, 0, len(lists)], dtype=np.uint64)
    header = struct.pack("<6Q", MAGIC, 0, 50, 50, len(offsets), len(lists))
    data = header + offsets.tobytes() + lists.tobytes()
    path = tmp_path / "lex.bin"
    path.write_bytes(data)
    sl = Shortlist(path, 1000)
    rows = [np.array([1]), np.array([0]), np.array([1, 0])]
    mask = sl.batch_mask(rows)
    for r, src in enumerate(rows):
        np.testing.assert_array_equal(np.flatnonzero(mask[r]), sl.candidates(src))
    assert mask[0].sum() == 136 and mask[0, 131:136].all()
