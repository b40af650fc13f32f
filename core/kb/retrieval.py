"""Knowledge-base retrieval for the dialog runtime: Russian word match plus embeddings.

``retrieve(project_id, query)`` returns the best chunks of one project with citations. Only chunks
of READY document sources and of ACTIVE FAQ entries are searched (a draft built from a call is not
used until someone reviews it).

Full-text search (always on) uses PostgreSQL's ``russian`` configuration over
``to_tsvector('russian', text)`` (GIN index ``kb_chunks_text_fts``). A caller's question rarely
repeats the document's words exactly, so any shared word makes a candidate and candidates are
scored by coverage: the share of the question's words the chunk contains (``ts_rank`` breaks
ties). Each stem also has loose variants that count half: the stem cut by up to three letters and
the stem as a prefix. Snowball stems "записаться" to "записа" but "запись" to "зап"; the loose
variants let one find the other. Dictionary forms (``kb_chunks.lemmas``, pymorphy3) are matched
too, and a chunk's coverage is the better of the two.

Embeddings (when ``core.kb.embeddings`` has models) compare the question with every embedded view
of every chunk (``core.kb.representations``: an FAQ entry as question, question+answer, answer
and answer sentences); per model and view group the best view counts, and ``core.kb.fusion``
standardises and averages the signals, the word match joining with a small weight. A chunk that
shares no word with the question is returned only when some model's cosine reaches that model's
``min_cosine``: unrelated questions get no snippets rather than the least bad one.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from core.kb.citations import document_citation, faq_citation
from core.kb.embeddings import Embedder, TextEncoder, from_blob, get_embedder
from core.kb.fusion import fuse
from core.kb.lemmas import lemmas, strip_fillers
from core.kb.representations import GROUP_OF_KIND
from core.kb.types import Snippet
from models.base import database
from models.kb import KbEntryStatus, KbSourceStatus

FTS_CANDIDATES = 50          # best full-text matches considered for the final ranking
MAX_VECTOR_SCAN = 60000      # vectors per model compared by cosine per query (whole project up to this)
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


def lemma_terms(query: str) -> list[str]:
    """The question's dictionary forms as tsquery texts (unique, stop words dropped)."""
    return [_quote(lx) for lx in sorted(set(lemmas(query)))]


_FILTER_SQL = """
FROM kb_chunks c
LEFT JOIN kb_sources s ON s.id = c.source_id
LEFT JOIN kb_entries e ON e.id = c.entry_id
WHERE c.project_id = %(project)s
  AND (c.source_id IS NULL OR s.status = %(ready)s)
  AND (c.entry_id IS NULL OR e.status = %(active)s)
  {scope}
"""


def _scope_sql(source_ids: Sequence[Any] | None) -> str:
    # Entries without a source (typed in, or from calls) are the project's own FAQ: always searched.
    return "" if source_ids is None else "AND (c.source_id IS NULL OR c.source_id = ANY(%(sources)s::uuid[]))"


def _word_hits(params: dict, terms: list[StemQuery], lemma_qs: list[str],
               source_ids: Sequence[Any] | None) -> dict[uuid.UUID, float]:
    """Chunks sharing a word with the query, scored by coverage: the share of query words found,
    by stems (a loose match counts ``LOOSE_WEIGHT``) or by dictionary forms, whichever is higher;
    ``ts_rank`` is the tie-break within a tenth."""
    if not terms and not lemma_qs:
        return {}
    vec = "to_tsvector('russian', c.text)"
    lvec = "to_tsvector('simple', c.lemmas)"
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
    per_lemma: list[str] = []
    for i, lq in enumerate(lemma_qs):
        params[f"m{i}"] = lq
        per_lemma.append(f"(CASE WHEN {lvec} @@ %(m{i})s::tsquery THEN 1.0 ELSE 0 END)")
    stem_cov = f"(({' + '.join(per_word)}) / {len(terms)}.0)" if terms else "0"
    lemma_cov = f"(({' + '.join(per_lemma)}) / {len(lemma_qs)}.0)" if lemma_qs else "0"
    params["qall"] = " | ".join(t.exact + (f" | {t.loose}" if t.loose else "") for t in terms) or "''"
    params["lall"] = " | ".join(lemma_qs) or "''"
    match = []
    if terms:
        match.append(f"{vec} @@ %(qall)s::tsquery")
    if lemma_qs:
        match.append(f"{lvec} @@ %(lall)s::tsquery")
    sql = (f"SELECT c.id, GREATEST({stem_cov}, {lemma_cov}) AS coverage, "
           f"ts_rank({vec}, %(qall)s::tsquery, 1) AS rank "
           + _FILTER_SQL.format(scope=_scope_sql(source_ids))
           + f" AND ({' OR '.join(match)}) ORDER BY coverage DESC, rank DESC, c.id LIMIT {FTS_CANDIDATES}")
    rows = database.execute_sql(sql, params).fetchall()
    max_rank = max((float(r[2]) for r in rows), default=0.0) or 1.0
    return {_uuid(r[0]): 0.9 * float(r[1]) + 0.1 * float(r[2]) / max_rank for r in rows if float(r[1]) > 0}


@dataclass
class _ModelScan:
    """One model's cosines: per view group {chunk: best cosine}, and each chunk's best overall."""

    encoder: TextEncoder
    groups: dict[str, dict[uuid.UUID, float]]
    best: dict[uuid.UUID, float]


