"""Knowledge-base entities (spec 1.2): sources (FAQ sets and uploaded documents), question/answer
entries (typed in, imported, or suggested from calls via ``POST /calls/{id}/add-to-kb``) and the
chunks that retrieval searches, with their embedded views (``kb_vectors``).

The indexing job (``core.kb``) fills ``kb_chunks`` from a source's file or from an entry; a chunk
belongs to a source, to an entry, or to both (an FAQ entry of an FAQ source). Embeddings are raw
little-endian float32 vectors in ``kb_vectors.embedding`` (``dim`` values).
"""
from __future__ import annotations

import enum

import peewee as pw

from models.base import JsonField, TimestampField
from models.calls import Call
from models.saas import ProjectScoped, User


class KbSourceKind(str, enum.Enum):
    FAQ = "faq"
    DOCUMENT = "document"


class KbSourceStatus(str, enum.Enum):
    PENDING = "pending"    # uploaded, waiting for the indexing job
    INDEXING = "indexing"
    READY = "ready"
    FAILED = "failed"      # see error / error_code


class KbEntryStatus(str, enum.Enum):
    DRAFT = "draft"          # typed in or built from a call (add-to-kb), not used until reviewed
    SUGGESTED = "suggested"  # proposed from a call, waiting for review
    ACTIVE = "active"        # used by agents
    REJECTED = "rejected"
    ARCHIVED = "archived"


class KbSource(ProjectScoped):
    name = pw.CharField(max_length=300)
    kind = pw.CharField(max_length=16, default=KbSourceKind.DOCUMENT.value)
    filename = pw.CharField(max_length=300, null=True)
    content_type = pw.CharField(max_length=100, null=True)
    storage_path = pw.CharField(max_length=500, null=True)  # storage key of the original file
    size_bytes = pw.BigIntegerField(null=True)
    sha256 = pw.CharField(max_length=64, null=True)  # of the file, to skip re-indexing unchanged
    indexed_sha256 = pw.CharField(max_length=64, null=True)  # of the content the chunks came from
    status = pw.CharField(max_length=16, default=KbSourceStatus.PENDING.value)
    error = pw.TextField(null=True)
    error_code = pw.CharField(max_length=64, null=True)
    chunk_count = pw.IntegerField(default=0)
    embedding_model = pw.CharField(max_length=100, null=True)
    indexed_at = TimestampField(null=True)
    created_by = pw.ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")

    class Meta:
        table_name = "kb_sources"
        indexes = ((("project", "created_at"), False),)


class KbEntry(ProjectScoped):
    source = pw.ForeignKeyField(KbSource, null=True, on_delete="CASCADE", backref="entries",
                                index=True)  # None: standalone entry (e.g. from a call)
    question = pw.TextField()
    answer = pw.TextField()
    status = pw.CharField(max_length=16, default=KbEntryStatus.ACTIVE.value)
    from_call = pw.ForeignKeyField(Call, null=True, on_delete="SET NULL", backref="kb_entries",
                                   index=True)
    tags_json = JsonField(default=list)
    created_by = pw.ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    reviewed_by = pw.ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    reviewed_at = TimestampField(null=True)

    class Meta:
        table_name = "kb_entries"
        indexes = ((("project", "status", "created_at"), False),)


class KbChunk(ProjectScoped):
    source = pw.ForeignKeyField(KbSource, null=True, on_delete="CASCADE", backref="chunks",
                                index=False)
    entry = pw.ForeignKeyField(KbEntry, null=True, on_delete="CASCADE", backref="chunks",
                               index=True)
    ordinal = pw.IntegerField(default=0)  # position within the source / entry
    text = pw.TextField()
    lemmas = pw.TextField(null=True)  # dictionary forms of the text's words (core.kb.lemmas), NULL before 0007
    token_count = pw.IntegerField(null=True)
    meta_json = JsonField()  # page, heading, char offsets

    class Meta:
        table_name = "kb_chunks"
        indexes = ((("source", "ordinal"), False),)


# Russian full-text search over chunk text (core.kb.retrieval queries this exact expression).
KbChunk.add_index(pw.SQL('CREATE INDEX "kb_chunks_text_fts" ON "kb_chunks" '
                         'USING GIN (to_tsvector(\'russian\', "text"))'))
# Word match on dictionary forms ('simple' configuration: the lemmas are searched as they are).
KbChunk.add_index(pw.SQL('CREATE INDEX "kb_chunks_lemmas_fts" ON "kb_chunks" '
                         'USING GIN (to_tsvector(\'simple\', "lemmas"))'))


class KbVector(ProjectScoped):
    """One embedded view of a chunk (core.kb.representations): an FAQ entry has several (question,
    question+answer, answer, answer sentences), a document chunk one; per embedding model."""

    chunk = pw.ForeignKeyField(KbChunk, on_delete="CASCADE", backref="vectors", index=True)
    kind = pw.CharField(max_length=16)  # question | qa | answer | sentence | text
    model = pw.CharField(max_length=100)
    dim = pw.IntegerField()
    embedding = pw.BlobField()  # little-endian float32, ``dim`` values, L2-normalised

    class Meta:
        table_name = "kb_vectors"
        indexes = ((("project", "model"), False),)


__all__ = ["KbSourceKind", "KbSourceStatus", "KbEntryStatus", "KbSource", "KbEntry", "KbChunk", "KbVector"]
