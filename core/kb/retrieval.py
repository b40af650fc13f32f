"""Knowledge-base retrieval for the dialog runtime: Russian full-text search plus embeddings.

``retrieve(project_id, query)`` returns the best chunks of one project with citations. Only chunks
of READY document sources and of ACTIVE FAQ entries are searched (a draft built from a call is not
used until someone reviews it).

Full-text search (always on) uses PostgreSQL's ``russian`` configuration over
``to_tsvector('russian', text)`` (GIN index ``kb_chunks_text_fts``). A caller's question rarely
repeats the document's words exactly, so any shared word makes a candidate and candidates are
scored by coverage: the share of the question's words the chunk contains (``ts_rank`` breaks
ties). Each stem also has loose variants that count half: the stem cut by up to three letters and
the stem as a prefix. Snowball stems "записаться" to "записа" but "запись" to "зап"; the loose
variants let one find the other.

Embeddings (when ``core.kb.embeddings`` has a model) add a cosine score over the chunks embedded
by the same model; the final score mixes the two (``HYBRID_WEIGHT``), and a chunk that shares no
word with the query is returned only when its cosine reaches ``MIN_COSINE``.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from core.kb.citations import document_citation, faq_citation
from core.kb.embeddings import Embedder, from_blob, get_embedder
from core.kb.types import Snippet
from models.base import database
from models.kb import KbEntryStatus, KbSourceStatus

FTS_CANDIDATES = 50          # best full-text matches considered for the final ranking
MAX_EMBEDDED_SCAN = 20000    # chunks compared by cosine per query (whole project up to this)
MIN_COSINE = 0.33            # below this a chunk without shared words is noise
HYBRID_WEIGHT = 0.8          # share of the embedding score in the final score (bench/kb_eval.py tunes it)
LOOSE_WEIGHT = 0.5           # weight of truncated/prefix stem matches against exact ones
_MIN_STEM = 3                # shortest truncated stem used as a loose variant
_MIN_PREFIX = 4              # shortest stem matched as a prefix


@dataclass(frozen=True)
class StemQuery:
    """One query word: its exact stem and the loose variants (tsquery texts)."""

    exact: str
    loose: str


def _quote(lexeme: str) -> str:
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


def build_query_terms(lexemes: Iterable[str]) -> list[StemQuery]:
    """Per stem: the exact lexeme, and loose variants (the stem cut by 1..3 letters, matched exactly,
    plus the stem as a prefix); an empty list when there is nothing to search for."""
    out: list[StemQuery] = []
    for stem in sorted({lx for lx in lexemes if lx}):
        loose: list[str] = []
        if len(stem) >= 5:
            loose += [_quote(stem[:-cut]) for cut in range(1, 4) if len(stem) - cut >= _MIN_STEM]
        if len(stem) >= _MIN_PREFIX:
            loose.append(_quote(stem) + ":*")
        out.append(StemQuery(exact=_quote(stem), loose=" | ".join(loose)))
    return out


def query_terms(query: str) -> list[StemQuery]:
    """Stems of a question as PostgreSQL's Russian configuration sees them (stop words dropped)."""
    rows = database.execute_sql("SELECT lexeme FROM unnest(to_tsvector('russian', %s))", (query,)).fetchall()
    return build_query_terms(r[0] for r in rows)


_BASE_SQL = """
SELECT c.id, c.text, c.source_id, c.entry_id, c.meta_json, s.name, e.question, {extra}
FROM kb_chunks c
LEFT JOIN kb_sources s ON s.id = c.source_id
LEFT JOIN kb_entries e ON e.id = c.entry_id
WHERE c.project_id = %(project)s
  AND (c.source_id IS NULL OR s.status = %(ready)s)
  AND (c.entry_id IS NULL OR e.status = %(active)s)
  {scope}
  {match}
"""


def _scope_sql(source_ids: Sequence[Any] | None) -> str:
    # Entries without a source (typed in, or from calls) are the project's own FAQ: always searched.
    return "" if source_ids is None else "AND (c.source_id IS NULL OR c.source_id = ANY(%(sources)s::uuid[]))"


@dataclass
class _Hit:
    row: tuple
    fts: float = 0.0
    cosine: float | None = None


