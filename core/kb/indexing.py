"""Building a source's or an FAQ entry's chunks (run by the RQ job ``jobs.kb_index``).

A document goes pending -> indexing -> ready (chunks replaced in one transaction) or failed (with a
``KB_*`` code of ``core.errors`` and a Russian message, chunks of the last good version kept out of search by the
status). Re-running the job on an unchanged file is a no-op: the SHA-256 of the content the chunks
came from is kept in ``indexed_sha256`` together with the embedding model used.
"""
from __future__ import annotations

import hashlib
import logging
import uuid
from typing import Any

import redis
from rq import Queue

from core.config import Settings
from core.kb.chunking import Chunk, chunk_blocks
from core.kb.citations import faq_chunk_text
from core.errors import CATALOG, AppError
from core.kb.embeddings import Embedder, to_blob
from core.kb.extract import extract
from core.kb.lemmas import lemma_text
from core.kb.representations import View, document_views, entry_views
from core.storage import Storage
from models.base import database, utcnow
from models.kb import KbChunk, KbEntry, KbSource, KbSourceKind, KbSourceStatus, KbVector

log = logging.getLogger("voiceai.kb.indexing")

KB_QUEUE = "default"
INDEX_SOURCE_JOB = "jobs.kb_index.index_source_job"
INDEX_ENTRY_JOB = "jobs.kb_index.index_entry_job"
JOB_TIMEOUT_S = 600


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _set_status(source_id: Any, status: KbSourceStatus, **fields: Any) -> None:
    KbSource.update(status=status.value, updated_at=utcnow(), **fields).where(KbSource.id == source_id).execute()


def failure_text(error: AppError) -> str:
    """Russian text for ``kb_sources.error``: the catalog title, what exactly went wrong
    (``details.detail``), what to do."""
    entry = CATALOG[error.code]
    detail = error.details.get("detail")
    return f"{entry.human_title}{f' ({detail})' if detail else ''}. {' '.join(entry.human_how_to_fix)}"


def _vector_rows(project_id: Any, chunk_id: Any, views: list[View], embedder: Embedder | None) -> list[dict]:
    """Every view of one chunk embedded by every model of the embedder (none without one)."""
    if embedder is None or not views:
        return []
    now = utcnow()
    rows: list[dict] = []
    for encoder in embedder.encoders:
        vectors: dict[int, Any] = {}
        for is_query in (True, False):  # asymmetric models embed questions and passages differently
            idx = [i for i, v in enumerate(views) if v.is_query == is_query]
            if idx:
                vectors.update(zip(idx, encoder.encode([views[i].text for i in idx], query=is_query)))
        rows += [{"id": uuid.uuid4(), "created_at": now, "updated_at": now, "project": project_id,
                  "chunk": chunk_id, "kind": view.kind, "model": encoder.name, "dim": encoder.dim,
                  "embedding": to_blob(vectors[i])} for i, view in enumerate(views)]
    return rows


def _chunk_rows(project_id: Any, chunks: list[Chunk], embedder: Embedder | None, source_id: Any = None,
                entry_id: Any = None, views: list[list[View]] | None = None) -> tuple[list[dict], list[dict]]:
    """Rows of ``kb_chunks`` (with lemmas) and of their ``kb_vectors`` (document views unless given)."""
    now = utcnow()
    chunk_rows: list[dict] = []
    vector_rows: list[dict] = []
    for i, c in enumerate(chunks):
        chunk_id = uuid.uuid4()
        chunk_rows.append({"id": chunk_id, "created_at": now, "updated_at": now, "project": project_id,
                           "source": source_id, "entry": entry_id, "ordinal": i, "text": c.text,
                           "lemmas": lemma_text(c.text), "meta_json": c.meta, "token_count": len(c.text.split())})
        vector_rows += _vector_rows(project_id, chunk_id, views[i] if views else document_views(c.text), embedder)
    return chunk_rows, vector_rows


def _insert(chunk_rows: list[dict], vector_rows: list[dict]) -> None:
    if chunk_rows:
        KbChunk.insert_many(chunk_rows).execute()
    for start in range(0, len(vector_rows), 500):
        KbVector.insert_many(vector_rows[start:start + 500]).execute()


