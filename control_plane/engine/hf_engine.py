"""Serve a Hugging Face export (``export.hf``) with ONNX Runtime alone.

No torch and no transformers at serving time: tokenization is sentencepiece plus the id
table written by the export, decoding is batched greedy search over the exported encoder and
decoder graphs with the KV cache (``past_key_values``). Output ids equal transformers'
``model.generate(num_beams=1, do_sample=False)`` for the same inputs (tested on fp32).

Folder layout (written by the export): ``metadata.json``, ``encoder_model[.int8|.fp16].onnx``
and either ``decoder_model*.onnx`` + ``decoder_with_past_model*.onnx`` (split) or
``decoder_model_merged*.onnx`` (merged, ``use_cache_branch`` input), tokenizer files.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from control_plane.engine.base import Translation, UnsupportedPair

log = logging.getLogger(__name__)

_NP_TYPES = {
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(bool)": np.bool_,
}


def is_hf_export(path: str | os.PathLike[str]) -> bool:
    meta = Path(path) / "metadata.json"
    if not meta.is_file():
        return False
    try:
        return json.loads(meta.read_text()).get("kind") == "hf"
    except (OSError, ValueError):
        return False


class SpmTokenizer:
    """Source/target tokenization of an HF export with sentencepiece and an id table."""

    def __init__(self, model_dir: str | os.PathLike[str], meta: dict[str, Any]):
        import sentencepiece as spm

        root = Path(model_dir)
        tok = meta["tokenizer"]
        self.meta = meta
        self.source_spm = spm.SentencePieceProcessor(model_file=str(root / tok["source_spm"]))
        self.target_spm = (
            self.source_spm
            if tok["target_spm"] == tok["source_spm"]
            else spm.SentencePieceProcessor(model_file=str(root / tok["target_spm"]))
        )
        self.source_vocab: dict[str, int] = json.loads((root / tok["source_vocab"]).read_text())
        target_vocab = (
            self.source_vocab
            if tok["target_vocab"] == tok["source_vocab"]
            else json.loads((root / tok["target_vocab"]).read_text())
        )
        self.id_to_piece = {int(i): p for p, i in target_vocab.items()}
        self.eos_id = int(tok["eos_id"])
        self.pad_id = int(tok["pad_id"])
        self.unk_id = int(tok["unk_id"])
        self.special_ids = set(tok["special_ids"])
        self.template: list[str] = tok["source_template"]
        self.clean_up = bool(tok.get("clean_up_tokenization_spaces", False))
        self.language_ids: dict[str, int] = meta.get("language_token_ids") or {}
        self.special_ids.update(self.language_ids.values() if meta["family"] != "marian" else ())

    def language_id(self, code: str) -> int:
        try:
            return int(self.language_ids[code])
        except KeyError:
            raise KeyError(f"no language token for {code!r}") from None

    def encode(self, text: str, source: str | None = None, target: str | None = None) -> list[int]:
        ids: list[int] = []
        for part in self.template:
            if part == "<text>":
                pieces = self.source_spm.encode(text, out_type=str)
                ids.extend(self.source_vocab.get(p, self.unk_id) for p in pieces)
            elif part == "</s>":
                ids.append(self.eos_id)
            elif part == "<src_lang>":
                ids.append(self.language_id(source or ""))
            elif part == "<tgt_lang>":
                ids.append(self.language_id(target or ""))
            else:
                raise ValueError(f"unknown source template part {part!r}")
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        pieces = [
            self.id_to_piece[i] for i in ids if i not in self.special_ids and i in self.id_to_piece
        ]
        text = self.target_spm.decode_pieces(pieces).replace("\u2581", " ").strip()
        if self.clean_up:
            text = _clean_up_tokenization(text)
        return text


def _clean_up_tokenization(text: str) -> str:
    # transformers' PreTrainedTokenizerBase.clean_up_tokenization
    for a, b in (
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ):
        text = text.replace(a, b)
    return text


def _log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=-1, keepdims=True)
    z = x - m
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


class HFEngine:
    """A ``TranslationEngine`` over one exported Marian/NLLB/M2M100 folder."""

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        precision: str = "fp32",
        threads: int = 0,
        *,
        max_batch: int = 32,
        max_length: int | None = None,
        providers: str | Sequence[Any] | None = None,
    ):
        import onnxruntime as ort

        self.model_dir = Path(model_dir)
        meta_path = self.model_dir / "metadata.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{self.model_dir} has no metadata.json (not an HF export)")
        self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        if self.meta.get("kind") != "hf":
            raise ValueError(f"{self.model_dir} is not a Hugging Face export (kind != 'hf')")
        available = self.meta["precisions"]
        if precision not in available:
            raise ValueError(
                f"{self.model_dir} has no {precision} graphs; available: {', '.join(available)}"
            )
        self.precision = precision
        self.family: str = self.meta["family"]
        self.tokenizer = SpmTokenizer(self.model_dir, self.meta)
        self.max_batch = max(1, int(max_batch))

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(0, int(threads))
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        provs = self._providers(providers, precision)
        files = available[precision]

        def session(role: str) -> Any:
            return ort.InferenceSession(
                str(self.model_dir / files[role]), sess_options=opts, providers=provs
            )

        self.encoder = session("encoder")
        self.merged = "decoder_merged" in files
        if self.merged:
            self.decoder = session("decoder_merged")
            self.decoder_with_past = self.decoder
        else:
            self.decoder = session("decoder")
            self.decoder_with_past = session("decoder_with_past")
        self._input_types = {
            id(s): {i.name: _NP_TYPES.get(i.type, np.float32) for i in s.get_inputs()}
            for s in {self.encoder, self.decoder, self.decoder_with_past}
        }
        self._past_names = [
            i.name
            for i in self.decoder_with_past.get_inputs()
            if i.name.startswith("past_key_values.")
        ]
        self._past_shapes = {
            i.name: i.shape
            for i in self.decoder_with_past.get_inputs()
            if i.name.startswith("past_key_values.")
        }

        tok = self.meta["tokenizer"]
        gen = self.meta.get("generation", {})
        self.start_id = int(tok["decoder_start_token_id"])
        eos = gen.get("eos_token_id", tok["eos_id"])
        self.eos_ids = {int(e) for e in (eos if isinstance(eos, list) else [eos])}
        self.pad_id = int(tok["pad_id"])
        forced_eos = gen.get("forced_eos_token_id")
        self.forced_eos = int(forced_eos) if forced_eos is not None else None
        self.min_length = int(gen.get("min_length") or 0)
        banned = [b[0] for b in gen.get("bad_words_ids") or [] if len(b) == 1]
        banned += list(gen.get("suppress_tokens") or [])
        self.banned = np.array(sorted(set(banned)), dtype=np.int64)
        for key, neutral in (("no_repeat_ngram_size", 0), ("repetition_penalty", 1.0)):
            if gen.get(key, neutral) != neutral:
                log.warning(
                    "%s: generation setting %s=%s is not applied by greedy decoding",
                    self.model_dir,
                    key,
                    gen[key],
                )
        config = self._config()
        limit = max_length or gen.get("max_length") or 256
        positions = config.get("max_position_embeddings")
        self.max_length = int(min(limit, positions) if positions else limit)
        self.max_source_length = int(positions or 1024)

    # ------------------------------------------------------------------ setup helpers

    def _config(self) -> dict[str, Any]:
        path = self.model_dir / "config.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def _providers(self, providers: str | Sequence[Any] | None, precision: str) -> list[Any]:
        if providers is None or providers == "cpu":
            return ["CPUExecutionProvider"]
        if providers == "cuda":
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        if providers == "tensorrt":
            cache = self.model_dir / "trt_cache"
            cache.mkdir(exist_ok=True)
            trt = {
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(cache),
                "trt_fp16_enable": precision == "fp16",
                "trt_int8_enable": False,
            }
            return [
                ("TensorrtExecutionProvider", trt),
                "CUDAExecutionProvider",
                "CPUExecutionProvider",
            ]
        if isinstance(providers, str):
            return [providers]
        return list(providers)

    def _past_dims(self, name: str) -> tuple[int, int]:
        """(heads, head size) of a cache input; from the graph, else from config.json."""
        shape = self._past_shapes[name]
        if isinstance(shape[1], int) and isinstance(shape[3], int):
            return shape[1], shape[3]
        config = self._config()
        heads = int(config.get("decoder_attention_heads") or config["num_attention_heads"])
        return heads, int(config["d_model"]) // heads

    # ------------------------------------------------------------------ TranslationEngine

    def _public_codes(self) -> list[str]:
        meta = self.meta
        aliases = meta.get("language_aliases") or {}
        native_to_short = {v: k for k, v in aliases.items()}
        return [native_to_short.get(c, c) for c in meta.get("languages") or []]

    def _native(self, code: str) -> str:
        return (self.meta.get("language_aliases") or {}).get(code, code)

    def pairs(self) -> list[tuple[str, str]]:
        meta = self.meta
        if self.family == "marian":
            if meta.get("languages"):
                return [(meta["source"], t) for t in meta["languages"]]
            return [(meta["source"], meta["target"])]
        codes = self._public_codes()
        return [(s, t) for s in codes for t in codes if s != t]

    def _check_pair(self, source: str, target: str) -> None:
        meta = self.meta
        if self.family == "marian":
            ok = source == meta["source"] and (
                target in meta["languages"] if meta.get("languages") else target == meta["target"]
            )
        else:
            langs = self.tokenizer.language_ids
            ok = (
                self._native(source) in langs
                and self._native(target) in langs
                and self._native(source) != self._native(target)
            )
        if not ok:
            raise UnsupportedPair(source, target, self.pairs())

    def model_version(self, source: str, target: str) -> str:
        self._check_pair(source, target)
        return f"{self.meta['model_name']}@{self.meta['model_version']}:{self.precision}"

    def translate(self, segments: list[str], source: str, target: str) -> list[Translation]:
        self._check_pair(source, target)
        src, tgt = self._native(source), self._native(target)
        forced_bos = (
            self.tokenizer.language_id(tgt) if self.meta["tokenizer"].get("forced_bos") else None
        )
        results: list[Translation | None] = [None] * len(segments)
        encoded: list[tuple[int, list[int]]] = []
        for i, text in enumerate(segments):
            if not text.strip():
                results[i] = Translation("", 1.0)
                continue
            ids = self.tokenizer.encode(text, src, tgt)
            if len(ids) > self.max_source_length:  # keep the template's tail (</s>, lang)
                tail = 1 if self.tokenizer.template[-1] == "</s>" else 2
                ids = ids[: self.max_source_length - tail] + ids[-tail:]
            encoded.append((i, ids))
        # Longest first, so each batch holds similar lengths and little padding.
        encoded.sort(key=lambda item: -len(item[1]))
        for start in range(0, len(encoded), self.max_batch):
            chunk = encoded[start : start + self.max_batch]
            outs, scores = self._generate([ids for _, ids in chunk], forced_bos=forced_bos)
            for (i, _), out, score in zip(chunk, outs, scores, strict=True):
                results[i] = Translation(self.tokenizer.decode(out), score)
        return [r if r is not None else Translation("", 1.0) for r in results]

    # ------------------------------------------------------------------ decoding

    def generate_ids(
        self,
        input_ids_batch: Sequence[Sequence[int]],
        *,
        forced_bos: int | None = None,
        max_length: int | None = None,
    ) -> list[list[int]]:
        """Greedy output ids per input (without the decoder start token; eos included)."""
        return self._generate(input_ids_batch, forced_bos=forced_bos, max_length=max_length)[0]

    def _feed(self, sess: Any, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        types = self._input_types[id(sess)]
        return {k: np.asarray(v, dtype=types[k]) for k, v in values.items() if k in types}

    def _generate(
        self,
        batch: Sequence[Sequence[int]],
        *,
        forced_bos: int | None = None,
        max_length: int | None = None,
    ) -> tuple[list[list[int]], list[float]]:
        n = len(batch)
        if n == 0:
            return [], []
        width = max(len(x) for x in batch)
        ids = np.full((n, width), self.pad_id, dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.int64)
        for r, row in enumerate(batch):
            ids[r, : len(row)] = row
            mask[r, : len(row)] = 1
        enc = self.encoder.run(
            None, self._feed(self.encoder, {"input_ids": ids, "attention_mask": mask})
        )[0]
        limit = int(max_length or self.max_length)

        outputs: list[list[int]] = [[] for _ in range(n)]
        logp_sum = np.zeros(n, dtype=np.float64)
        counts = np.zeros(n, dtype=np.int64)
        active = np.arange(n)
        tokens = np.full((n, 1), self.start_id, dtype=np.int64)
        past: dict[str, np.ndarray] = {}
        eos = np.array(sorted(self.eos_ids), dtype=np.int64)

        for step in range(limit - 1):
            cur_len = step + 1  # sequence length so far, decoder start token included
            logits, past = self._step(step, tokens, enc, mask, past)
            logits = logits[:, -1, :].astype(np.float32)
            logp = _log_softmax(logits)
            scores = logits.copy()
            if self.banned.size:
                scores[:, self.banned] = -np.inf
            if cur_len < self.min_length:
                scores[:, eos] = -np.inf
            nxt = scores.argmax(axis=-1)
            forced = False
            if step == 0 and forced_bos is not None:
                nxt[:] = forced_bos
                forced = True
            elif self.forced_eos is not None and cur_len == limit - 1:
                nxt[:] = self.forced_eos
            for r, tok in enumerate(nxt):
                outputs[active[r]].append(int(tok))
            if not forced:
                logp_sum[active] += logp[np.arange(len(nxt)), nxt]
                counts[active] += 1
            done = np.isin(nxt, eos)
            keep = ~done
            if not keep.any() or cur_len + 1 >= limit:
                break
            if not keep.all():  # drop finished rows from every batched tensor
                active, nxt, enc, mask = active[keep], nxt[keep], enc[keep], mask[keep]
                past = {k: v[keep] for k, v in past.items()}
            tokens = nxt[:, None].astype(np.int64)

        scores_out = [
            float(np.exp(logp_sum[i] / counts[i])) if counts[i] else 1.0 for i in range(n)
        ]
        return outputs, scores_out

    def _step(
        self,
        step: int,
        tokens: np.ndarray,
        enc: np.ndarray,
        mask: np.ndarray,
        past: dict[str, np.ndarray],
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        b = tokens.shape[0]
        past_len = next((v.shape[2] for k, v in past.items() if ".decoder." in k), 0)
        values: dict[str, np.ndarray] = {
            "input_ids": tokens,
            "encoder_hidden_states": enc,
            "encoder_attention_mask": mask,
            "cache_position": np.arange(past_len, past_len + tokens.shape[1]),
            "attention_mask": np.ones((b, past_len + tokens.shape[1]), dtype=np.int64),
        }
        if step == 0:
            sess = self.decoder
            if self.merged:
                values["use_cache_branch"] = np.array([False])
                for name in self._past_names:
                    heads, head_dim = self._past_dims(name)
                    values[name] = np.zeros((b, heads, 0, head_dim), dtype=np.float32)
        else:
            sess = self.decoder_with_past
            values.update(past)
            if self.merged:
                values["use_cache_branch"] = np.array([True])
        names = [o.name for o in sess.get_outputs()]
        if step > 0:  # the cross-attention cache never changes after the first step
            names = [o for o in names if not (o.startswith("present.") and ".encoder." in o)]
        got = dict(zip(names, sess.run(names, self._feed(sess, values)), strict=True))
        new_past = dict(past)
        for name, value in got.items():
            if name.startswith("present."):
                new_past["past_key_values." + name[len("present.") :]] = value
        return got["logits"], new_past


def load_hf_engine(
    model_dir: str | os.PathLike[str], precision: str = "fp32", threads: int = 0, **kwargs: Any
) -> HFEngine:
    """Open an ``export.hf`` folder (``metadata.json`` kind ``hf``) for serving."""
    return HFEngine(model_dir, precision=precision, threads=threads, **kwargs)
