"""RQ entry points of knowledge-base indexing (enqueued by ``core.kb.indexing.enqueue_*``).

Job functions take plain ids, open their own database connection and carry the trace id of the
request that queued them into every log line.
"""
from __future__ import annotations

from core.config import get_settings
from core.kb.embeddings import get_embedder
from core.kb.indexing import index_entry, index_source
from core.storage import make_storage
from core.tracing import new_trace_id, set_trace_id
from models.base import bind_database, database
from models.kb import KbEntry


def _db():
    # The worker binds the database at start; a job run elsewhere (tests, the CLI) binds it here.
    return database.obj if database.obj is not None else bind_database(get_settings().database_url)


def index_source_job(source_id: str, force: bool = False, trace_id: str | None = None) -> str:
    """Index one knowledge source (document or FAQ set)."""
    set_trace_id(trace_id or new_trace_id())
    with _db().connection_context():
        return index_source(source_id, make_storage(get_settings()), get_embedder(), force=force)


def index_entry_job(entry_id: str, trace_id: str | None = None) -> str:
    """(Re)build an FAQ entry's chunk with its embedding."""
    set_trace_id(trace_id or new_trace_id())
    with _db().connection_context():
        entry = KbEntry.get_or_none(KbEntry.id == entry_id)
        if entry is None:
            return "missing"
        index_entry(entry, get_embedder())
        return "indexed"
