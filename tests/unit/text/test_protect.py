"""control_plane.text.protect: mask, check, unmask, fallback; fake engines plus one real."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import pytest

from control_plane.engine.base import Translation
from control_plane.text.protect import _tag_spans, mask, protect, run_async, run_sync, unmask
from control_plane.text.spans import Protection, Span, find_spans

# ---------------------------------------------------------------- fake engines


class Fake:
    """A context-free "translator": upper-cases letters (mask tokens are upper case
    already), optionally damaging the mask tokens of the first round. Records calls."""

    def __init__(self, damage=None, score=None):
        self.damage = damage
        self.score = score or (lambda text: 0.9)
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> list[Translation]:
        self.calls.append(list(texts))
        first = len(self.calls) == 1
        outs = []
        for t in texts:
            out = t.upper()
            if first and self.damage:
                out = self.damage(out)
            outs.append(Translation(out, self.score(t)))
        return outs

    @property
    def sent(self) -> list[str]:
        return [t for call in self.calls for t in call]


def drop_token(text: str) -> str:
    return re.sub(r"X1", "", text, count=1)


def double_token(text: str) -> str:
    return text.replace("X1", "X1 X1", 1)


def invent_token(text: str) -> str:
    return text + " X9"


def swap_tokens(text: str) -> str:
    return text.replace("X1", "@").replace("X2", "X1").replace("@", "X2")


# ---------------------------------------------------------------- mask / unmask


def masked(text: str, protection: Protection | None = None):
    fmt = protection.format if protection else "text"
    return mask(text, find_spans(text, protection, _tag_spans(text, fmt)))


def test_mask_replaces_spans_by_numbered_tokens():
    m = masked("Copy %s to %d places")
    assert m.text == "Copy X1 to X2 places"
    assert m.tokens == ["X1", "X2"]
    assert unmask(m, m.text) == "Copy %s to %d places"


def test_mask_separates_glued_spans_and_unmask_joins_them_again():
    text = "Got %d%s (%s) at %s:%d."
    m = masked(text)
    assert m.text == "Got X1 ( X2 ) at X3 : X4 ."  # touching %d%s are one span
    assert unmask(m, m.text) == text


def test_mask_letter_avoids_tokens_already_in_the_text():
    m = masked("Model X1 costs %s")
    assert m.text == "Model X1 costs Z1"
    assert unmask(m, "O modelo X1 custa Z1") == "O modelo X1 custa %s"


def test_unmask_follows_the_model_order():
    m = masked("From %1$s to %2$s")
    assert unmask(m, "Para X2 de X1") == "Para %2$s de %1$s"


def test_unmask_uses_the_span_output_for_glossary_terms():
    m = masked("Open the settings", Protection.of(glossary={"settings": "configurações"}))
    assert m.text == "Open the X1"
    assert unmask(m, "Abra as X1") == "Abra as configurações"


@pytest.mark.parametrize(
    "output",
    [
        "Copie para X2 lugares",  # lost
        "Copie X1 X1 para X2 lugares",  # doubled
        "Copie X1 para X2 lugares X3",  # invented
        "Copie X1 para lugares",  # the other one lost
    ],
)
def test_unmask_refuses_a_damaged_output(output):
    assert unmask(masked("Copy %s to %d places"), output) is None


def test_unmask_does_not_take_a_token_inside_a_word():
    m = masked("Copy %s now")
    assert unmask(m, "AX1 X1") == "AX1 %s"
    assert unmask(m, "X12") is None


def tagged(text: str) -> tuple[str, list[Span]]:
    """Inline tags found by hand (the markup module's job), for mask/unmask only."""
    spans = []
    for t in re.finditer(r"</?(\w+)>", text):
        role = "close" if t.group(0).startswith("</") else "open"
        spans.append(Span(t.start(), t.end(), "tag", t.group(0), role, t.group(1)))
    return text, spans


def test_unmask_keeps_tags_nested():
    text, spans = tagged("A <b>bold <i>move</i></b> here")
    m = mask(text, spans)
    assert m.text == "A X1 bold X2 move X3 X4 here"
    assert unmask(m, m.text) == text
    assert unmask(m, "Um X1 movimento X2 ousado X3 X4 aqui") is not None
    assert unmask(m, "Um X1 ousado X2 movimento X4 X3 aqui") is None  # </b> before </i>
    assert unmask(m, "Um X3 ousado X2 movimento X1 X4 aqui") is None  # closes first


def test_unmask_glued_tag_round_trip():
    text, spans = tagged("<b>Bold</b>")
    m = mask(text, spans)
    assert m.text == "X1 Bold X2"
    assert unmask(m, "X1 Negrito X2") == "<b>Negrito</b>"


# ---------------------------------------------------------------- protect with a fake engine


def test_plain_and_masked_segments_go_in_one_round():
    fake = Fake()
    out = run_sync(["Hello world", "Copy %s now"], None, fake)
    assert fake.calls == [["Hello world", "Copy X1 now"]]
    assert [t.text for t in out] == ["HELLO WORLD", "COPY %s NOW"]


@pytest.mark.parametrize(
    "segment", ["(2)", "[4]", "—", "• — ©2024", "https://example.com/a?b=1", "%s", "5 MB", ""]
)
def test_passthrough_never_reaches_the_engine(segment):
    fake = Fake()
    out = run_sync([segment], None, fake)
    assert fake.calls == []
    assert out == [Translation(segment, 1.0)]


def test_passthrough_among_other_segments():
    fake = Fake()
    out = run_sync(["(2)", "Hello", "%s: %d", "bye"], None, fake)
    assert fake.sent == ["Hello", "bye"]
    assert [t.text for t in out] == ["(2)", "HELLO", "%s: %d", "BYE"]


def test_a_segment_that_is_only_a_glossary_term_gets_the_target_without_the_engine():
    fake = Fake()
    p = Protection.of(glossary={"settings": "configurações"})
    assert run_sync(["Settings", "settings:"], p, fake) == [
        Translation("Configurações", 1.0),
        Translation("configurações:", 1.0),
    ]
    assert fake.calls == []


def test_duplicates_are_sent_once():
    fake = Fake()
    out = run_sync(["Hello", "Copy %s", "Hello", "Copy %s", "Copy %d"], None, fake)
    assert fake.calls == [["Hello", "Copy X1"]]  # "Copy %d" masks to the same text
    assert [t.text for t in out] == ["HELLO", "COPY %s", "HELLO", "COPY %s", "COPY %d"]


@pytest.mark.parametrize("damage", [drop_token, double_token, invent_token])
def test_damaged_masks_fall_back_to_pieces(damage):
    fake = Fake(damage)
    out = run_sync(["Copy %s to %d places now"], None, fake)
    assert len(fake.calls) == 2
    assert fake.calls[1] == ["Copy", "to", "places now"]
    assert out[0].text == "COPY %s TO %d PLACES NOW"


def test_reordered_tokens_are_not_a_fallback():
    fake = Fake(swap_tokens)
    out = run_sync(["From %1$s to %2$s"], None, fake)
    assert len(fake.calls) == 1
    assert out[0].text == "FROM %2$s TO %1$s"


def test_fallback_keeps_whitespace_and_spans_in_source_order():
    fake = Fake(drop_token)
    out = run_sync(["  Copy `a b`   to https://x.org/y, then stop.  "], None, fake)
    assert fake.calls[1] == ["Copy", "to", "then stop"]  # edge punctuation stays put
    assert out[0].text == "  COPY `a b`   TO https://x.org/y, THEN STOP.  "


def test_fallback_pieces_are_deduplicated_across_segments():
    fake = Fake(drop_token)
    run_sync(["Copy %s and %s", "Copy %d and %d", "Move %s and %d"], None, fake)
    assert sorted(fake.calls[1]) == ["Copy", "Move", "and"]


def test_only_damaged_segments_fall_back():
    def damage_second(text: str) -> str:
        return drop_token(text) if text.startswith("MOVE") else text

    fake = Fake(damage_second)
    out = run_sync(["Copy %s now", "Move %s later"], None, fake)
    assert fake.calls[1] == ["Move", "later"]
    assert [t.text for t in out] == ["COPY %s NOW", "MOVE %s LATER"]


def test_fallback_confidence_is_word_weighted():
    scores = {"Copy": 0.5, "to three places": 1.0}
    fake = Fake(drop_token, score=lambda t: scores.get(t, 0.1))
    out = run_sync(["Copy %s to three places"], None, fake)
    assert fake.calls[1] == ["Copy", "to three places"]
    assert out[0].score == pytest.approx((0.5 * 1 + 1.0 * 3) / 4)


def test_masked_confidence_is_the_engine_score():
    fake = Fake(score=lambda t: 0.42)
    assert run_sync(["Copy %s"], None, fake)[0].score == 0.42


def test_glossary_terms_reach_the_output():
    fake = Fake()
    p = Protection.of(glossary={"file": "arquivo", "settings": "configurações"})
    out = run_sync(["Save the file in Settings"], p, fake)
    # first unmasked (the fake upper-cases, so the terms are missing), then masked
    assert fake.calls == [["Save the file in Settings"], ["Save the X1 in X2"]]
    assert out[0].text == "SAVE THE arquivo IN Configurações"


def test_glossary_output_that_has_the_terms_is_kept_unmasked():
    fake = Fake(lambda t: t.replace("FILE", "arquivo"))
    out = run_sync(["Save the file now"], Protection.of(glossary={"file": "arquivo"}), fake)
    assert fake.calls == [["Save the file now"]]
    assert out[0].text == "SAVE THE arquivo NOW"


def test_an_emptied_tag_pair_is_a_failed_check():
    m = masked("Open the <a href='/x'>menu</a>.", Protection.of(format="html"))
    assert unmask(m, "Abra o X1 X2 menu.") is None
    assert unmask(m, "Abra o X1 menu X2.") == "Abra o <a href='/x'>menu</a>."


def test_do_not_translate_reaches_the_output():
    fake = Fake()
    p = Protection.of(do_not_translate=["Acme Cloud"])
    assert run_sync(["Open Acme Cloud today"], p, fake)[0].text == "OPEN Acme Cloud TODAY"


BATCH = [
    "Copy %s to %d places now",
    "Hello world",
    "(2)",
    "See https://example.com/docs.",
    "Copy %s to %d places now",
    "Run `make test` in /tmp/build",
    "Write to bug-make@gnu.org, please",
    "",
    "{count} files were copied to {dest}",
]


@pytest.mark.parametrize("damage", [None, drop_token, swap_tokens])
def test_batch_equals_one_by_one(damage):
    batch = run_sync(BATCH, None, Fake(damage))
    single = [run_sync([s], None, Fake(damage))[0] for s in BATCH]
    assert batch == single


def test_run_async_equals_run_sync():
    async def go():
        fake = Fake(drop_token)

        async def call(texts):
            return fake(texts)

        return await run_async(BATCH, None, call)

    assert asyncio.run(go()) == run_sync(BATCH, None, Fake(drop_token))


def test_protect_is_a_generator_of_rounds():
    rounds = protect(["Copy %s now"])
    assert next(rounds) == ["Copy X1 now"]
    with pytest.raises(StopIteration) as stop:
        rounds.send([Translation("Copie X1 agora", 0.8)])
    assert stop.value.value == [Translation("Copie %s agora", 0.8)]


# ---------------------------------------------------------------- the real int8 engine

# the store `make test` fills (MTB_MODEL_DIR=.models) and the functional tests' model_dir
# fixture uses; a unit test does not export, it skips where the store is empty
MODEL = (
    Path(os.environ.get("MTB_MODEL_DIR") or Path(__file__).resolve().parents[3] / ".models")
    / "bergamot-en-pt"
)

TRICKY = [
    "Deleted %d files from %s.",
    "Copy %1$s to %2$s and keep %3$d backups.",
    "Hello %(name)s, you have %(count)d new messages.",
    "You have {count} new messages in {folder}.",
    "Moving {0} to {1} failed.",
    "You have {n, plural, one {# item} other {# items}} in your cart.",
    "Set ${HOME} or $XDG_CONFIG_HOME before starting.",
    "Run `make test` before `git push`.",
    "See https://example.com/docs/install.html for details.",
    "Visit the wiki (https://en.wikipedia.org/wiki/Foo_(bar)) for more.",
    "Report bugs to bug-make@gnu.org, please.",
    "Edit /etc/hosts and restart the service.",
    r"Open C:\Users\me\Documents\report.txt in the editor.",
    "Read README.md and docs/setup.rst first.",
    "The download is 5 MB and takes 30s on a 2.4 GHz machine.",
    "%s%s could not be opened.",
    "%s: %s",
    "Invalid name “%s”: names must begin with a lowercase letter",
    "Error when getting information for directory “%s”: %s",
    "`%s' does not exist. Using defaults.",
    "Type of message, “%s”, does not match expected type “%s”",
    "License GPLv3+: GNU GPL version 3 or later <https://gnu.org/licenses/gpl.html>",
    "Ubuntu Archive Automatic Signing Key <ftpmaster@ubuntu.com>",
    "Error parsing key “%s” in schema “%s” as specified in override file “%s”: %s.",
    "Could not write %.250s: %s",
    "Press %s to continue or %s to cancel.",
    "The file {file} was saved to ~/Documents/{file}.",
    "Click the Acme Cloud button to sync your files.",
    "Open the settings and change your password.",
    "%d%% complete, %lu bytes left",
]


def kept_every_span(source: str, output: str, protection: Protection) -> bool:
    spans = find_spans(source, protection)
    return all(
        output.count(s.output) == (source.count(s.output) if s.kind != "glossary" else 1)
        for s in spans
    )


@pytest.mark.skipif(not (MODEL / "vocab.spm").exists(), reason="exported en-pt model missing")
def test_real_int8_keeps_every_span_and_batch_equals_one_by_one():
    from control_plane.engine.bergamot_engine import BergamotModel

    model = BergamotModel(MODEL, precision="int8")
    protection = Protection.of(
        do_not_translate=["Acme Cloud"],
        glossary={"settings": "configurações", "password": "senha"},
    )
    batch = run_sync(TRICKY, protection, model.translate)
    lost = [
        (s, t.text)
        for s, t in zip(TRICKY, batch, strict=True)
        if not kept_every_span(s, t.text, protection)
    ]
    assert lost == []
    single = [run_sync([s], protection, model.translate)[0] for s in TRICKY]
    assert [t.text for t in batch] == [t.text for t in single]


needs_model = pytest.mark.skipif(
    not (MODEL / "vocab.spm").exists(), reason="exported en-pt model missing"
)


@needs_model
@pytest.mark.parametrize(
    "source, kept",
    [
        ("Type of message, “%s”, does not match expected type “%s”", "“%s”"),
        ("License GPLv3+: GNU GPL version 3 or later <https://gnu.org/licenses/gpl.html>", "<"),
    ],
)
def test_real_int8_keeps_the_quotes_around_a_span(source, kept):
    from control_plane.engine.bergamot_engine import BergamotModel

    out = run_sync([source], None, BergamotModel(MODEL, precision="int8").translate)[0].text
    assert out.count(kept) == source.count(kept)


@needs_model
def test_real_int8_glossary_term_glued_to_punctuation_stays_a_word():
    from control_plane.engine.bergamot_engine import BergamotModel

    p = Protection.of(glossary={"password": "senha"})
    out = run_sync(
        ["You must choose a longer password."], p, BergamotModel(MODEL, "int8").translate
    )
    assert re.search(r"(?<!\w)senha(?!\w)", out[0].text)


def test_unmask_keeps_the_space_after_a_token_moved_away_from_its_glued_neighbour():
    """The same defect without a model: the token moved away from the '.' it was glued
    to, and unmask takes the space after it anyway ("senhamais")."""
    m = masked("Choose a longer password.", Protection.of(glossary={"password": "senha"}))
    assert m.text == "Choose a longer X1 ."
    assert unmask(m, "Escolha uma X1 mais longa .") == "Escolha uma senha mais longa ."


# ---------------------------------------------------------------- callers' terms in markup


@pytest.mark.parametrize("fmt", ["html", "xml"])
def test_glossary_and_do_not_translate_terms_match_escaped_markup(fmt):
    """A segment of an HTML/XML document is serialized markup: the caller's "R&D" is
    "R&amp;D" there, and its "&amp;" a reference span the term takes in."""
    from control_plane.text.markup import plan_markup

    doc = (
        "<p>The R&amp;D team at <b>AT&amp;T Mobile</b> said hi.</p>"
        '<p title="say &quot;hi&quot; now">x &lt;y&gt; R&amp;D</p>'
    )
    _, layouts = plan_markup(doc, fmt, 1000, "en")
    protection = Protection.of(fmt, ["AT&T Mobile", 'say "hi"'], {"R&D": "P&D"})
    (layout,) = layouts
    out = layout.render([t.text for t in run_sync(layout.segments, protection, Fake())])
    assert out == (
        "<p>THE P&amp;D TEAM AT <b>AT&amp;T Mobile</b> SAID HI.</p>"
        '<p title="say &quot;hi&quot; NOW">X &lt;Y&gt; P&amp;D</p>'
    )
    # plain text matches the raw terms, as before
    plain = run_sync(
        ["The R&D team at AT&T Mobile."],
        Protection.of("text", ["AT&T Mobile"], {"R&D": "P&D"}),
        Fake(),
    )
    assert plain[0].text == "THE P&D TEAM AT AT&T Mobile."


def test_many_spans_in_one_segment_are_found_in_linear_time():
    """Each claim looked at every span taken before it: quadratic in a long markup
    segment's spans."""
    import time

    def timed(n: int) -> float:
        seg = " ".join(f"Item {{x{i}}} costs 5 MB." for i in range(n))
        t = time.perf_counter()
        spans = find_spans(seg)
        assert [s.output for s in spans if s.kind == "placeholder"][-1] == f"{{x{n - 1}}}"
        return time.perf_counter() - t

    small, large = min(timed(2000) for _ in range(2)), min(timed(8000) for _ in range(2))
    assert large < 8 * small + 0.05, (small, large)  # 4x the spans; quadratic was 16x


@pytest.mark.parametrize(
    ("segment", "glossary", "expected"),
    [
        ("Open the file.", {"file": "ARQUIVO"}, "Abra o ARQUIVO."),  # was "Abra o arquivo."
        ("Open the file.", {"file": "Arquivo"}, "Abra o Arquivo."),
        ("File not found.", {"file": "arquivo"}, "Arquivo not found."),  # a sentence start
    ],
)
def test_a_target_term_the_model_wrote_in_another_case_comes_out_as_given(
    segment, glossary, expected
):
    def model(texts: list[str]) -> list[Translation]:
        out = [t.replace("Open the", "Abra o").replace("file", "arquivo") for t in texts]
        return [Translation(t.replace("File", "Arquivo"), 0.9) for t in out]

    outcomes: list[str] = []
    got = run_sync([segment], Protection.of(glossary=glossary), model, outcomes)
    assert (got[0].text, outcomes) == (expected, ["terms"])
