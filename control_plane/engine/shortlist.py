"""Marian's binary lexical shortlist (``lex.*.s2t.bin``): the output words worth scoring.

Restricting the output layer to ~640 candidates per sentence instead of 32,000 words
removes most of a decoding step's cost (src/data/shortlist.{h,cpp} in marian-dev). Each
sentence keeps its OWN candidate set even inside a batch (Marian unions them), so a
segment translates the same whatever its batch neighbours are - the segment cache
depends on that.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

MAGIC = 0xF11A48D5013417F5


class Shortlist:
    def __init__(self, path: str | Path, vocab_size: int) -> None:
        data = Path(path).read_bytes()
        magic, _checksum, first, best, n_offsets, n_lists = struct.unpack_from("<6Q", data, 0)
        if magic != MAGIC:
            raise ValueError(f"{path}: not a Marian binary shortlist")
        off = 48
        self.offsets = np.frombuffer(data, dtype=np.uint64, count=n_offsets, offset=off).astype(
            np.int64
        )
        off += 8 * n_offsets
        self.lists = np.frombuffer(data, dtype=np.uint32, count=n_lists, offset=off).astype(
            np.int64
        )
        self.first = int(first)
        self.best = int(best)
        self.vocab_size = vocab_size

    def candidates(self, source_ids: list[int] | np.ndarray) -> np.ndarray:
        """Sorted candidate ids: the ``first`` most frequent words, each distinct source
        word's translations, padded to a multiple of 8 with the smallest unused ids."""
        parts = [np.arange(self.first, dtype=np.int64)]
        for s in set(int(i) for i in source_ids):
            if 0 <= s < len(self.offsets) - 1:
                parts.append(self.lists[self.offsets[s] : self.offsets[s + 1]])
        cand = np.unique(np.concatenate(parts))
        cand = cand[cand < self.vocab_size]
        missing = (-len(cand)) % 8
        if missing:
            used = set(cand.tolist())
            extra, i = [], self.first
            while len(extra) < missing and i < self.vocab_size:
                if i not in used:
                    extra.append(i)
                i += 1
            cand = np.sort(np.concatenate([cand, np.array(extra, dtype=np.int64)]))
        return cand

    def batch_mask(self, sources: list[np.ndarray]) -> np.ndarray:
        """[len(sources), vocab_size] bool: row r is True on ``candidates(sources[r])``.

        One pass of numpy over the whole batch: ``candidates`` per sentence costs ~40 us
        of Python and numpy calls, 40 ms for the 1,000 sentences of a GPU batch, which
        the GPU then waits for (2026-11-30, the lent H200 ran at 29% utilisation)."""
        b, vocab, rows_in_table = len(sources), self.vocab_size, len(self.offsets) - 1
        mask = np.zeros((b, vocab), dtype=bool)
        mask[:, : min(self.first, vocab)] = True
        if b == 0:
            return mask
        tok = np.concatenate([np.asarray(s, dtype=np.int64).reshape(-1) for s in sources])
        row = np.repeat(np.arange(b, dtype=np.int64), [np.size(s) for s in sources])
        ok = (tok >= 0) & (tok < rows_in_table)
        # each (row, source word) once: a word's list is expanded once per sentence
        pairs = np.unique(row[ok] * rows_in_table + tok[ok])
        row, tok = np.divmod(pairs, rows_in_table)
        start, n = self.offsets[tok], self.offsets[tok + 1] - self.offsets[tok]
        # positions start..end-1 of every pair's list, laid end to end
        at = np.repeat(start - (np.cumsum(n) - n), n) + np.arange(int(n.sum()), dtype=np.int64)
        words = self.lists[at]
        keep = words < vocab
        # one flat index per (row, word): 1-D fancy assignment is ~3x faster than 2-D
        mask.reshape(-1)[(np.repeat(row, n) * vocab + words)[keep]] = True
        self._pad_to_eight(mask)
        return mask

    def _pad_to_eight(self, mask: np.ndarray, window: int = 64) -> None:
        """``candidates``' padding on every row at once: the smallest unused ids from
        ``first`` on until the row's count is a multiple of 8 (a window of ids after
        ``first`` holds them for any real row; rows it does not serve go one by one)."""
        missing = (-np.count_nonzero(mask, axis=1)) % 8
        if not missing.any():
            return
        lo = min(self.first, mask.shape[1])
        hi = min(lo + window, mask.shape[1])
        free = ~mask[:, lo:hi]
        rank = np.cumsum(free, axis=1)
        mask[:, lo:hi] |= free & (rank <= missing[:, None])
        short = np.flatnonzero(rank[:, -1] < missing) if hi > lo else np.flatnonzero(missing)
        for r in short:
            still = int(missing[r] - (rank[r, -1] if hi > lo else 0))
            extra = np.flatnonzero(~mask[r, hi:])[:still] + hi
            mask[r, extra] = True
