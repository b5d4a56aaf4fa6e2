"""SRT (``srt``) and WebVTT (``webvtt-py``): one unit per cue, cue tags kept, timings,
numbering, settings and NOTE/STYLE blocks kept, lines re-split to the cue's line count;
generated files (24 cues, multi-line cues, italics) with a fake model and with the real
int8 engine."""

from __future__ import annotations

import io
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
import srt
import webvtt

from control_plane.engine.base import Translation
from control_plane.text.formats import Options, by_extension, get, translate_document
from control_plane.text.formats.subtitles import split_lines

REPO = Path(__file__).resolve().parents[4]
OPTIONS = Options("en", "pt")
SRT, VTT = get("srt"), get("vtt")

LINES = [
    ["Where are you going tonight?"],
    ["I told you already,", "I am going to the old harbour."],
    ["<i>The ship leaves at dawn,</i>", "<i>and nobody will wait for us.</i>"],
    ["- Did you bring the map?", "- Yes, it is in my bag."],
    ["Keep your voice down."],
    ["The guards change shifts", "every two hours at the gate."],
    ["<b>Listen!</b> Someone is coming."],
    ["We have ten minutes,", "maybe less if the rain stops."],
    ["I never wanted", "any of this to happen."],
    ["<i>Three years ago, my brother</i>", "<i>sailed away and never came back.</i>"],
    ["Tom & Jerry sold the boat", "for less than 5 < 6 coins."],
    ["Follow me and stay close."],
    ["Do you hear that noise", "coming from the water?"],
    ["It is only the wind."],
    ["The lighthouse has been dark", "for more than a month now."],
    ["Who turned off the light?"],
    ["<i>Nobody knows,</i> and the keeper", "has disappeared without a trace."],
    ["We should go back", "before it is too late."],
    ["No. We finish what we started."],
    ["Then take this lantern", "and walk in front of me."],
    ["The door is locked", "from the inside."],
    ["Give me a moment,", "I know how to open it."],
    ["Quickly, they are right behind us!"],
    ['<font color="#ffff00">[THUNDER]</font>'],
]


def cue_times(i: int) -> tuple[timedelta, timedelta]:
    return timedelta(seconds=2 * i + 1, milliseconds=250), timedelta(
        seconds=2 * i + 2, milliseconds=900
    )


def make_srt() -> bytes:
    cues = [srt.Subtitle(i + 1, *cue_times(i), "\n".join(lines)) for i, lines in enumerate(LINES)]
    return srt.compose(cues).encode()


def _vtt_time(td: timedelta) -> str:
    ms = int(td.total_seconds() * 1000)
    return f"{ms // 3600000:02}:{ms // 60000 % 60:02}:{ms // 1000 % 60:02}.{ms % 1000:03}"


def make_vtt() -> bytes:
    out = ["WEBVTT - generated\nKind: captions\nLanguage: en\n", "STYLE\n::cue { color: white }\n"]
    out.append("NOTE this note stays\nas it is\n")
    for i, lines in enumerate(LINES):
        start, end = cue_times(i)
        settings = " align:start position:10%" if i % 5 == 0 else ""
        ident = f"cue-{i}\n" if i % 3 == 0 else ""
        text = "\n".join(ln.replace("&", "&amp;").replace(" < ", " &lt; ") for ln in lines)
        if i == 7:
            text = "<v Anna>" + text
        if i == 12:
            text = "<c.loud>Do you hear</c> that noise\ncoming from the water?"
        out.append(f"{ident}{_vtt_time(start)} --> {_vtt_time(end)}{settings}\n{text}\n")
    return "\n".join(out).encode()


def upper(texts: list[str]) -> list[Translation]:
    return [Translation(t.upper(), 1.0) for t in texts]


def srt_shape(data: bytes) -> list[tuple]:
    return [
        (c.index, c.start, c.end, c.proprietary, c.content.count("\n"))
        for c in srt.parse(data.decode())
    ]


