"""source_language auto as admission decides it: over every configured language, with
the served languages deciding when the detector is unsure; on the evaluation sets'
sentences of 5+ words, both sides, at least 99% right per language (issue 12)."""

from __future__ import annotations

import pytest

from control_plane.jobs.admission import Rejected, detect_source
from evaluation.sets import gettext_set

SERVED = ["en", "pt"]


def sentences(lang: str) -> list[str]:
    rows = gettext_set("en-pt") + [(b, a) for a, b in gettext_set("pt-en")]
    side = 0 if lang == "en" else 1
    return [r[side] for r in rows if len(r[side].split()) >= 5]


@pytest.mark.parametrize("lang", SERVED)
def test_accuracy_on_the_evaluation_sets(lang):
    texts = sentences(lang)
    right = sum(detect_source(t, "text", SERVED).language == lang for t in texts)
    share = right / len(texts)
    print(f"\n{lang}: {right}/{len(texts)} = {share:.2%}")
    assert len(texts) > 800 and share >= 0.99


def test_a_language_no_model_serves_is_named():
    found = detect_source(
        "Die Datei konnte nicht geöffnet werden, weil sie beschädigt ist.", "text", SERVED
    )
    assert found.language == "de" and found.confidence > 0.5


def test_documents_are_detected_by_their_text_not_their_syntax():
    po = 'msgid ""\nmsgstr ""\n\nmsgid "O arquivo não pôde ser aberto porque está corrompido."\n'
    po += 'msgstr ""\n'
    assert detect_source(po, "po", SERVED).language == "pt"
    html = "<html><body><p>The file could not be opened because it is damaged.</p></body></html>"
    assert detect_source(html, "html", SERVED).language == "en"


def test_nothing_to_detect_by_is_a_clear_error():
    with pytest.raises(Rejected) as exc:
        detect_source("12345 — 678", "text", SERVED)
    assert exc.value.code == "language_not_detected"
