"""Fusing retrieval signals into one ranking (pure; numpy only).

Each embedding model and view group (``core.kb.representations``) gives every scanned chunk a
cosine; models differ in scale (USE cosines spread over 0..0.9, E5's crowd into 0.75..0.9), so
each signal is standardised over the scanned chunks (z-score) before averaging: a chunk scores
by how much better than the project's typical chunk it matches. Chunks lacking a group (a
document chunk has no "question" view) average over the groups they have. The word match
(``core.kb.retrieval``'s coverage of lemmas or stems) joins with the small weight ``LEX_WEIGHT``:
on paraphrased questions shared words mislead as often as they help (bench/kb_eval.py), but it
still breaks near-ties towards the chunk that names what the caller said.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

LEX_WEIGHT = 0.05


def zscores(values: np.ndarray) -> np.ndarray:
    """Standardised values; all zeros when there is nothing to tell apart (one chunk, equal values)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return np.zeros_like(values)
    std = float(values.std())
    return np.zeros_like(values) if std < 1e-9 else (values - float(values.mean())) / std


def fuse(n: int, signals: Sequence[Mapping[int, float]], lexical: Sequence[float] | None = None,
         lex_weight: float = LEX_WEIGHT) -> np.ndarray:
    """Scores of ``n`` chunks: the mean of the standardised embedding signals each chunk has
    (``signals``: one {chunk index: cosine} per model and view group), plus ``lex_weight`` times the
    standardised word-match score (0 for chunks sharing no word)."""
    total = np.zeros(n)
    count = np.zeros(n)
    for signal in signals:
        if not signal:
            continue
        idx = np.fromiter(signal.keys(), dtype=np.int64, count=len(signal))
        vals = np.fromiter(signal.values(), dtype=np.float64, count=len(signal))
        total[idx] += zscores(vals)
        count[idx] += 1
    scores = np.divide(total, count, out=np.zeros(n), where=count > 0)
    if lexical is not None and n:
        scores = scores + lex_weight * zscores(np.asarray(lexical, dtype=np.float64))
    return scores
