"""Documents of every format built from real sentences, for tests and benchmarks.

Each builder takes a list of English sentences (the gettext evaluation set, or pairs of
them) and lays them out as a file of its format with the structure such files have:
headings, lists, tables, code blocks, plural entries, inline codes, multi-line cues,
formatted runs. ``build(fmt, sentences)`` returns the file's bytes.
"""

from __future__ import annotations

import html
import io
from collections.abc import Callable, Iterator


def _take(sentences: list[str]) -> Callable[[int], list[str]]:
    it: Iterator[str] = iter(sentences)

    def take(n: int) -> list[str]:
        out = []
        for _ in range(n):
            out.append(next(it))
        return out

    return take


def text_doc(sentences: list[str]) -> bytes:
    parts, take = [], _take(sentences)
    try:
        while True:
            parts.append(" ".join(take(4)) + "\n\n")
            parts.append("".join(f"  - {s}\n" for s in take(3)) + "\n")
    except StopIteration:
        pass
    return "".join(parts).encode()


def markdown_doc(sentences: list[str]) -> bytes:
    parts, take = ["---\ntitle: Release notes\n---\n\n"], _take(sentences)
    n = 0
    try:
        while True:
            n += 1
            parts.append(f"## {take(1)[0].rstrip('.')}\n\n")
            a, b, c = take(3)
            link = f"**[guide](https://example.com/guide/{n})**"
            parts.append(f"{a} See the {link} and `make test`. {b}\n{c}\n\n")
            parts.append("".join(f"- {s}\n" for s in take(3)) + "\n")
            parts.append("```sh\nmake test  # not translated\n```\n\n")
            r1, r2 = take(2)
            parts.append(f"| Item | Notes |\n|---|---|\n| one | {r1} |\n| two | {r2} |\n\n")
    except StopIteration:
        pass
    return "".join(parts).encode()


def html_doc(sentences: list[str]) -> bytes:
    parts, take = (
        ["<!DOCTYPE html>\n<html><head><title>Guide</title></head><body>\n"],
        _take(sentences),
    )
    try:
        while True:
            parts.append(f"<h2>{html.escape(take(1)[0])}</h2>\n")
            a, b = take(2)
            parts.append(
                f'<p>{html.escape(a)} Read <a href="/doc" title="The guide">the guide</a>. '
                f"<b>{html.escape(b)}</b></p>\n"
            )
            parts.append("<ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in take(3)))
            parts.append("</ul>\n<pre>make test</pre>\n")
    except StopIteration:
        pass
    parts.append("</body></html>\n")
    return "".join(parts).encode()


def po_doc(sentences: list[str]) -> bytes:
    import polib

    po = polib.POFile()
    po.metadata = {"Content-Type": "text/plain; charset=UTF-8", "Language": ""}
    take = _take(sentences)
    i = 0
    try:
        while True:
            i += 1
            (s,) = take(1)
            po.append(polib.POEntry(msgid=s, msgstr="", occurrences=[("src/app.c", str(i))]))
            if i % 5 == 0:
                one, many = take(2)
                po.append(
                    polib.POEntry(
                        msgid=f"{one.rstrip('.')} (%d item)",
                        msgid_plural=f"{many.rstrip('.')} (%d items)",
                        msgstr_plural={0: "", 1: ""},
                        flags=["c-format"],
                    )
                )
    except StopIteration:
        pass
    return str(po).encode()


def xliff_doc(sentences: list[str]) -> bytes:
    units = []
    for i, s in enumerate(sentences, start=1):
        words = html.escape(s).split(" ", 2)
        if len(words) == 3 and i % 3 == 0:  # an inline code in every third unit
            body = f'{words[0]} <g id="{i}">{words[1]}</g> {words[2]}'
        else:
            body = html.escape(s)
        units.append(f'<trans-unit id="u{i}"><source>{body}</source></trans-unit>')
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<xliff version="1.2" xmlns="urn:oasis:names:tc:xliff:document:1.2">\n'
        '<file original="app" source-language="en" datatype="plaintext"><body>\n'
        + "\n".join(units)
        + "\n</body></file></xliff>\n"
    ).encode()


def _cues(sentences: list[str]) -> list[tuple[str, str, list[str]]]:
    cues = []
    for i, s in enumerate(sentences):
        start, end = i * 4, i * 4 + 3
        words = s.split()
        half = max(1, len(words) // 2)
        lines = [" ".join(words[:half]), " ".join(words[half:])] if len(words) > 6 else [s]
        if i % 4 == 0:
            lines[0] = f"<i>{lines[0]}</i>"
        cues.append((_ts(start), _ts(end), lines))
    return cues


def _ts(seconds: int, sep: str = ",") -> str:
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}{sep}000"


def srt_doc(sentences: list[str]) -> bytes:
    out = []
    for i, (a, b, lines) in enumerate(_cues(sentences), start=1):
        out.append(f"{i}\n{a} --> {b}\n" + "\n".join(lines) + "\n\n")
    return "".join(out).encode()


def vtt_doc(sentences: list[str]) -> bytes:
    out = ["WEBVTT\n\nNOTE generated by evaluation.documents\n\n"]
    for a, b, lines in _cues(sentences):
        a, b = a.replace(",", "."), b.replace(",", ".")
        out.append(f"{a} --> {b} line:90%\n" + "\n".join(lines) + "\n\n")
    return "".join(out).encode()


def docx_doc(sentences: list[str]) -> bytes:
    import docx

    d = docx.Document()
    take = _take(sentences)
    try:
        while True:
            d.add_heading(take(1)[0].rstrip("."), level=2)
            a, b, c = take(3)
            p = d.add_paragraph(a + " ")
            p.add_run(b).bold = True
            p.add_run(" " + c)
            for s in take(2):
                d.add_paragraph(s, style="List Bullet")
            r1, r2 = take(2)
            table = d.add_table(rows=2, cols=2)
            table.cell(0, 0).text, table.cell(0, 1).text = "one", r1
            table.cell(1, 0).text, table.cell(1, 1).text = "two", r2
    except StopIteration:
        pass
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


BUILDERS: dict[str, Callable[[list[str]], bytes]] = {
    "text": text_doc,
    "html": html_doc,
    "markdown": markdown_doc,
    "po": po_doc,
    "xliff": xliff_doc,
    "srt": srt_doc,
    "vtt": vtt_doc,
    "docx": docx_doc,
}
EXTENSIONS = {"text": ".txt", "html": ".html", "markdown": ".md", "po": ".pot",
              "xliff": ".xlf", "srt": ".srt", "vtt": ".vtt", "docx": ".docx"}  # fmt: skip


def build(fmt: str, sentences: list[str]) -> bytes:
    return BUILDERS[fmt](sentences)