def index_entry(entry: KbEntry, embedder: Embedder | None) -> None:
    """Replace an FAQ entry's single chunk (question and answer, what the agent reads) and its
    embedded views; the status filter is applied at search time, so a draft has its chunk too and
    becomes searchable the moment it is activated."""
    chunk = Chunk(text=faq_chunk_text(entry.question, entry.answer), meta={"question": entry.question.strip()})
    rows = _chunk_rows(entry.project_id, [chunk], embedder, source_id=entry.source_id, entry_id=entry.id,
                       views=[entry_views(entry.question, entry.answer)])
    with database.atomic():
        KbChunk.delete().where(KbChunk.entry == entry.id).execute()
        _insert(*rows)


def index_source(source_id: Any, storage: Storage, embedder: Embedder | None, force: bool = False) -> str:
    """Index one source; returns "indexed", "skipped" (unchanged), "failed" or "missing" (deleted)."""
    source = KbSource.get_or_none(KbSource.id == source_id)
    if source is None:
        return "missing"
    model_name = embedder.name if embedder else None
    if source.kind == KbSourceKind.FAQ.value:
        _set_status(source.id, KbSourceStatus.INDEXING)
        entries = list(KbEntry.select().where(KbEntry.source == source.id))
        for entry in entries:
            index_entry(entry, embedder)
        _set_status(source.id, KbSourceStatus.READY, chunk_count=len(entries), indexed_at=utcnow(),
                    embedding_model=model_name, error=None, error_code=None)
        return "indexed"
    try:
        data = _read(storage, source)
        digest = sha256_hex(data)
        if (not force and source.status == KbSourceStatus.READY.value and source.indexed_sha256 == digest
                and source.embedding_model == model_name):
            log.info("knowledge source unchanged, not re-indexed", extra={"source_id": str(source.id)})
            return "skipped"
        _set_status(source.id, KbSourceStatus.INDEXING, error=None, error_code=None)
        chunks = chunk_blocks(extract(data, source.filename or source.name, source.content_type))
        rows = _chunk_rows(source.project_id, chunks, embedder, source_id=source.id)
    except AppError as exc:
        _set_status(source.id, KbSourceStatus.FAILED, error=failure_text(exc), error_code=exc.code, chunk_count=0)
        log.warning("knowledge source failed to index",
                    extra={"source_id": str(source.id), "code": exc.code, "detail": exc.details.get("detail")})
        return "failed"
    except Exception:
        _set_status(source.id, KbSourceStatus.FAILED, error=failure_text(AppError("KB_INDEX_FAILED")),
                    error_code="KB_INDEX_FAILED", chunk_count=0)
        raise
    with database.atomic():
        KbChunk.delete().where(KbChunk.source == source.id).execute()
        _insert(*rows)
        _set_status(source.id, KbSourceStatus.READY, chunk_count=len(rows[0]), indexed_at=utcnow(),
                    sha256=digest, indexed_sha256=digest, embedding_model=model_name, error=None, error_code=None)
    log.info("knowledge source indexed", extra={"source_id": str(source.id), "chunks": len(rows[0])})
    return "indexed"


def _read(storage: Storage, source: KbSource) -> bytes:
    if not source.storage_path:
        raise AppError("KB_FILE_MISSING")
    try:
        with storage.open(source.storage_path) as fh:
            return fh.read()
    except FileNotFoundError as exc:
        raise AppError("KB_FILE_MISSING") from exc


# ---- queueing ------------------------------------------------------------------------------------

_rq_connections: dict[str, redis.Redis] = {}


def kb_queue(settings: Settings) -> Queue:
    """The RQ queue indexing jobs go to (must be one the workers listen on: VOICEAI_RQ_QUEUES)."""
    names = [n.strip() for n in settings.rq_queues.split(",") if n.strip()]
    name = KB_QUEUE if KB_QUEUE in names or not names else names[0]
    conn = _rq_connections.get(settings.redis_url)
    if conn is None:
        conn = _rq_connections.setdefault(settings.redis_url, redis.Redis.from_url(settings.redis_url))
    return Queue(name, connection=conn)


def enqueue_source(settings: Settings, source_id: Any, force: bool = False, trace_id: str | None = None) -> str:
    job = kb_queue(settings).enqueue(INDEX_SOURCE_JOB, str(source_id), force, trace_id,
                                     job_timeout=JOB_TIMEOUT_S, description=f"kb index source {source_id}")
    return job.id


def enqueue_entry(settings: Settings, entry_id: Any, trace_id: str | None = None) -> str:
    job = kb_queue(settings).enqueue(INDEX_ENTRY_JOB, str(entry_id), trace_id, job_timeout=JOB_TIMEOUT_S,
                                     description=f"kb index entry {entry_id}")
    return job.id
