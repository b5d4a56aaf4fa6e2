"""Issue 12 must-show: msgstr filled through the PO format scores no lower than the
plain-text path against the real translations of 500 entries of Debian's pt_BR
catalogs (int8 engine)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from evaluation.po_bleu import po_bleu

REPO = Path(__file__).resolve().parents[4]
LOCALE = Path("/usr/share/locale/pt_BR/LC_MESSAGES")


@pytest.fixture(scope="module")
def engine():
    from control_plane.engine import load_engine
    from export.provision import ensure_default_models

    root = Path(os.environ.get("MTB_MODEL_DIR") or REPO / ".models")
    ensure_default_models(root, ("en-pt",))
    return load_engine(root, precision="int8")


@pytest.mark.slow
def test_po_path_bleu_not_below_plain_path(engine):
    # UI catalogs (the iso_* ones are name lists, not messages), in name order
    catalogs = sorted(p for p in LOCALE.glob("*.mo") if not p.name.startswith("iso_"))
    if len(catalogs) < 10:
        pytest.skip(f"too few catalogs in {LOCALE}")
    report = po_bleu(catalogs, 500, lambda xs: engine.translate(xs, "en", "pt"))
    print(
        f"\nPO path: BLEU {report['po']['bleu']} chrF {report['po']['chrf']}; "
        f"plain path: BLEU {report['plain']['bleu']} chrF {report['plain']['chrf']} "
        f"({report['entries']} entries of {report['catalogs']} catalogs)"
    )
    assert report["entries"] == 500
    assert report["empty_po_msgstr"] == 0
    assert report["po"]["bleu"] >= report["plain"]["bleu"] - 0.01
