"""control_plane.text.spans: what a segment's protected spans are."""

from __future__ import annotations

import pytest

from control_plane.text.spans import (
    Protection,
    Span,
    find_spans,
    has_text,
    outside,
    substitute,
    well_nested,
)


def found(text: str, protection: Protection | None = None) -> list[tuple[str, str]]:
    return [(text[s.start : s.end], s.kind) for s in find_spans(text, protection)]


def texts(text: str, protection: Protection | None = None) -> list[str]:
    return [t for t, _ in found(text, protection)]


# ---------------------------------------------------------------- placeholders


@pytest.mark.parametrize(
    "text, want",
    [
        ("Deleted %s files", ["%s"]),
        ("%d of %d done", ["%d", "%d"]),
        ("Copy %1$s to %2$s", ["%1$s", "%2$s"]),
        ("Item %1$d of %2$d", ["%1$d", "%2$d"]),
        ("Hello %(name)s, you have %(count)d messages", ["%(name)s", "%(count)d"]),
        ("Width %-10.3f and %lu and %zu and %.*s", ["%-10.3f", "%lu", "%zu", "%.*s"]),
        ("%.250s: cannot open", ["%.250s"]),
    ],
)
def test_printf(text, want):
    assert texts(text) == want
    assert {k for _, k in found(text)} == {"placeholder"}


def test_escaped_percent_is_text():
    assert texts("Progress 100%% done") == []
    assert texts("%d%% complete") == ["%d"]


@pytest.mark.parametrize("text", ["I am 100% sure.", "a 50% share of it", "It is 100% done"])
def test_percent_before_a_word_is_not_printf(text):
    assert all(k != "placeholder" for _, k in found(text))


def test_percent_at_end_is_a_number():
    assert found("Loaded 100%") == [("100%", "number")]
    assert found("Loaded 100%.") == [("100%", "number")]


@pytest.mark.parametrize(
    "text, want",
    [
        ("You have {count} new messages", ["{count}"]),
        ("Copying {0} to {1}", ["{0}", "{1}"]),
        ("Value {name!r:>10} here", ["{name!r:>10}"]),
        ("Hello {{ user.name }} there", ["{{ user.name }}"]),
        ("Set ${VAR} and $HOME first", ["${VAR}", "$HOME"]),
        ("Empty {} braces", ["{}"]),
    ],
)
def test_brace_and_shell_placeholders(text, want):
    assert texts(text) == want


def test_icu_plural_is_one_span():
    icu = "{n, plural, one {# item} other {# items}}"
    assert found(f"You have {icu} left") == [(icu, "placeholder")]


def test_lowercase_dollar_word_is_text():
    assert texts("It costs $five") == []


# ---------------------------------------------------------------- code, URLs, e-mail


def test_backtick_code():
    assert found("Run `make test` before `git push`.") == [
        ("`make test`", "code"),
        ("`git push`", "code"),
    ]
    assert found("Use ``foo()`` here") == [("``foo()``", "code")]


def test_code_claims_what_is_inside_it():
    assert found("Edit `/etc/hosts` and `%s`") == [("`/etc/hosts`", "code"), ("`%s`", "code")]


@pytest.mark.parametrize(
    "text, url",
    [
        ("See https://example.com/docs.", "https://example.com/docs"),
        ("See https://example.com/docs, then", "https://example.com/docs"),
        ("Is it http://example.com/a?b=1&c=2?", "http://example.com/a?b=1&c=2"),
        ("(see https://example.com/x)", "https://example.com/x"),
        (
            "Go to https://en.wikipedia.org/wiki/Foo_(bar).",
            "https://en.wikipedia.org/wiki/Foo_(bar)",
        ),
        ("Visit www.example.org/help!", "www.example.org/help"),
        ("Mirror ftp://ftp.debian.org/debian/ now", "ftp://ftp.debian.org/debian/"),
        ('Link "https://example.com" quoted', '"https://example.com"'),  # quotes join
    ],
)
def test_url_without_trailing_punctuation(text, url):
    assert found(text) == [(url, "url")]


def test_url_path_is_not_a_file_path():
    assert [k for _, k in found("Get https://example.com/a/b/setup.py now")] == ["url"]


@pytest.mark.parametrize(
    "text, email",
    [
        ("Write to bug-make@gnu.org.", "bug-make@gnu.org"),
        ("Mail <first.last+tag@mail.example.co.uk> today", "<first.last+tag@mail.example.co.uk>"),
    ],
)
def test_email(text, email):
    assert found(text) == [(email, "email")]


# ---------------------------------------------------------------- paths and numbers


