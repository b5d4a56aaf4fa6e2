"""PO quality (issue 12): msgstr filled through the PO format against the catalog's real
translations, next to the plain-text path on the same entries.

``po_bleu(catalogs, limit, engine_call)`` takes entries from real catalogs (``.mo`` or
``.po``; round robin over the catalogs in the order given, so every catalog is
represented): singular entries with a human translation (not fuzzy) and something to
translate (a letter outside placeholders), their msgid unique. It then

(a) builds a ``.pot`` of them (msgctxt kept, every msgstr blank) and runs it through
    ``translate_document`` with the PO format (each msgid planned into sentences, line
    structure kept, spans protected), and
(b) runs the msgids through ``protect.run_sync`` as plain segments (one segment each),

and scores both against the real msgstr with sacrebleu (BLEU and chrF).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from control_plane.engine.base import Translation

EngineCall = Callable[[list[str]], list[Translation]]


def _load(path: Path):  # noqa: ANN202 - a polib file
    import polib

    return polib.mofile(str(path)) if path.suffix == ".mo" else polib.pofile(str(path))


def _usable(entry) -> bool:  # noqa: ANN001 - a polib entry
    from control_plane.text.spans import find_spans, has_text, outside

    if not entry.msgid or entry.msgid_plural or entry.obsolete or not entry.msgstr.strip():
        return False
    if "fuzzy" in getattr(entry, "flags", ()):
        return False
    return has_text(outside(entry.msgid, find_spans(entry.msgid)))


def select_entries(catalogs: Sequence[Path | str], limit: int) -> list[tuple[str, str, str]]:
    """(msgctxt, msgid, msgstr) of up to ``limit`` entries, round robin over catalogs."""
    queues = []
    for path in catalogs:
        entries = [e for e in _load(Path(path)) if _usable(e)]
        queues.append([(e.msgctxt or "", e.msgid, e.msgstr) for e in entries])
    seen: set[str] = set()
    out: list[tuple[str, str, str]] = []
    depth = 0
    while len(out) < limit and any(depth < len(q) for q in queues):
        for q in queues:
            if depth < len(q) and q[depth][1] not in seen and len(out) < limit:
                seen.add(q[depth][1])
                out.append(q[depth])
        depth += 1
    return out


def _template(rows: list[tuple[str, str, str]]) -> bytes:
    import polib

    pot = polib.POFile()
    pot.metadata = {
        "Project-Id-Version": "po-bleu",
        "MIME-Version": "1.0",
        "Content-Type": "text/plain; charset=UTF-8",
        "Content-Transfer-Encoding": "8bit",
    }
    for ctxt, msgid, _ in rows:
        pot.append(polib.POEntry(msgctxt=ctxt or None, msgid=msgid, msgstr=""))
    return str(pot).encode("utf-8")


def po_bleu(
    catalogs: Sequence[Path | str],
    limit: int = 500,
    engine_call: EngineCall | None = None,
    source: str = "en",
    target: str = "pt",
) -> dict:
    """BLEU and chrF of the PO path and of the plain-text path on the same entries."""
    import polib

    from control_plane.text.formats import translate_document
    from control_plane.text.formats.base import Options
    from control_plane.text.formats.po import FORMAT
    from control_plane.text.protect import run_sync
    from control_plane.text.spans import Protection
    from evaluation.quality import score

    if engine_call is None:
        raise ValueError("po_bleu needs an engine_call")
    rows = select_entries(catalogs, limit)
    refs = [r for _, _, r in rows]
    t0 = time.perf_counter()
    out = translate_document(
        _template(rows), FORMAT, engine_call, Options(source, target, extra={"po_comment": ""})
    )
    po_seconds = time.perf_counter() - t0
    po = polib.pofile(out.decode("utf-8"))
    by_key = {(e.msgctxt or "", e.msgid): e.msgstr for e in po}
    po_hyps = [by_key[(c, m)] for c, m, _ in rows]
    t0 = time.perf_counter()
    plain = [t.text for t in run_sync([m for _, m, _ in rows], Protection(), engine_call)]
    plain_seconds = time.perf_counter() - t0
    return {
        "entries": len(rows),
        "catalogs": len(catalogs),
        "po": {**score(po_hyps, refs), "seconds": round(po_seconds, 2)},
        "plain": {**score(plain, refs), "seconds": round(plain_seconds, 2)},
        "empty_po_msgstr": sum(not h.strip() for h in po_hyps),
    }
