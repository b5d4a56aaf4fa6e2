"""Hugging Face export: Marian/OPUS-MT, NLLB and M2M100 -> ONNX fp32/int8/fp16.

    python -m export hf MODEL_ID_OR_PATH --out DIR [--precision fp32,int8,fp16]

The model is exported with optimum's ONNX exporter (task ``text2text-generation-with-past``:
an encoder, a first-step decoder and a decoder that takes the KV cache), then converted to
int8 (ONNX Runtime dynamic quantization) and fp16 (ONNX Runtime's float16 converter with
float32 inputs/outputs). The tokenizer files and a ``metadata.json`` describing languages,
precisions, weights hash, provenance and license go next to the graphs;
``control_plane.engine.hf_engine`` serves the folder with ONNX Runtime alone (no torch).

torch, transformers and optimum are imported lazily: ``import export.hf`` works without the
``hf`` extra, and the export says how to install it when it is missing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from importlib import metadata as _md
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TASK = "text2text-generation-with-past"
PRECISIONS = ("fp32", "int8", "fp16")
FAMILIES = ("marian", "nllb", "m2m100")
INSTALL_HINT = "pip install -e '.[hf]'"
# ONNX protobufs cannot exceed 2 GiB; bigger graphs keep their weights in a side file.
_PROTO_LIMIT = 1_800_000_000
# Sentences used to check that the serving tokenizer reproduces the Hugging Face one.
_TOKENIZER_PROBES = (
    "Hello world.",
    "The quick brown fox jumps over the lazy dog.",
    "Where is the station? It's 3 km away, isn't it?",
    "Ünïcödé, emoji 🙂 and tabs\tare fine.",
    "",
)


class ExportError(RuntimeError):
    """The export cannot proceed; the message says why and what to do."""


class MissingExtra(ExportError):
    def __init__(self, missing: str):
        super().__init__(
            f"the Hugging Face export needs torch, transformers and optimum-onnx "
            f"({missing} is not installed); install them with: {INSTALL_HINT}"
        )


# ----------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Fill the ``hf`` subcommand's parser."""
    parser.add_argument("model", help="Hugging Face model id (org/name) or a local model folder")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument(
        "--precision",
        default=",".join(PRECISIONS),
        help="comma-separated precisions to write (fp32,int8,fp16); default: all",
    )
    parser.add_argument("--source", help="source language (Marian; default from the model)")
    parser.add_argument("--target", help="target language (Marian; default from the model)")
    parser.add_argument("--revision", default=None, help="hub revision (branch, tag, commit)")
    parser.add_argument("--license", default=None, help="license to record (default: model card)")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: optimum's)")
    parser.add_argument(
        "--trt",
        action="store_true",
        help="also build TensorRT engines (ONNX Runtime TensorRT EP cache); GPU nodes only",
    )
    parser.add_argument(
        "--keep-merged",
        action="store_true",
        help="keep optimum's decoder_model_merged.onnx next to the split decoders",
    )
    parser.add_argument("--force", action="store_true", help="overwrite a non-empty output folder")
    return parser


def run(args: argparse.Namespace) -> int:
    """Entry point of ``python -m export hf``; returns the process exit code."""
    try:
        precisions = parse_precisions(args.precision)
        out = export_hf(
            args.model,
            args.out,
            precisions=precisions,
            trt=args.trt,
            source=args.source,
            target=args.target,
            revision=args.revision,
            license=args.license,
            opset=args.opset,
            keep_merged=args.keep_merged,
            force=args.force,
        )
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    meta = json.loads((out / "metadata.json").read_text())
    print(
        f"exported {meta['model_name']} ({meta['family']}, {', '.join(meta['precisions'])}) "
        f"to {out}"
    )
    return 0


def parse_precisions(text: str | Sequence[str]) -> tuple[str, ...]:
    items = text.split(",") if isinstance(text, str) else list(text)
    wanted = [p.strip().lower() for p in items if p.strip()]
    bad = [p for p in wanted if p not in PRECISIONS]
    if bad or not wanted:
        raise ExportError(
            f"unknown precision(s) {bad or text!r}; choose from {', '.join(PRECISIONS)}"
        )
    # fp32 graphs are always produced (the others derive from them) and dropped afterwards
    # unless asked for.
    return tuple(dict.fromkeys(wanted))


