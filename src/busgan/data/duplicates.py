"""Exact and near-duplicate images: pixel hashes and perceptual hashes (ImageHash), grouped.

Exact duplicates share the SHA-256 of their decoded grayscale pixels (so a PNG and a BMP of the
same picture match). Near duplicates (re-encoded, rescaled, lightly edited copies) have 64-bit
DCT perceptual hashes within a Hamming distance. Groups are the connected components of both
relations, so a chain of near copies ends up in one group.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import imagehash
import numpy as np
from PIL import Image


def pixel_hash(img: Image.Image) -> str:
    """SHA-256 of the grayscale pixels and size (format-independent exact identity)."""
    gray = img if img.mode == "L" else img.convert("L")
    return hashlib.sha256(f"{gray.width}x{gray.height}:".encode() + gray.tobytes()).hexdigest()


def perceptual_hash(img: Image.Image) -> int:
    """64-bit DCT perceptual hash as an integer."""
    return int(str(imagehash.phash(img.convert("L"))), 16)


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    return np.unpackbits(x.view(np.uint8).reshape(*x.shape, 8), axis=-1).sum(-1)  # numpy < 2


@dataclass(frozen=True)
class Pair:
    """Two duplicate images (indices) and how they match."""
    i: int
    j: int
    kind: str      # 'exact' or 'near'
    distance: int  # perceptual-hash Hamming distance


def find_pairs(pixel_hashes: Sequence[str], phashes: Sequence[int], max_bits: int,
               chunk: int = 2048) -> list[Pair]:
    """All pairs i < j that are exact duplicates or within ``max_bits`` perceptual-hash bits."""
    n = len(pixel_hashes)
    h = np.array(phashes, dtype=np.uint64)
    pairs: list[Pair] = []
    for start in range(0, n, chunk):
        block = _popcount(h[start:start + chunk, None] ^ h[None, :])
        rows, cols = np.nonzero(block <= max(max_bits, 0))
        for r, j in zip(rows.tolist(), cols.tolist()):
            i = start + r
            if j > i:
                exact = pixel_hashes[i] == pixel_hashes[j]
                pairs.append(Pair(i, j, "exact" if exact else "near", int(block[r, j])))
    # exact matches always count, whatever max_bits is
    by_hash: dict[str, list[int]] = {}
    for i, ph in enumerate(pixel_hashes):
        by_hash.setdefault(ph, []).append(i)
    known = {(p.i, p.j) for p in pairs}
    for members in by_hash.values():
        for a in members[1:]:
            if (members[0], a) not in known:
                pairs.append(Pair(members[0], a, "exact", 0))
    return sorted(pairs, key=lambda p: (p.i, p.j))


class UnionFind:
    """Disjoint sets over 0..n-1 (groups of duplicates, patients)."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:
            self.parent[max(a, b)] = min(a, b)

    def groups(self) -> list[list[int]]:
        """Sets with more than one member, each sorted, ordered by their smallest member."""
        out: dict[int, list[int]] = {}
        for i in range(len(self.parent)):
            out.setdefault(self.find(i), []).append(i)
        return sorted((g for g in out.values() if len(g) > 1), key=lambda g: g[0])
