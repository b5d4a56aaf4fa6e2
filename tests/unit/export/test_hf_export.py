"""Hugging Face export (export.hf) and its ONNX Runtime runner (hf_engine), offline.

A tiny Marian model is built here (a sentencepiece model trained on a dozen sentences, a
MarianTokenizer over it, a 2-layer d_model=32 MarianMTModel trained for a few seconds to
copy its input, so outputs depend on the input and stop at </s>), exported with optimum,
and the runner's greedy ids are compared with transformers' generate(num_beams=1).
Tests marked ``hf`` need the ``hf`` extra (torch); the rest run without it.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from control_plane.engine.base import Translation, UnsupportedPair
from export import hf

SENTENCES = [
    "the house is red",
    "the cat sleeps on the mat",
    "i like green apples",
    "where is the station",
    "good morning my friend",
    "this is a small test",
    "a casa é vermelha",
    "o gato dorme no tapete",
    "eu gosto de maçãs verdes",
    "onde fica a estação",
    "bom dia meu amigo",
    "isto é um pequeno teste",
]
PROBES = [
    "the house is red",
    "good morning",
    "where is the cat sleeping on the green mat today",
    "i like apples",
    "a",
    "this is a small test",
    "bom dia meu amigo",
    "the red cat",
    "xyz qq",
]
MAX_LENGTH = 24

pytestmark = [
    # torch.onnx tracing and MarianTokenizer chatter; not about this code
    pytest.mark.filterwarnings("ignore:Converting a tensor to a Python:Warning"),
    pytest.mark.filterwarnings("ignore:Recommended. pip install sacremoses:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*torch_dtype. is deprecated:Warning"),
    pytest.mark.filterwarnings("ignore:torch.tensor results are registered:Warning"),
    pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning"),
]


def _build_tiny_marian(folder: Path) -> Path:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("optimum.exporters.onnx")
    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES),
        model_writer=buf,
        vocab_size=60,
        model_type="unigram",
        character_coverage=1.0,
        bos_id=-1,
        eos_id=-1,
        unk_id=0,
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
    )
    for name in ("source.spm", "target.spm"):
        (folder / name).write_bytes(buf.getvalue())
    proc = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    vocab = {"</s>": 0, "<unk>": 1}
    for i in range(proc.get_piece_size()):
        vocab.setdefault(proc.id_to_piece(i), len(vocab))
    vocab["<pad>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    tok = transformers.MarianTokenizer(
        str(folder / "source.spm"),
        str(folder / "target.spm"),
        str(folder / "vocab.json"),
        source_lang="en",
        target_lang="pt",
    )
    size = len(vocab)
    config = transformers.MarianConfig(
        vocab_size=size,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=64,
        pad_token_id=size - 1,
        decoder_start_token_id=size - 1,
        eos_token_id=0,
        forced_eos_token_id=0,
    )
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: threads only add overhead
    try:
        model = transformers.MarianMTModel(config)
        model.generation_config.max_length = MAX_LENGTH
        model.generation_config.num_beams = 1
        model.generation_config.bad_words_ids = [[size - 1]]  # as OPUS-MT: never emit <pad>
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        batch = tok(SENTENCES, text_target=SENTENCES, return_tensors="pt", padding=True)
        labels = batch["labels"].masked_fill(batch["labels"] == tok.pad_token_id, -100)
        model.train()
        for _ in range(120):
            loss = model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels
            ).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
    finally:
        torch.set_num_threads(threads)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_marian(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build_tiny_marian(tmp_path_factory.mktemp("hf") / "opus-mt-en-pt-tiny")


@pytest.fixture(scope="module")
def exported(tiny_marian: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hf-export") / "marian"
    return hf.export_hf(tiny_marian, out, keep_merged=True)


@pytest.fixture(scope="module")
def reference(tiny_marian: Path):
    """transformers' model and tokenizer for the same folder."""
    import torch
    from transformers import MarianMTModel, MarianTokenizer

    model = MarianMTModel.from_pretrained(tiny_marian).eval()
    tok = MarianTokenizer.from_pretrained(tiny_marian)

    def generate(texts: list[str]) -> list[list[int]]:
        enc = tok(texts, return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model.generate(**enc, num_beams=1, do_sample=False)
        rows = []
        for row in out.tolist():
            row = row[1:]  # decoder start token
            rows.append(row[: row.index(0) + 1] if 0 in row else row)
        return rows

    def decode(texts: list[str]) -> list[str]:
        enc = tok(texts, return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model.generate(**enc, num_beams=1, do_sample=False)
        return tok.batch_decode(out, skip_special_tokens=True)

    return tok, generate, decode


def _engine(folder: Path, precision: str = "fp32", **kwargs):
    from control_plane.engine.hf_engine import HFEngine

    return HFEngine(folder, precision=precision, threads=1, **kwargs)


# ------------------------------------------------------------------ export


@pytest.mark.hf
def test_export_writes_graphs_tokenizer_and_metadata(exported: Path, tiny_marian: Path):
    meta = json.loads((exported / "metadata.json").read_text())
    assert meta["kind"] == "hf" and meta["family"] == "marian"
    assert (meta["source"], meta["target"]) == ("en", "pt")
    assert meta["model_name"] == "opus-mt-en-pt-tiny"
    assert meta["model_version"] == hf.weights_hash(tiny_marian)
    assert set(meta["precisions"]) == {"fp32", "int8", "fp16"}
    for files in meta["precisions"].values():
        assert set(files) in (
            {"encoder", "decoder", "decoder_with_past"},
            {"encoder", "decoder_merged"},
        )
        for name in files.values():
            assert (exported / name).is_file()
    assert meta["decoder_layout"] == "split"
    for name in ("source.spm", "target.spm", "vocab.json", "tokenizer_config.json", "config.json"):
        assert (exported / name).is_file(), name
    assert meta["tokenizer"]["check"]["mismatches"] == []
    assert meta["generation"]["max_length"] == MAX_LENGTH
    assert meta["provenance"]["task"] == "text2text-generation-with-past"
    assert meta["provenance"]["versions"]["optimum-onnx"]
    assert "license" in meta


# ------------------------------------------------------------------ runner vs transformers


@pytest.mark.hf
def test_fp32_greedy_ids_equal_transformers_generate(exported: Path, reference):
    tok, generate, _ = reference
    engine = _engine(exported)
    inputs = [tok(t).input_ids for t in PROBES]
    assert [engine.tokenizer.encode(t) for t in PROBES] == inputs

    expected = generate(PROBES)
    assert engine.generate_ids(inputs) == expected  # one batch
    lengths = {len(x) for x in expected}
    assert len(lengths) > 1 and any(x[-1] == 0 for x in expected)  # a meaningful check
    for text, ids in zip(PROBES, inputs, strict=True):  # one by one
        assert engine.generate_ids([ids]) == generate([text])


@pytest.mark.hf
def test_merged_decoder_layout_gives_the_same_ids(exported: Path, reference, tmp_path: Path):
    tok, generate, _ = reference
    for p in exported.iterdir():
        if p.name != "metadata.json":
            (tmp_path / p.name).symlink_to(p)
    meta = json.loads((exported / "metadata.json").read_text())
    meta["precisions"] = {
        "fp32": {"encoder": "encoder_model.onnx", "decoder_merged": "decoder_model_merged.onnx"}
    }
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    engine = _engine(tmp_path)
    assert engine.merged
    assert engine.generate_ids([tok(t).input_ids for t in PROBES]) == generate(PROBES)


@pytest.mark.hf
def test_translate_text_order_and_scores(exported: Path, reference):
    _, _, decode = reference
    engine = _engine(exported, max_batch=3)  # several length-sorted batches
    segments = [*PROBES, "   "]
    got = engine.translate(segments, "en", "pt")
    assert all(isinstance(t, Translation) for t in got)
    assert [t.text for t in got[:-1]] == decode(PROBES)
    assert got[-1] == Translation("", 1.0)
    assert all(0.0 < t.score <= 1.0 for t in got)


@pytest.mark.hf
@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_int8_and_fp16_load_and_decode(exported: Path, reference, precision: str):
    tok, _, _ = reference
    engine = _engine(exported, precision)
    vocab = len(json.loads((exported / "vocab.json").read_text()))
    inputs = [tok(t).input_ids for t in PROBES]
    outs = engine.generate_ids(inputs)
    assert len(outs) == len(PROBES)
    for out in outs:
        assert 1 <= len(out) <= MAX_LENGTH - 1
        assert all(0 <= i < vocab for i in out)
        assert vocab - 1 not in out  # bad_words_ids: <pad>
        assert out[-1] == 0 or len(out) == MAX_LENGTH - 1
    texts = engine.translate(PROBES[:3], "en", "pt")
    assert len(texts) == 3 and all(isinstance(t.text, str) for t in texts)


@pytest.mark.hf
def test_large_graphs_keep_weights_in_side_files(
    exported: Path, tiny_marian: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # Graphs over protobuf's 2 GiB limit (NLLB 3.3B, ...) need external data; pretend ours are.
    monkeypatch.setattr(hf, "_PROTO_LIMIT", 1000)
    out = hf.export_hf(tiny_marian, tmp_path / "big", precisions=["int8", "fp16"])
    sides = sorted(p.name for p in out.iterdir() if p.name.endswith(("onnx_data", "onnx.data")))
    assert len(sides) == 6, sides
    for precision in ("int8", "fp16"):
        big, small = _engine(out, precision), _engine(exported, precision)
        inputs = [small.tokenizer.encode(t) for t in PROBES]
        assert big.generate_ids(inputs) == small.generate_ids(inputs)


@pytest.mark.hf
def test_engine_protocol_pairs_version_and_errors(exported: Path):
    engine = _engine(exported, "int8")
    meta = json.loads((exported / "metadata.json").read_text())
    assert engine.pairs() == [("en", "pt")]
    assert engine.model_version("en", "pt") == f"opus-mt-en-pt-tiny@{meta['model_version']}:int8"
    with pytest.raises(UnsupportedPair):
        engine.translate(["hello"], "pt", "en")
    with pytest.raises(ValueError, match="available"):
        _engine(exported, "bf16")


@pytest.mark.hf
def test_model_store_serves_hf_exports_by_rank(exported: Path, tmp_path: Path):
    """Through the model store (what the service loads), HF calls run one at a time on a
    lane that takes the most urgent caller first, with the same output."""
    from control_plane.engine.store import LocalEngine

    (tmp_path / "store").mkdir()
    (tmp_path / "store" / exported.name).symlink_to(exported, target_is_directory=True)
    store = LocalEngine(tmp_path / "store", precision="fp32")
    direct = [t.text for t in _engine(exported).translate(PROBES, "en", "pt")]
    assert [t.text for t in store.translate(PROBES, "en", "pt", rank=0)] == direct
    assert [t.text for t in store.translate(PROBES, "en", "pt")] == direct


@pytest.mark.hf
def test_serving_needs_no_torch(exported: Path):
    code = textwrap.dedent(
        f"""
        import sys
        for name in ("torch", "transformers", "optimum"):
            sys.modules[name] = None  # any import of them now fails
        from control_plane.engine.hf_engine import HFEngine
        engine = HFEngine({str(exported)!r}, precision="int8", threads=1)
        print(engine.translate(["the house is red"], "en", "pt")[0].text)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.hf
def test_cli_run_exports_selected_precisions(tiny_marian: Path, tmp_path: Path, capsys):
    parser = hf.add_arguments(argparse.ArgumentParser())
    out = tmp_path / "cli"
    args = parser.parse_args([str(tiny_marian), "--out", str(out), "--precision", "int8"])
    assert hf.run(args) == 0
    meta = json.loads((out / "metadata.json").read_text())
    assert list(meta["precisions"]) == ["int8"]
    assert not (out / "encoder_model.onnx").exists()  # fp32 graphs only as a step
    assert not (out / "decoder_model_merged.onnx").exists()
    assert "exported opus-mt-en-pt-tiny" in capsys.readouterr().out
    # a second run into the same folder refuses without --force
    assert hf.run(parser.parse_args([str(tiny_marian), "--out", str(out)])) == 2


@pytest.mark.hf
def test_hub_failure_message_is_clear(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    pytest.importorskip("torch")
    pytest.importorskip("optimum.exporters.onnx")
    import huggingface_hub

    def offline(*_args, **_kwargs):
        raise OSError("Cannot reach https://huggingface.co: connection refused")

    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", offline)
    with pytest.raises(
        hf.ExportError, match="could not download 'Helsinki-NLP/opus-mt-en-de'"
    ) as e:
        hf.export_hf("Helsinki-NLP/opus-mt-en-de", tmp_path / "out")
    assert "unreachable" in str(e.value) and "--local-dir" in str(e.value)


def test_force_never_deletes_a_folder_that_is_not_an_export(tmp_path: Path):
    pytest.importorskip("torch")
    pytest.importorskip("optimum.exporters.onnx")
    (tmp_path / "keep.txt").write_text("precious")
    with pytest.raises(hf.ExportError, match="not deleting"):
        hf.export_hf("some/model", tmp_path, force=True)
    assert (tmp_path / "keep.txt").read_text() == "precious"


# ------------------------------------------------------------------ NLLB and M2M100


def _build_tiny_m2m(folder: Path, family: str):
    """A tiny NLLB (NllbTokenizer) or M2M100 (M2M100Tokenizer) model trained to copy."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("optimum.exporters.onnx")
    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES),
        model_writer=buf,
        vocab_size=60,
        model_type="unigram",
        character_coverage=1.0,
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
    )  # default specials: <unk> 0, <s> 1, </s> 2, as fairseq's vocabularies
    spm_path = folder / "sentencepiece.bpe.model"
    spm_path.write_bytes(buf.getvalue())
    if family == "nllb":
        tok = transformers.NllbTokenizer(vocab_file=str(spm_path), src_lang="eng_Latn")
        size = len(tok)
    else:
        proc = spm.SentencePieceProcessor(model_proto=buf.getvalue())
        vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
        for i in range(proc.get_piece_size()):
            vocab.setdefault(proc.id_to_piece(i), len(vocab))
        (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
        tok = transformers.M2M100Tokenizer(
            vocab_file=str(folder / "vocab.json"), spm_file=str(spm_path), src_lang="en"
        )
        size = max(tok.lang_code_to_id.values()) + 1  # language tokens follow the vocabulary
    tgt = "por_Latn" if family == "nllb" else "pt"
    tok.tgt_lang = tgt
    config = transformers.M2M100Config(
        vocab_size=size,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=64,
        pad_token_id=tok.pad_token_id,
        bos_token_id=0,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.eos_token_id,
        dropout=0.0,
    )
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = transformers.M2M100ForConditionalGeneration(config)
        model.generation_config.max_length = MAX_LENGTH
        batch = tok(SENTENCES, text_target=SENTENCES, return_tensors="pt", padding=True)
        labels = batch["labels"].masked_fill(batch["labels"] == tok.pad_token_id, -100)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        model.train()
        for _ in range(100):
            loss = model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels
            ).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
    finally:
        torch.set_num_threads(threads)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return model


@pytest.mark.hf
@pytest.mark.parametrize("family", ["nllb", "m2m100"])
def test_many_to_many_export_and_greedy_ids(family: str, tmp_path: Path):
    model = _build_tiny_m2m(tmp_path / f"{family}-tiny", family)  # skips without the extra
    import torch
    from transformers import AutoTokenizer

    out = hf.export_hf(tmp_path / f"{family}-tiny", tmp_path / "out", precisions=["fp32"])
    meta = json.loads((out / "metadata.json").read_text())
    src, tgt = ("eng_Latn", "por_Latn") if family == "nllb" else ("en", "pt")
    assert meta["family"] == family
    assert src in meta["languages"] and tgt in meta["languages"]
    assert "forced_bos_token_id" in meta["language_mechanism"]
    assert meta["tokenizer"]["check"]["mismatches"] == []

    tok = AutoTokenizer.from_pretrained(tmp_path / f"{family}-tiny", use_fast=False)
    tok.src_lang = src
    forced = meta["language_token_ids"][tgt]
    assert forced == tok.convert_tokens_to_ids(
        tok.lang_code_to_token[tgt] if family == "m2m100" else tgt
    )
    enc = tok(PROBES, return_tensors="pt", padding=True)
    with torch.no_grad():
        ref = model.generate(**enc, num_beams=1, do_sample=False, forced_bos_token_id=forced)
    eos = tok.eos_token_id
    expected = [r[1 : r.index(eos, 1) + 1] if eos in r[1:] else r[1:] for r in ref.tolist()]
    assert len({len(x) for x in expected}) > 1

    from control_plane.engine.hf_engine import HFEngine

    engine = HFEngine(out, threads=1)
    inputs = [tok(t).input_ids for t in PROBES]
    assert [engine.tokenizer.encode(t, src, tgt) for t in PROBES] == inputs
    assert engine.generate_ids(inputs, forced_bos=forced) == expected
    assert [engine.generate_ids([i], forced_bos=forced)[0] for i in inputs] == expected

    # Two-letter codes work for both (NLLB maps them onto its own codes).
    assert ("en", "pt") in engine.pairs() and ("pt", "en") in engine.pairs()
    texts = [t.text for t in engine.translate(PROBES, "en", "pt")]
    lang_token = tok.convert_ids_to_tokens(forced)
    decoded = [
        t.replace(lang_token, "").strip() for t in tok.batch_decode(ref, skip_special_tokens=True)
    ]
    assert texts == decoded
    assert engine.model_version("en", "pt").endswith(":fp32")
    with pytest.raises(UnsupportedPair):
        engine.translate(["x"], "en", "xx")


# ------------------------------------------------------------------ without the extra


def test_missing_extra_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(hf.MissingExtra, match=r"pip install -e '\.\[hf\]'"):
        hf.export_hf("Helsinki-NLP/opus-mt-en-de", tmp_path / "out")
    args = hf.add_arguments(argparse.ArgumentParser()).parse_args(
        ["some/model", "--out", str(tmp_path / "o")]
    )
    assert hf.run(args) == 2


def test_precision_parsing():
    assert hf.parse_precisions("fp16, int8") == ("fp16", "int8")
    assert hf.parse_precisions(["fp32", "fp32"]) == ("fp32",)
    with pytest.raises(hf.ExportError, match="unknown precision"):
        hf.parse_precisions("fp8")


def test_not_a_model_folder(tmp_path: Path):
    pytest.importorskip("torch")
    pytest.importorskip("optimum.exporters.onnx")
    (tmp_path / "empty").mkdir()
    with pytest.raises(hf.ExportError, match="no config.json"):
        hf.export_hf(tmp_path / "empty", tmp_path / "out")


def test_module_imports_without_torch():
    code = (
        "import sys\n"
        "for n in ('torch', 'transformers', 'optimum'): sys.modules[n] = None\n"
        "import export.hf, control_plane.engine.hf_engine\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
