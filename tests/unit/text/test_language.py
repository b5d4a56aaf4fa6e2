"""Language detection for ``source_language: "auto"`` (control_plane.text.language)."""

from __future__ import annotations

import time

import pytest

from control_plane.text import language
from control_plane.text.language import SAMPLE_CHARS, Detection, detect, sample
from evaluation.sets import load_tsv


@pytest.fixture(autouse=True)
def _default_languages(monkeypatch):
    monkeypatch.delenv(language.ENV_LANGUAGES, raising=False)
    language.configure(None)
    yield
    language.configure(None)


def _sentences(lang: str) -> list[str]:
    """Both sides of the gettext sets: the English or the Portuguese column, 5+ words."""
    en_pt = load_tsv("en-pt.gettext.tsv")  # english, translation
    pt_en = load_tsv("pt-en.gettext.tsv")  # translation, english
    if lang == "en":
        texts = [en for en, _ in en_pt] + [en for _, en in pt_en]
    else:
        texts = [pt for _, pt in en_pt] + [pt for pt, _ in pt_en]
    return sorted({t for t in texts if len(t.split()) >= 5})


def _accuracy(texts: list[str], lang: str, candidates: list[str] | None) -> float:
    start = time.perf_counter()
    found = [detect(t, candidates).language for t in texts]
    per_call = (time.perf_counter() - start) / len(texts)
    wrong = [(t, f) for t, f in zip(texts, found, strict=True) if f != lang]
    accuracy = 1 - len(wrong) / len(texts)
    among = ",".join(candidates or language.languages())
    print(
        f"\n{lang} among {among}: {accuracy:.2%} of {len(texts)} texts "
        f"({len(wrong)} wrong), {per_call * 1000:.2f} ms/call"
    )
    for text, got in wrong:
        print(f"  {got}: {text}")
    return accuracy


@pytest.mark.parametrize("lang", ["en", "pt"])
def test_accuracy_among_the_served_languages(lang):
    """The issue's bar: 99% on sentences of 5+ words, choosing among the languages the
    service translates from (en, pt)."""
    texts = _sentences(lang)
    assert len(texts) >= 300
    assert _accuracy(texts, lang, ["en", "pt"]) >= 0.99


@pytest.mark.parametrize(("lang", "floor"), [("en", 0.99), ("pt", 0.96)])
def test_accuracy_among_all_configured_languages(lang, floor):
    """Among the eleven default languages short UI strings are harder: Portuguese ones
    such as "Usar proxy HTTP para todos os protocolos" read as Spanish (measured 96.5%;
    a floor against regressions). Three sentences together, a small document, are
    detected at 99%+."""
    texts = _sentences(lang)
    assert _accuracy(texts, lang, None) >= floor
    documents = [" ".join(texts[i : i + 3]) for i in range(0, len(texts) - 2, 3)]
    assert _accuracy(documents, lang, None) >= 0.99


def test_candidates_narrow_the_choice():
    text = "Não foi possível abrir o arquivo porque ele não existe."
    assert detect(text).language == "pt"
    got = detect(text, candidates=["en", "pt"])
    assert got.language == "pt" and 0.5 < got.confidence <= 1.0
    # a single candidate: how sure the configured detector is of it
    assert detect(text, candidates=["en"]).confidence < 0.1
    assert detect(text, candidates=["pt"]).confidence > 0.5
    with pytest.raises(ValueError, match="unknown language code"):
        detect(text, candidates=["en", "xx"])


def test_configured_languages(monkeypatch):
    monkeypatch.setenv(language.ENV_LANGUAGES, "en, pt")
    assert language.languages() == ("en", "pt")
    # Spanish is not among them: the closest configured language, with less confidence
    assert detect("El archivo no se puede abrir porque no existe.").language in {"en", "pt"}
    language.configure(["en", "pt", "es"])
    assert detect("El archivo no se puede abrir porque no existe.").language == "es"
    with pytest.raises(ValueError):
        language.configure(["en"])


@pytest.mark.parametrize("text", ["", "   \n\t", "1234 5678", "!!! --- ... 42%", "→ ★ ✓ 3.14"])
def test_text_without_letters_is_refused(text):
    with pytest.raises(ValueError, match="without letters"):
        detect(text)


def test_mixed_content():
    # markup, placeholders, numbers and a URL around Portuguese text
    text = (
        "<p>Clique em <b>Salvar</b> para gravar %s alterações em "
        "https://example.com/docs/v2 antes de 12:30.</p>"
    )
    assert detect(text).language == "pt"
    # a Portuguese quote inside an English paragraph: the paragraph's language
    text = (
        "The error message reads 'arquivo não encontrado', which means the file was not "
        "found on the disk; check the path in the configuration and try again."
    )
    assert detect(text).language == "en"
    # half and half: one of the two, with less confidence than either alone
    en = "The installation finished without errors and the service is running now. " * 3
    pt = "A instalação terminou sem erros e o serviço está em execução agora. " * 3
    mixed = detect(en + pt)
    assert mixed.language in {"en", "pt"}
    assert mixed.confidence < min(detect(en).confidence, detect(pt).confidence)
    # other scripts
    assert detect("Файл не найден. Проверьте путь и попробуйте снова.").language == "ru"
    assert detect("ファイルが見つかりません。パスを確認してください。").language == "ja"


def test_sample_reads_start_middle_and_end():
    assert sample("short text") == "short text"
    head, body, tail = "alpha " * 400, "beta " * 400, "gamma " * 400
    got = sample(head + body + tail)
    assert len(got) <= SAMPLE_CHARS
    assert got.startswith("alpha") and "beta" in got and got.endswith("gamma")
    # no window starts or ends inside a word
    assert all(w in {"alpha", "beta", "gamma"} for w in got.split())


def test_a_document_is_detected_from_its_sample():
    # a Portuguese document whose start is a licence in English: the middle and the end
    # outvote it
    doc = (
        "Copyright (c) 2024 The Authors. Licensed under the Apache License.\n"
        + "O serviço traduz documentos inteiros mantendo a sua estrutura original. " * 300
    )
    assert detect(doc).language == "pt"


def test_cost_is_bounded_by_the_sample():
    detect("warm up the models for every configured language, please.")
    text = "The quick brown fox jumps over the lazy dog near the river bank. " * 130_000
    assert len(text) > 8 * 1024 * 1024
    start = time.perf_counter()
    got = detect(text)
    worst = time.perf_counter() - start
    short = "The quick brown fox jumps over the lazy dog near the river bank. " * 31
    start = time.perf_counter()
    detect(short[:SAMPLE_CHARS])
    bounded = time.perf_counter() - start
    print(f"\n8 MiB: {worst * 1000:.2f} ms; {SAMPLE_CHARS} chars: {bounded * 1000:.2f} ms")
    assert got == Detection("en", got.confidence) and got.confidence > 0.9
    assert worst < 0.25  # only the sample is read (a whole-text scan takes seconds)