@pytest.mark.parametrize(
    "text, path",
    [
        ("Edit /etc/hosts now", "/etc/hosts"),
        ("Open ~/.config/app/settings.ini please", "~/.config/app/settings.ini"),
        ("Run ./configure first", "./configure"),
        ("Look in ../lib/util.c.", "../lib/util.c"),
        (r"Open C:\Users\me\file.txt now", r"C:\Users\me\file.txt"),
        ("See src/app/main.py for details", "src/app/main.py"),
        ("Read README.md first.", "README.md"),
        ("Install foo-1.2.tar.gz and bar.deb", "foo-1.2.tar.gz"),
    ],
)
def test_paths(text, path):
    assert (path, "path") in found(text)


@pytest.mark.parametrize("text", ["Cannot make/remove an entry", "No IPv4/IPv6 address", "[Y/n]"])
def test_word_slash_word_is_not_a_path(text):
    assert all(k != "path" for _, k in found(text))


@pytest.mark.parametrize(
    "text, number",
    [
        ("A 5 MB file", "5 MB"),
        ("Needs 2GiB of memory", "2GiB"),
        ("Runs at 2.4 GHz.", "2.4 GHz"),
        ("Wait 30s then retry", "30s"),
        ("A 1,5 kg box", "1,5 kg"),
        ("Set 96 dpi", "96 dpi"),
        ("Heat to 180 °C now", "180 °C"),
        ("Zoom 2x now", "2x"),
    ],
)
def test_numbers_with_units(text, number):
    assert found(text) == [(number, "number")]


def test_bare_numbers_and_words_after_numbers_are_text():
    assert found("There are 3 apples and 12 pears") == []
    assert found("Version 2 series") == []
    assert found("5 mice") == []


# ---------------------------------------------------------------- order, adjacency, edges


def test_spans_are_ordered_and_do_not_overlap():
    text = "%s: see https://x.org/%s and `a %d b` in /tmp/x.log"
    spans = find_spans(text)
    assert [s.start for s in spans] == sorted(s.start for s in spans)
    assert all(a.end <= b.start for a, b in zip(spans, spans[1:], strict=False))
    assert texts(text) == ["%s", "https://x.org/%s", "`a %d b`", "/tmp/x.log"]


def test_a_path_takes_the_placeholders_inside_it():
    assert texts("Writing /tmp/%s.log now") == ["/tmp/%s.log"]
    assert texts("Deleted %(count)d files from ${HOME}/tmp.") == ["%(count)d", "${HOME}/tmp"]


def test_adjacent_spans_become_one():
    # touching placeholders are one span: the model sees one token and cannot split them
    assert texts("%s%s") == ["%s%s"]
    assert texts("Got %d%s of data") == ["%d%s"]
    assert texts("{a}{b} joined") == ["{a}{b}"]
    assert texts("%s:%d is the address") == ["%s", "%d"]


def test_quotes_directly_around_a_span_join_it():
    assert texts("File “%s” not found") == ["“%s”"]
    assert texts("Run `%s' first") == ["`%s'"]
    assert texts("Mail <a@b.org> now") == ["<a@b.org>"]
    assert texts("a “%s and” b") == ["%s"]  # not directly around it


def test_spans_at_start_and_end():
    text = "%s could not be opened: %s"
    spans = find_spans(text)
    assert spans[0].start == 0 and spans[-1].end == len(text)
    assert texts("{user} logged in from https://example.com") == ["{user}", "https://example.com"]


def test_output_is_the_span_text_for_builtin_kinds():
    text = "Copy %s to /tmp/x.txt via https://x.org"
    assert all(s.output == text[s.start : s.end] for s in find_spans(text))


def test_plain_text_has_no_spans():
    assert find_spans("The quick brown fox jumps over the lazy dog.") == []
    assert find_spans("") == []


# ---------------------------------------------------------------- do_not_translate


def test_do_not_translate():
    p = Protection.of(do_not_translate=["Acme Cloud", "Acme"])
    assert found("Acme Cloud is not Acme.", p) == [("Acme Cloud", "user"), ("Acme", "user")]


def test_do_not_translate_is_case_sensitive_and_beats_builtins():
    p = Protection.of(do_not_translate=["Open File", "%s tool"])
    assert found("open file and Open File", p) == [("Open File", "user")]
    assert found("the %s tool", p) == [("%s tool", "user")]


def test_blank_do_not_translate_entries_are_ignored():
    assert Protection.of(do_not_translate=["", "  "]).do_not_translate == ()


# ---------------------------------------------------------------- glossary