# ----------------------------------------------------------------------------- export


def export_hf(
    model_id_or_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    precisions: Iterable[str] = PRECISIONS,
    trt: bool = False,
    *,
    source: str | None = None,
    target: str | None = None,
    revision: str | None = None,
    license: str | None = None,  # noqa: A002 - the metadata key's name
    opset: int | None = None,
    keep_merged: bool = False,
    force: bool = False,
) -> Path:
    """Export a Marian/NLLB/M2M100 model to ``out_dir``; returns ``out_dir``.

    ``out_dir`` receives ``encoder_model[.<precision>].onnx``, the decoder graphs, the
    tokenizer files and ``metadata.json``. Raises ``ExportError`` with a readable message.
    """
    precisions = parse_precisions(list(precisions))
    _require_extra()
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if not force:
            raise ExportError(f"{out} is not empty; pass --force to overwrite it")
        if not (out / "metadata.json").is_file():
            raise ExportError(f"{out} is not empty and holds no earlier export; not deleting it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)

    started = time.time()
    local, commit = _resolve_model(str(model_id_or_path), revision)
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(local)
    # The slow (sentencepiece) tokenizers: Marian and M2M100 only have those, and for NLLB
    # the slow one saves sentencepiece.bpe.model, which the serving side reads. (Building a
    # fast NLLB tokenizer without tokenizer.json also needs a protobuf matching
    # sentencepiece's generated code, which the pinned grpc stack may not allow.)
    tokenizer = AutoTokenizer.from_pretrained(local, use_fast=False)
    family = detect_family(config, tokenizer)
    model_name = _model_name(str(model_id_or_path), local)
    log.info("exporting %s (%s) from %s", model_name, family, local)

    files = _export_fp32(local, out, opset=opset, keep_merged=keep_merged)
    variants: dict[str, dict[str, str]] = {}
    if "fp32" in precisions:
        variants["fp32"] = files
    if "int8" in precisions:
        variants["int8"] = {role: _quantize_int8(out / name).name for role, name in files.items()}
    if "fp16" in precisions:
        if "decoder_merged" in files:
            raise ExportError(
                "fp16 conversion of a merged decoder (If subgraphs) is not supported by ONNX "
                "Runtime's float16 converter; export fp32/int8 only"
            )
        variants["fp16"] = {role: _convert_fp16(out / name).name for role, name in files.items()}
    if "fp32" not in precisions:
        for name in files.values():
            _remove_graph(out / name)

    tokenizer.save_pretrained(out)
    if (Path(local) / "tokenizer.json").exists() and not (out / "tokenizer.json").exists():
        shutil.copy2(Path(local) / "tokenizer.json", out / "tokenizer.json")
    for extra in ("generation_config.json", "config.json"):
        if (Path(local) / extra).exists() and not (out / extra).exists():
            shutil.copy2(Path(local) / extra, out / extra)
    tok_meta, lang_meta = _tokenizer_metadata(
        family, tokenizer, config, out, model_name, source, target
    )

    meta: dict[str, Any] = {
        "kind": "hf",
        "family": family,
        **lang_meta,
        "model_name": model_name,
        "model_version": weights_hash(Path(local)),
        "precisions": variants,
        "decoder_layout": "merged" if "decoder_merged" in files else "split",
        "tokenizer": tok_meta,
        "generation": _generation_metadata(local, config),
        "provenance": {
            "source": str(model_id_or_path),
            "revision": commit or revision,
            "task": TASK,
            "exporter": "export.hf",
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "export_seconds": None,
            "versions": _versions(),
        },
        "license": license or _license_from_card(local, str(model_id_or_path)),
    }
    (out / "metadata.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")

    # Check that the serving-side tokenizer (sentencepiece only) gives the same ids.
    meta["tokenizer"]["check"] = _check_tokenizer(out, tokenizer, family, meta)
    if trt:
        meta["trt"] = _build_trt_cache(out, variants)
    meta["provenance"]["export_seconds"] = round(time.time() - started, 1)
    (out / "metadata.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    return out


def _require_extra() -> None:
    for module, dist in (
        ("torch", "torch"),
        ("transformers", "transformers"),
        ("optimum.exporters.onnx", "optimum-onnx"),
    ):
        try:
            __import__(module)
        except ImportError as exc:
            raise MissingExtra(dist) from exc


def _resolve_model(model: str, revision: str | None) -> tuple[str, str | None]:
    """A local folder holding the model's files, and the hub commit when downloaded."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ExportError(f"{path} has no config.json; is it a Hugging Face model folder?")
        return str(path), None
    if path.exists() or model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise ExportError(f"{model} is neither a model folder nor a hub model id (org/name)")
    from huggingface_hub import HfApi, snapshot_download

    try:
        names = set(HfApi().list_repo_files(model, revision=revision))
        patterns = ["*.json", "*.spm", "*.model", "*.txt", "README.md"]
        if any(n.endswith(".safetensors") for n in names):
            patterns.append("*.safetensors")
        else:
            patterns.append("pytorch_model*.bin")
        local = snapshot_download(model, revision=revision, allow_patterns=patterns)
    except Exception as exc:  # noqa: BLE001 - hub errors come in many classes
        raise ExportError(
            f"could not download {model!r} from the Hugging Face hub: {_hub_reason(exc)}. "
            f"Without hub access, fetch the model on a connected machine "
            f"(`huggingface-cli download {model} --local-dir DIR`), copy DIR here and pass "
            f"DIR instead of the id."
        ) from exc
    commit = Path(local).name if re.fullmatch(r"[0-9a-f]{40}", Path(local).name) else None
    return local, commit


def _hub_reason(exc: Exception) -> str:
    name, text = type(exc).__name__, str(exc)
    if name in ("RepositoryNotFoundError", "GatedRepoError", "RevisionNotFoundError"):
        return f"{name} (wrong id or revision, or a gated model that needs HF_TOKEN)"
    unreachable = ("resolve", "Max retries", "Connection", "connection", "timed out", "offline")
    if any(word in text or word in name for word in unreachable):
        return "huggingface.co is unreachable from this machine"
    first = text.strip().splitlines()[0] if text.strip() else repr(exc)
    return f"{name}: {first[:200]}"


def detect_family(config: Any, tokenizer: Any) -> str:
    model_type = getattr(config, "model_type", "")
    if model_type == "marian":
        return "marian"
    if model_type == "m2m_100":
        return "nllb" if "nllb" in type(tokenizer).__name__.lower() else "m2m100"
    raise ExportError(
        f"unsupported model type {model_type!r}: the HF export handles Marian/OPUS-MT, NLLB "
        f"and M2M100 (model_type marian or m2m_100)"
    )


def _model_name(model: str, local: str) -> str:
    path = Path(model).expanduser()
    if not path.is_dir():
        return model  # a hub id
    path = path.resolve()
    # A folder inside the hub cache: .../models--org--name/snapshots/<commit>
    if path.parent.name == "snapshots" and path.parent.parent.name.startswith("models--"):
        return path.parent.parent.name[len("models--") :].replace("--", "/")
    return path.name


def weights_hash(folder: Path) -> str:
    """sha256 of the weight files (safetensors preferred), first 16 hex digits."""
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))
    if not files:
        raise ExportError(f"no weight files (*.safetensors, pytorch_model*.bin) in {folder}")
    digest = hashlib.sha256()
    for f in files:
        with f.open("rb") as fh:
            while chunk := fh.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def _export_fp32(local: str, out: Path, *, opset: int | None, keep_merged: bool) -> dict[str, str]:
    from optimum.exporters.onnx import main_export

    with tempfile.TemporaryDirectory(prefix="hf-export-", dir=out) as tmp:
        try:
            main_export(local, tmp, task=TASK, opset=opset, local_files_only=True, device="cpu")
        except Exception as exc:  # noqa: BLE001 - optimum raises many kinds
            raise ExportError(f"optimum's ONNX export failed: {type(exc).__name__}: {exc}") from exc
        produced = {p.name for p in Path(tmp).iterdir()}
        roles: dict[str, str] = {}
        if "encoder_model.onnx" not in produced:
            raise ExportError(f"optimum produced no encoder_model.onnx (got {sorted(produced)})")
        roles["encoder"] = "encoder_model.onnx"
        split = {"decoder_model.onnx", "decoder_with_past_model.onnx"} <= produced
        if split:
            roles["decoder"] = "decoder_model.onnx"
            roles["decoder_with_past"] = "decoder_with_past_model.onnx"
        elif "decoder_model_merged.onnx" in produced:
            roles["decoder_merged"] = "decoder_model_merged.onnx"
        else:
            raise ExportError(f"optimum produced no usable decoder graphs (got {sorted(produced)})")
        keep = set(roles.values())
        if keep_merged and "decoder_model_merged.onnx" in produced:
            keep.add("decoder_model_merged.onnx")
        for name in produced:
            src = Path(tmp) / name
            is_graph_data = any(name.startswith(g) and name != g for g in keep)
            if name in keep or is_graph_data:
                shutil.move(src, out / name)
            elif not name.endswith((".onnx", ".onnx_data", ".onnx.data")):
                shutil.move(src, out / name)  # config, tokenizer files
    return roles


def _graph_bytes(path: Path) -> int:
    total = path.stat().st_size
    for data in _external_data_files(path):
        total += data.stat().st_size
    return total


def _external_data_files(path: Path) -> list[Path]:
    return [p for p in path.parent.glob(path.name + "*") if p != path]


def _remove_graph(path: Path) -> None:
    for p in [path, *_external_data_files(path)]:
        p.unlink(missing_ok=True)


def _variant_path(path: Path, precision: str) -> Path:
    return path.with_name(f"{path.stem}.{precision}.onnx")


def _quantize_int8(path: Path) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst = _variant_path(path, "int8")
    large = _graph_bytes(path) > _PROTO_LIMIT
    # Per-channel weight scales: on the Bergamot students per-tensor scales cost ~1 BLEU
    # against fp32 and per-channel ~0.2 (export/precision.py); on the tiny test Marian model
    # per-channel also keeps more greedy outputs identical to fp32 (55/60 vs 53/60). The
    # default op types include Gather, so the (large) embedding tables shrink as well.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs advice on the root logger
    try:
        quantize_dynamic(
            path, dst, weight_type=QuantType.QInt8, per_channel=True, use_external_data_format=large
        )
    finally:
        root.setLevel(level)
    return dst


def _convert_fp16(path: Path) -> Path:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    dst = _variant_path(path, "fp16")
    size = _graph_bytes(path)
    model = onnx.load(str(path))
    model = convert_float_to_float16(
        model, keep_io_types=True, disable_shape_infer=size > _PROTO_LIMIT
    )
    large = size // 2 > _PROTO_LIMIT
    onnx.save(model, str(dst), save_as_external_data=large, location=dst.name + "_data")
    return dst


# ----------------------------------------------------------------------------- metadata

# NLLB's own codes (eng_Latn) next to the two-letter ones the rest of the service uses.
NLLB_SHORT = {
    "ar": "arb_Arab",
    "bg": "bul_Cyrl",
    "ca": "cat_Latn",
    "cs": "ces_Latn",
    "da": "dan_Latn",
    "de": "deu_Latn",
    "el": "ell_Grek",
    "en": "eng_Latn",
    "es": "spa_Latn",
    "et": "est_Latn",
    "fi": "fin_Latn",
    "fr": "fra_Latn",
    "he": "heb_Hebr",
    "hi": "hin_Deva",
    "hu": "hun_Latn",
    "id": "ind_Latn",
    "it": "ita_Latn",
    "ja": "jpn_Jpan",
    "ko": "kor_Hang",
    "lt": "lit_Latn",
    "lv": "lvs_Latn",
    "nl": "nld_Latn",
    "pl": "pol_Latn",
    "pt": "por_Latn",
    "ro": "ron_Latn",
    "ru": "rus_Cyrl",
    "sk": "slk_Latn",
    "sl": "slv_Latn",
    "sv": "swe_Latn",
    "tr": "tur_Latn",
    "uk": "ukr_Cyrl",
    "vi": "vie_Latn",
    "zh": "zho_Hans",
}
_MARIAN_NAME = re.compile(r"opus-mt-(?:tc-(?:big|base)-)?([A-Za-z_]+)-([A-Za-z_]+)$")


def _tokenizer_metadata(
    family: str,
    tokenizer: Any,
    config: Any,
    out: Path,
    model_name: str,
    source: str | None,
    target: str | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the serving tokenizer needs (sentencepiece + an id table) and the languages."""
    special = sorted({int(i) for i in tokenizer.all_special_ids})
    tok: dict[str, Any] = {
        "class": type(tokenizer).__name__,
        "eos_id": tokenizer.eos_token_id,
        "pad_id": tokenizer.pad_token_id,
        "unk_id": tokenizer.unk_token_id,
        "special_ids": special,
        "clean_up_tokenization_spaces": bool(
            getattr(tokenizer, "clean_up_tokenization_spaces", False)
        ),
    }
    langs: dict[str, Any] = {}
    if family == "marian":
        tok.update(source_spm="source.spm", target_spm="target.spm", source_vocab="vocab.json")
        tok["target_vocab"] = "target_vocab.json" if tokenizer.separate_vocabs else "vocab.json"
        if tokenizer.separate_vocabs:
            tok["source_vocab"] = "vocab.json"
        named = _MARIAN_NAME.search(model_name.split("/")[-1])
        src = source or tokenizer.source_lang or (named.group(1) if named else None)
        tgt = target or tokenizer.target_lang or (named.group(2) if named else None)
        codes = [c for c in tokenizer.encoder if c.startswith(">>") and c.endswith("<<")]
        if not src or not tgt:
            raise ExportError(
                f"cannot tell {model_name}'s languages from its config or name; "
                f"pass --source and --target"
            )
        langs.update(source=src, target=tgt)
        if codes:  # multi-target model: ">>por<<" goes in front of the source text
            ids = {c[2:-2]: tokenizer.encoder[c] for c in codes}
            langs.update(
                languages=sorted(ids),
                language_token_ids=ids,
                language_mechanism="target-token prefix >>xx<< on the source text",
            )
            tok["source_template"] = ["<tgt_lang>", "<text>", "</s>"]
        else:
            tok["source_template"] = ["<text>", "</s>"]
        tok["forced_bos"] = None
    else:
        spm_name = "sentencepiece.bpe.model"
        if not (out / spm_name).exists():
            raise ExportError(f"the {family} tokenizer did not save {spm_name}; cannot serve it")
        import sentencepiece as spm

        proc = spm.SentencePieceProcessor(model_file=str(out / spm_name))
        if family == "nllb":
            codes = [
                t
                for t in tokenizer.additional_special_tokens
                if re.fullmatch(r"[a-z]{3}_[A-Z][a-z]{3}", t)
            ]
            ids = {c: tokenizer.convert_tokens_to_ids(c) for c in codes}
            aliases = {short: code for short, code in NLLB_SHORT.items() if code in ids}
            legacy = bool(getattr(tokenizer, "legacy_behaviour", False))
            tok["source_template"] = (
                ["<text>", "</s>", "<src_lang>"] if legacy else ["<src_lang>", "<text>", "</s>"]
            )
        else:
            ids = {c: int(i) for c, i in tokenizer.lang_code_to_id.items()}
            aliases = {}
            tok["source_template"] = ["<src_lang>", "<text>", "</s>"]
        # piece -> id as the HF tokenizer sees it (NLLB shifts sentencepiece ids by one).
        vocab = {}
        for i in range(proc.get_piece_size()):
            piece = proc.id_to_piece(i)
            vocab[piece] = int(tokenizer.convert_tokens_to_ids(piece))
        (out / "serving_vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
        tok.update(
            source_spm=spm_name,
            target_spm=spm_name,
            source_vocab="serving_vocab.json",
            target_vocab="serving_vocab.json",
            forced_bos="<tgt_lang>",
        )
        langs.update(
            languages=sorted(ids),
            language_token_ids=ids,
            language_aliases=aliases,
            language_mechanism=(
                "many-to-many: the source language token goes with the source ids "
                f"({' '.join(tok['source_template'])}); decoding starts with "
                "decoder_start_token_id and the first generated token is forced to the "
                "target language token (forced_bos_token_id)"
            ),
        )
    tok["decoder_start_token_id"] = int(config.decoder_start_token_id)
    return tok, langs


def _generation_metadata(local: str, config: Any) -> dict[str, Any]:
    gen: dict[str, Any] = {}
    path = Path(local) / "generation_config.json"
    if path.exists():
        gen = json.loads(path.read_text())
    keys = (
        "max_length",
        "num_beams",
        "eos_token_id",
        "bad_words_ids",
        "forced_eos_token_id",
        "min_length",
        "no_repeat_ngram_size",
        "repetition_penalty",
        "suppress_tokens",
    )
    picked = {k: gen.get(k, getattr(config, k, None)) for k in keys}
    return {k: v for k, v in picked.items() if v is not None}


def _versions() -> dict[str, str]:
    found = {}
    for dist in ("torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime"):
        try:
            found[dist] = _md.version(dist)
        except _md.PackageNotFoundError:
            pass
    return found


def _license_from_card(local: str, model: str) -> str | None:
    readme = Path(local) / "README.md"
    if readme.exists():
        text = readme.read_text(errors="replace")
        front = re.match(r"---\n(.*?)\n---", text, re.S)
        if front:
            found = re.search(r"^license:\s*(\S+)", front.group(1), re.M)
            if found:
                return found.group(1).strip("'\"")
    return None


def _check_tokenizer(out: Path, tokenizer: Any, family: str, meta: dict[str, Any]) -> dict:
    """Compare the serving tokenizer with the HF one on a few probe sentences."""
    from control_plane.engine.hf_engine import SpmTokenizer

    serving = SpmTokenizer(out, meta)
    if family == "marian":
        pairs = [(meta["source"], meta["target"])]
        if meta.get("languages"):
            pairs = [(meta["source"], meta["languages"][0])]
    else:
        codes = meta["languages"]
        pairs = [(codes[0], codes[-1])]
    mismatches = []
    for src, tgt in pairs:
        for text in _TOKENIZER_PROBES:
            ours = serving.encode(text, src, tgt)
            if family == "marian":
                prefix = f">>{tgt}<< " if meta.get("languages") else ""
                theirs = tokenizer(prefix + text).input_ids
            else:
                tokenizer.src_lang = src
                theirs = tokenizer(text).input_ids
            if ours != theirs:
                mismatches.append({"text": text, "serving": ours, "hf": theirs})
    if mismatches:
        log.warning(
            "serving tokenizer differs from %s on %d probe(s): %s",
            type(tokenizer).__name__,
            len(mismatches),
            mismatches[:2],
        )
    return {"probes": len(_TOKENIZER_PROBES) * len(pairs), "mismatches": mismatches}


def _build_trt_cache(out: Path, variants: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Build TensorRT engines through ONNX Runtime's TensorRT EP (engine cache on disk).

    Runs only where onnxruntime-gpu with TensorRT is installed (GPU nodes); elsewhere it
    fails with a clear message. The serving engine points the TensorRT EP at the same cache.
    """
    import onnxruntime as ort

    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        raise ExportError(
            "--trt needs onnxruntime-gpu with TensorRT (TensorrtExecutionProvider is not "
            f"available; providers: {ort.get_available_providers()}); run it on a GPU node"
        )
    from control_plane.engine.hf_engine import HFEngine

    precision = "fp16" if "fp16" in variants else "fp32"
    cache = out / "trt_cache"
    cache.mkdir(exist_ok=True)
    engine = HFEngine(out, precision=precision, providers="tensorrt")
    # Warm up over short and long inputs so the engines cover the common shape range.
    engine.generate_ids([[5] * 8] * 4)
    engine.generate_ids([[5] * 128] * 16)
    return {"cache_dir": cache.name, "precision": precision}


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone use: ``python -m export.hf MODEL --out DIR``."""
    parser = add_arguments(argparse.ArgumentParser(prog="python -m export.hf"))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