def vtt_doc(data: bytes) -> webvtt.WebVTT:
    return webvtt.from_buffer(io.StringIO(data.decode()))


def vtt_shape(data: bytes) -> list[tuple]:
    doc = vtt_doc(data)
    cues = [
        (c.identifier, c.start, c.end, str(c.settings), len(c.lines), c.voice) for c in doc.captions
    ]
    return [doc.header_comments, [s.text for s in doc.styles], cues, doc.footer_comments]


def tags_of(text: str) -> list[str]:
    from control_plane.text.formats.subtitles import _tokens

    return [p for is_tag, p in _tokens(text) if is_tag]


# ---------------------------------------------------------------------------- units


def test_formats_are_registered():
    assert by_extension("a.srt") is SRT and by_extension("b.VTT") is VTT
    assert (SRT.media_type, VTT.media_type) == ("application/x-subrip", "text/vtt")
    assert SRT.markup == VTT.markup == "xml" and not SRT.binary and not VTT.binary


def test_one_unit_per_cue_lines_joined_tags_synthetic():
    units = SRT.extract(make_srt())
    assert len(units) == len(LINES)
    assert units[1].text == "I told you already, I am going to the old harbour."
    assert (
        units[2].text == "<g1>The ship leaves at dawn,</g1> <g2>and nobody will wait for us.</g2>"
    )
    assert units[10].text == "Tom &amp; Jerry sold the boat for less than 5 &lt; 6 coins."
    assert [u.key for u in units[:3]] == ["1", "2", "3"]
    vunits = VTT.extract(make_vtt())
    assert [u.text for u in vunits[:7]] == [u.text for u in units[:7]]
    assert vunits[7].text.startswith("<x1/>We have ten minutes,")  # <v Anna>: no close tag
    assert vunits[10].text == units[10].text  # VTT references decoded, then XML-escaped
    assert vunits[12].text == "<g1>Do you hear</g1> that noise coming from the water?"


def test_rebuild_with_the_units_themselves_keeps_the_file():
    data = make_srt()
    assert SRT.rebuild(data, [u.text for u in SRT.extract(data)], OPTIONS) == data
    vdata = make_vtt()
    same = VTT.rebuild(vdata, [u.text for u in VTT.extract(vdata)], OPTIONS)
    assert vtt_shape(same) == vtt_shape(vdata)
    assert [c.lines for c in vtt_doc(same).captions] == [c.lines for c in vtt_doc(vdata).captions]


def test_not_a_subtitle_file_is_a_value_error():
    with pytest.raises(ValueError):
        VTT.extract(b"this is not WEBVTT\n")
    with pytest.raises(ValueError):
        SRT.extract(b"\xff\xfe")


# ---------------------------------------------------------------------------- re-splitting


def test_split_lines_balances_at_spaces_outside_tags():
    pieces = [(False, "one two three "), (True, '<font color="a b">'), (False, "four five six")]
    assert split_lines(pieces, 2) == ["one two three", '<font color="a b">four five six']
    assert split_lines([(False, "a bb ccc dddd eeeee")], 3) == ["a bb", "ccc dddd", "eeeee"]
    assert split_lines([(False, "single")], 2) == ["single"]  # fewer words than lines
    dialogue = [(False, "- Trouxeste o mapa? - Sim, está na minha mochila grande.")]
    assert split_lines(dialogue, 2, dialogue=True) == [
        "- Trouxeste o mapa?",
        "- Sim, está na minha mochila grande.",
    ]


# ---------------------------------------------------------------------------- round trips


def test_srt_round_trip_keeps_numbering_timings_and_line_counts():
    data = make_srt()
    out = translate_document(data, SRT, upper, OPTIONS)
    assert srt_shape(out) == srt_shape(data)
    cues = list(srt.parse(out.decode()))
    assert cues[2].content == "<i>THE SHIP LEAVES AT DAWN,</i>\n<i>AND NOBODY WILL WAIT FOR US.</i>"
    assert cues[3].content == "- DID YOU BRING THE MAP?\n- YES, IT IS IN MY BAG."
    assert (
        cues[10].content.replace("\n", " ")
        == "TOM & JERRY SOLD THE BOAT FOR LESS THAN 5 < 6 COINS."
    )
    assert cues[23].content == '<font color="#ffff00">[THUNDER]</font>'
    crlf = data.replace(b"\n", b"\r\n")
    assert translate_document(crlf, SRT, upper, OPTIONS) == out.replace(b"\n", b"\r\n")