def _fts_hits(params: dict, terms: list[StemQuery], source_ids: Sequence[Any] | None) -> dict[uuid.UUID, _Hit]:
    """Chunks sharing a word with the query, scored by coverage: the share of query words found
    (a loose match counts ``LOOSE_WEIGHT``), with ``ts_rank`` as the tie-break within a tenth."""
    if not terms:
        return {}
    vec = "to_tsvector('russian', c.text)"
    params = dict(params)
    per_word: list[str] = []
    for i, term in enumerate(terms):
        params[f"e{i}"] = term.exact
        exact = f"({vec} @@ %(e{i})s::tsquery)"
        if term.loose:
            params[f"l{i}"] = term.loose
            per_word.append(f"(CASE WHEN {exact} THEN 1.0 WHEN {vec} @@ %(l{i})s::tsquery "
                            f"THEN {LOOSE_WEIGHT} ELSE 0 END)")
        else:
            per_word.append(f"(CASE WHEN {exact} THEN 1.0 ELSE 0 END)")
    params["qall"] = " | ".join(t.exact + (f" | {t.loose}" if t.loose else "") for t in terms)
    coverage = f"(({' + '.join(per_word)}) / {len(terms)}.0)"
    sql = _BASE_SQL.format(
        extra=f"{coverage} AS coverage, ts_rank({vec}, %(qall)s::tsquery, 1) AS rank",
        scope=_scope_sql(source_ids),
        match=f"AND {vec} @@ %(qall)s::tsquery",
    ) + f" ORDER BY coverage DESC, rank DESC, c.id LIMIT {FTS_CANDIDATES}"
    rows = database.execute_sql(sql, params).fetchall()
    max_rank = max((float(r[8]) for r in rows), default=0.0) or 1.0
    return {_uuid(r[0]): _Hit(row=r[:7], fts=0.9 * float(r[7]) + 0.1 * float(r[8]) / max_rank) for r in rows}


def _embedding_hits(params: dict, query: str, embedder: Embedder, source_ids: Sequence[Any] | None,
                    hits: dict[uuid.UUID, _Hit]) -> None:
    params = {**params, "model": embedder.name, "dim": embedder.dim}
    sql = _BASE_SQL.format(extra="c.embedding", scope=_scope_sql(source_ids),
                           match="AND c.embedding IS NOT NULL AND c.embedding_model = %(model)s "
                                 "AND c.embedding_dim = %(dim)s") + f" LIMIT {MAX_EMBEDDED_SCAN}"
    rows = database.execute_sql(sql, params).fetchall()
    if not rows:
        return
    matrix = np.vstack([from_blob(r[7], embedder.dim) for r in rows])
    qv = embedder.encode([query])[0]
    cosines = matrix @ qv
    for row, cosine in zip(rows, cosines):
        key = _uuid(row[0])
        if key in hits:
            hits[key].cosine = float(cosine)
        elif cosine >= MIN_COSINE:
            hits[key] = _Hit(row=row[:7], cosine=float(cosine))


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _score(hit: _Hit, with_embeddings: bool) -> float:
    fts = hit.fts
    if not with_embeddings:
        return fts
    cosine = max(hit.cosine or 0.0, 0.0)
    return (1 - HYBRID_WEIGHT) * fts + HYBRID_WEIGHT * cosine


def _snippet(hit: _Hit, score: float) -> Snippet:
    chunk_id, text, source_id, entry_id, meta, source_name, question = hit.row
    if entry_id is not None:
        citation = faq_citation(question or "", source_name)
        name = question or ""
    else:
        citation = document_citation(source_name or "", meta)
        name = source_name or ""
    return Snippet(text=text, score=round(score, 4), chunk_id=_uuid(chunk_id),
                   source_id=_uuid(source_id) if source_id else None,
                   entry_id=_uuid(entry_id) if entry_id else None,
                   source_name=name, citation=citation)


def search(project_id: Any, query: str, *, source_ids: Sequence[Any] | None = None, limit: int = 4,
           embedder: Embedder | None = None) -> list[Snippet]:
    """Hybrid search with an explicit embedder (None: full-text search only)."""
    query = (query or "").strip()
    if not query or limit <= 0:
        return []
    params: dict[str, Any] = {"project": str(project_id), "ready": KbSourceStatus.READY.value,
                              "active": KbEntryStatus.ACTIVE.value,
                              "sources": [str(s) for s in source_ids or []]}
    hits = _fts_hits(params, query_terms(query), source_ids)
    if embedder is not None:
        _embedding_hits(params, query, embedder, source_ids, hits)
    ranked = sorted(((_score(h, embedder is not None), h) for h in hits.values()),
                    key=lambda pair: (-pair[0], str(pair[1].row[0])))
    return [_snippet(h, score) for score, h in ranked[:limit]]


def retrieve(project_id: Any, query: str, *, source_ids: list | None = None, limit: int = 4) -> list[Snippet]:
    """The best knowledge snippets of one project for a caller's question, with citations.

    ``source_ids`` limits document and FAQ-set sources to the agent's knowledge sources; standalone
    FAQ entries of the project are always searched. Uses embeddings when a model is installed.
    """
    return search(project_id, query, source_ids=source_ids, limit=limit, embedder=get_embedder())
