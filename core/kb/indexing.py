"""Building a source's or an FAQ entry's chunks (run by the RQ job ``jobs.kb_index``).

A document goes pending -> indexing -> ready (chunks replaced in one transaction) or failed (with a
catalog code and a Russian message, chunks of the last good version kept out of search by the
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
from core.kb.embeddings import Embedder, to_blob
from core.kb.errors import KB_FILE_MISSING, KB_INDEX_FAILED, KbIndexError
from core.kb.extract import extract
from core.storage import Storage
from models.base import database, utcnow
from models.kb import KbChunk, KbEntry, KbSource, KbSourceKind, KbSourceStatus

log = logging.getLogger("voiceai.kb.indexing")

KB_QUEUE = "default"
INDEX_SOURCE_JOB = "jobs.kb_index.index_source_job"
INDEX_ENTRY_JOB = "jobs.kb_index.index_entry_job"
JOB_TIMEOUT_S = 600


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _set_status(source_id: Any, status: KbSourceStatus, **fields: Any) -> None:
    KbSource.update(status=status.value, updated_at=utcnow(), **fields).where(KbSource.id == source_id).execute()


def _embed(embedder: Embedder | None, texts: list[str]) -> list[bytes | None]:
    if embedder is None or not texts:
        return [None] * len(texts)
    return [to_blob(v) for v in embedder.encode(texts)]


def _chunk_rows(project_id: Any, chunks: list[Chunk], embedder: Embedder | None,
                source_id: Any = None, entry_id: Any = None, embed_texts: list[str] | None = None) -> list[dict]:
    blobs = _embed(embedder, embed_texts or [c.text for c in chunks])
    now = utcnow()
    return [{"id": uuid.uuid4(), "created_at": now, "updated_at": now, "project": project_id,
             "source": source_id, "entry": entry_id, "ordinal": i, "text": c.text, "meta_json": c.meta,
             "embedding": blob, "embedding_model": embedder.name if blob is not None and embedder else None,
             "embedding_dim": embedder.dim if blob is not None and embedder else None,
             "token_count": len(c.text.split())}
            for i, (c, blob) in enumerate(zip(chunks, blobs))]


def index_entry(entry: KbEntry, embedder: Embedder | None) -> None:
    """Replace an FAQ entry's single chunk (question and answer); the status filter is applied at
    search time, so a draft has its chunk too and becomes searchable the moment it is activated."""
    chunk = Chunk(text=faq_chunk_text(entry.question, entry.answer), meta={"question": entry.question.strip()})
    # The question alone is embedded: callers ask questions, and the answer's words would pull the
    # vector away from how people phrase them.
    rows = _chunk_rows(entry.project_id, [chunk], embedder, source_id=entry.source_id, entry_id=entry.id,
                       embed_texts=[entry.question])
    with database.atomic():
        KbChunk.delete().where(KbChunk.entry == entry.id).execute()
        KbChunk.insert_many(rows).execute()


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
    except KbIndexError as exc:
        _set_status(source.id, KbSourceStatus.FAILED, error=exc.message, error_code=exc.code, chunk_count=0)
        log.warning("knowledge source failed to index",
                    extra={"source_id": str(source.id), "code": exc.code, "detail": exc.detail})
        return "failed"
    except Exception:
        _set_status(source.id, KbSourceStatus.FAILED, error=KbIndexError(KB_INDEX_FAILED).message,
                    error_code=KB_INDEX_FAILED, chunk_count=0)
        raise
    with database.atomic():
        KbChunk.delete().where(KbChunk.source == source.id).execute()
        if rows:
            KbChunk.insert_many(rows).execute()
        _set_status(source.id, KbSourceStatus.READY, chunk_count=len(rows), indexed_at=utcnow(),
                    sha256=digest, indexed_sha256=digest, embedding_model=model_name, error=None, error_code=None)
    log.info("knowledge source indexed", extra={"source_id": str(source.id), "chunks": len(rows)})
    return "indexed"


def _read(storage: Storage, source: KbSource) -> bytes:
    if not source.storage_path:
        raise KbIndexError(KB_FILE_MISSING)
    try:
        with storage.open(source.storage_path) as fh:
            return fh.read()
    except FileNotFoundError as exc:
        raise KbIndexError(KB_FILE_MISSING) from exc


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
