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