def test_vtt_round_trip_keeps_header_style_note_settings_and_cue_tags():
    data = make_vtt()
    out = translate_document(data, VTT, upper, OPTIONS)
    assert vtt_shape(out) == vtt_shape(data)
    text = out.decode()
    assert text.startswith("WEBVTT - generated\nKind: captions\nLanguage: en\n")
    assert "::cue { color: white }" in text and "this note stays\nas it is" in text
    cues = vtt_doc(out).captions
    assert cues[12].lines == ["<c.loud>DO YOU HEAR</c> THAT NOISE", "COMING FROM THE WATER?"]
    assert (
        cues[10].raw_text.replace("\n", " ")
        == "TOM &amp; JERRY SOLD THE BOAT FOR LESS THAN 5 &lt; 6 COINS."
    )
    assert cues[7].voice == "Anna"


# ---------------------------------------------------------------------------- real engine


@pytest.fixture(scope="module")
def model_dir() -> Path:
    from export.provision import ensure_default_models

    root = Path(os.environ.get("MTB_MODEL_DIR") or REPO / ".models")
    ensure_default_models(root, ("en-pt",))
    return root


@pytest.fixture(scope="module")
def engine(model_dir):
    from control_plane.engine import load_engine

    return load_engine(model_dir, precision="int8")


@pytest.mark.parametrize("name", ["srt", "vtt"])
def test_generated_subtitles_with_the_real_engine(name, engine):
    fmt = get(name)
    data = make_srt() if name == "srt" else make_vtt()
    start = time.perf_counter()
    out = translate_document(data, fmt, lambda xs: engine.translate(xs, "en", "pt"), OPTIONS)
    seconds = time.perf_counter() - start
    shape = srt_shape if name == "srt" else vtt_shape
    assert shape(out) == shape(data)
    before, after = fmt.extract(data), fmt.extract(out)
    assert len(after) == len(before)
    for src, dst in zip(before, after, strict=True):
        assert sorted(tags_of(src.text)) == sorted(tags_of(dst.text))  # every tag once
        if src.text != "<g1>[THUNDER]</g1>":
            assert dst.text != src.text, src.text
    print(f"{name}: {len(before)} cues, {seconds:.2f} s")


@pytest.mark.parametrize(
    ("vtt", "message"),
    [
        (
            "WEBVTT\n\n00:01.000 --> 00:02.000\nHello there.\n\n00:03.000 --> 00:xx\nBad.\n",
            "Invalid cue block",
        ),
        (
            "WEBVTT\n\n00:01.000 --> 00:02.000\nHello.\n\nnot a timing\nOrphan text.\n",
            "a block without a cue timing line: 'not a timing'",
        ),
    ],
)
def test_a_cue_that_does_not_parse_is_refused_not_dropped(vtt, message):
    """webvtt-py skipped these blocks and the rebuilt file lacked their text."""
    with pytest.raises(ValueError, match=message):
        get("vtt").extract(vtt.encode())


def test_notes_styles_and_header_lines_are_not_cues():
    vtt = (
        "WEBVTT\r\nKind: captions\r\n\r\nNOTE a note\r\n\r\nSTYLE\r\n::cue { color: red }\r\n"
        "\r\nid1\r\n00:01.000 --> 00:02.000 align:start\r\nHi.\r\n\r\n\r\n"
        "00:03.000 --> 00:04.000\r\nBye.\r\n"
    )
    assert [u.text for u in get("vtt").extract(vtt.encode())] == ["Hi.", "Bye."]
