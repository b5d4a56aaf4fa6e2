import numpy as np

from control_plane.engine.shortlist import Shortlist
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
