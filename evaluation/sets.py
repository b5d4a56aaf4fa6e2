"""The evaluation sets in ``evaluation/data`` (built by ``bench.make_eval_sets`` and
``bench.make_span_sets`` from Debian's gettext catalogs)."""

from __future__ import annotations

import json
from pathlib import Path

DATA = Path(__file__).parent / "data"


def load_tsv(path: Path | str) -> list[tuple[str, str]]:
    """(source, human translation) rows of a set; ``#`` lines are its provenance header.
    A bare name (``en-pt.gettext.tsv``) is looked up in ``DATA``."""
    path = Path(path)
    if not path.is_absolute() and not path.exists():
        path = DATA / path
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            src, ref, *_ = line.split("\t")
            rows.append((src, ref))
    return rows


def gettext_set(pair: str) -> list[tuple[str, str]]:
    """The plain-sentence set of a pair (``en-pt``, ``pt-en``)."""
    return load_tsv(DATA / f"{pair}.gettext.tsv")


def glossary() -> dict[str, str]:
    """The software glossary of the glossary set (source term -> target term)."""
    return json.loads((DATA / "en-pt.glossary.json").read_text(encoding="utf-8"))["glossary"]