def _scan(params: dict, query: str, encoder: TextEncoder, source_ids: Sequence[Any] | None,
          run: Callable[..., Any]) -> _ModelScan:
    """Cosines of the question with every view of the searchable chunks embedded by this model."""
    sql = ("SELECT v.chunk_id, v.kind, v.embedding FROM kb_vectors v JOIN kb_chunks c ON c.id = v.chunk_id "
           + _FILTER_SQL.format(scope=_scope_sql(source_ids)).replace("FROM kb_chunks c", "", 1)
           + f" AND v.model = %(model)s AND v.dim = %(dim)s LIMIT {MAX_VECTOR_SCAN}")
    rows = database.execute_sql(sql, {**params, "model": encoder.name, "dim": encoder.dim}).fetchall()
    scan = _ModelScan(encoder, {}, {})
    if not rows:
        return scan
    matrix = np.vstack([from_blob(r[2], encoder.dim) for r in rows])
    cosines = run(_cosines, matrix, encoder, query)
    for (chunk_id, kind, _), cosine in zip(rows, cosines):
        key, value = _uuid(chunk_id), float(cosine)
        group = scan.groups.setdefault(GROUP_OF_KIND.get(kind, "whole"), {})
        group[key] = max(group.get(key, -1.0), value)
        scan.best[key] = max(scan.best.get(key, -1.0), value)
    return scan


def _cosines(matrix: np.ndarray, encoder: TextEncoder, query: str) -> np.ndarray:
    """The CPU part of a scan (model inference and the product): what ``run`` moves off the loop."""
    return matrix @ encoder.encode([query], query=True)[0]


def _inline(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _rank(words: dict[uuid.UUID, float], scans: list[_ModelScan]) -> list[tuple[float, uuid.UUID]]:
    """(score, chunk) best first. Without models: the word-match score. With models: the fused score
    of every scanned chunk that shares a word or is close enough by some model."""
    if not scans:
        return sorted(((score, key) for key, score in words.items()), key=lambda p: (-p[0], str(p[1])))
    keys = sorted(set(words).union(*(s.best for s in scans)), key=str)
    index = {key: i for i, key in enumerate(keys)}
    signals = [{index[k]: v for k, v in group.items()} for s in scans for group in s.groups.values()]
    scores = fuse(len(keys), signals, [words.get(k, 0.0) for k in keys])
    eligible = [(float(scores[i]), key) for i, key in enumerate(keys)
                if key in words or any(s.best.get(key, -1.0) >= s.encoder.min_cosine for s in scans)]
    return sorted(eligible, key=lambda p: (-p[0], str(p[1])))


def _snippets(params: dict, ranked: list[tuple[float, uuid.UUID]]) -> list[Snippet]:
    if not ranked:
        return []
    sql = ("SELECT c.id, c.text, c.source_id, c.entry_id, c.meta_json, s.name, e.question "
           + _FILTER_SQL.format(scope="") + " AND c.id = ANY(%(ids)s::uuid[])")
    rows = {_uuid(r[0]): r for r in database.execute_sql(
        sql, {**params, "ids": [str(k) for _, k in ranked]}).fetchall()}
    out: list[Snippet] = []
    for score, key in ranked:
        row = rows.get(key)
        if row is None:
            continue
        chunk_id, text, source_id, entry_id, meta, source_name, question = row
        if entry_id is not None:
            citation, name = faq_citation(question or "", source_name), question or ""
        else:
            citation, name = document_citation(source_name or "", meta), source_name or ""
        out.append(Snippet(text=text, score=round(score, 4), chunk_id=key,
                           source_id=_uuid(source_id) if source_id else None,
                           entry_id=_uuid(entry_id) if entry_id else None,
                           source_name=name, citation=citation))
    return out


def search(project_id: Any, query: str, *, source_ids: Sequence[Any] | None = None, limit: int = 4,
           embedder: Embedder | None = None, run: Callable[..., Any] | None = None) -> list[Snippet]:
    """Hybrid search with an explicit embedder (None: word match only).

    ``run(fn, *args)`` executes the model inference; the voice loop passes its inference pool so the
    gevent loop only waits on the database, never on the CPU.
    """
    query = strip_fillers(query or "")
    if not query or limit <= 0:
        return []
    params: dict[str, Any] = {"project": str(project_id), "ready": KbSourceStatus.READY.value,
                              "active": KbEntryStatus.ACTIVE.value,
                              "sources": [str(s) for s in source_ids or []]}
    words = _word_hits(params, query_terms(query), lemma_terms(query), source_ids)
    scans = [_scan(params, query, enc, source_ids, run or _inline) for enc in embedder.encoders] if embedder else []
    return _snippets(params, _rank(words, scans)[:limit])


def retrieve(project_id: Any, query: str, *, source_ids: list | None = None, limit: int = 4,
             run: Callable[..., Any] | None = None) -> list[Snippet]:
    """The best knowledge snippets of one project for a caller's question, with citations.

    ``source_ids`` limits document and FAQ-set sources to the agent's knowledge sources; standalone
    FAQ entries of the project are always searched. Uses every installed embedding model. Costs a
    few milliseconds of CPU per model (USE ~1 ms, E5 up to ~50 ms on a busy machine) plus the
    queries: under gevent pass ``run`` (the inference pool's ``run``) so the models run off the loop.
    """
    embedder = run(get_embedder) if run is not None else get_embedder()  # the first call loads the models
    return search(project_id, query, source_ids=source_ids, limit=limit, embedder=embedder, run=run)