GLOSSARY = {
    "settings": "configurações",
    "file": "arquivo",
    "pull request": "solicitação de pull",
    "request": "pedido",
    "API": "API",
}


def gloss(text: str) -> list[tuple[str, str]]:
    p = Protection.of(glossary=GLOSSARY)
    return [(text[s.start : s.end], s.output) for s in find_spans(text, p) if s.kind == "glossary"]


def test_glossary_term_and_output():
    assert gloss("Open the settings") == [("settings", "configurações")]


def test_glossary_capital_at_sentence_start():
    assert gloss("Settings are saved") == [("Settings", "Configurações")]


def test_glossary_all_caps():
    assert gloss("OPEN THE FILE NOW") == [("FILE", "ARQUIVO")]


def test_glossary_keeps_target_casing_of_an_upper_case_source_term():
    assert gloss("Call the API") == [("API", "API")]


def test_glossary_longest_term_wins():
    assert gloss("Open a pull request for the request") == [
        ("pull request", "solicitação de pull"),
        ("request", "pedido"),
    ]


def test_glossary_is_word_bounded():
    assert gloss("profiles and files") == []


def test_glossary_does_not_take_characters_of_a_user_string():
    p = Protection.of(do_not_translate=["File Manager"], glossary=GLOSSARY)
    assert found("Open File Manager and the file", p) == [
        ("File Manager", "user"),
        ("file", "glossary"),
    ]


@pytest.mark.parametrize(
    "text, span",
    [
        ("Get https://example.com/file now", "https://example.com/file"),
        ("Use %(file)s here", "%(file)s"),
        ("Hello {file} there", "{file}"),
        ("Run `file -b x` now", "`file -b x`"),
        ("Open /tmp/file now", "/tmp/file"),
        ("Mail file@example.com now", "file@example.com"),
    ],
)
def test_glossary_term_inside_another_span_is_not_replaced(text, span):
    spans = find_spans(text, Protection.of(glossary=GLOSSARY))
    assert [(text[s.start : s.end], s.output) for s in spans] == [(span, span)]


def test_protection_round_trip_and_fingerprint():
    p = Protection.of("text", ["Acme"], GLOSSARY)
    assert Protection.from_options(p.options()) == p
    assert p.fingerprint == Protection.of("text", ["Acme"], dict(GLOSSARY)).fingerprint
    assert p.fingerprint != Protection.of("text", ["Acme"]).fingerprint
    assert p.glossary_lookup()["pull request"] == "solicitação de pull"


# ---------------------------------------------------------------- has_text and helpers


@pytest.mark.parametrize("text", ["(2)", "[4]", "—", "• — ©2024", "42", "3.14", "", "  ", "%"])
def test_has_no_text(text):
    assert not has_text(text)


@pytest.mark.parametrize("text", ["a", "(a)", "Olá", "日本", "x2"])
def test_has_text(text):
    assert has_text(text)


def test_lone_url_has_nothing_outside_it():
    text = "https://example.com/path?q=1"
    spans = find_spans(text)
    assert [s.kind for s in spans] == ["url"]
    assert not has_text(outside(text, spans))


def test_outside_and_substitute():
    text = "Open the file %s now"
    spans = find_spans(text, Protection.of(glossary={"file": "arquivo"}))
    assert outside(text, spans) == "Open the   now"
    assert substitute(text, spans) == "Open the arquivo %s now"


def test_well_nested():
    def tag(role: str, name: str) -> Span:
        return Span(0, 1, "tag", "<>", role, name)

    assert well_nested([tag("open", "b"), tag("open", "i"), tag("close", "i"), tag("close", "b")])
    assert not well_nested([tag("open", "b"), tag("open", "i"), tag("close", "b")])
    assert not well_nested([tag("close", "b"), tag("open", "b")])
    assert not well_nested([tag("open", "b")])
    assert well_nested([Span(0, 2, "placeholder", "%s")])


def test_a_long_name_without_an_extension_is_not_backtracked_through():
    """The relative-path alternatives were tried from every character of a long name,
    each start backtracking through up to 32 x 255 lengths: 40 KB of ("b" * 250 + "/")
    took 2.1 s holding the GIL (0.01 s once they start only where a name starts)."""
    import time

    text = ("b" * 250 + "/") * 160
    t = time.perf_counter()
    assert [s for s in find_spans(text) if s.kind == "path"] == []
    assert time.perf_counter() - t < 0.5
    # paths inside longer text are found as before
    assert [s.output for s in find_spans("Edit src/app.py and README.md, x.b/c.py.")] == [
        "src/app.py",
        "README.md",
        "b/c.py",
    ]
