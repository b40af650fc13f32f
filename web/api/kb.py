"""Knowledge base API: documents (upload, list, delete, re-index), FAQ entries, search, add-to-kb.

Uploads are stored through ``core.storage`` and indexed by the RQ job ``jobs.kb_index`` (the view
commits before queueing so the worker sees the row). FAQ entries get their search chunk at once
(full-text) and a job adds the embedding. ``POST /calls/{id}/add-to-kb`` turns a caller's question
and the answer an operator (or the agent) gave into a draft entry that retrieval ignores until
someone reviews it (``PATCH /kb/entries/{id}`` with ``status: active``).
"""
from __future__ import annotations

import os
import tempfile
import uuid
from typing import Any

from flask import g, request

from core.errors import AppError, NotFound, ValidationFailed
from core.kb.extract import FORMATS, GENERIC_TYPES, detect_format
from core.kb.indexing import enqueue_entry, enqueue_source, index_entry, sha256_hex
from core.kb.retrieval import retrieve
from core.storage import make_storage
from models.base import utcnow
from models.calls import Speaker, Transcript
from models.kb import KbEntry, KbEntryStatus, KbSource, KbSourceKind, KbSourceStatus
from web import audit
from web.api import schemas as S
from web.api.calls import project_call
from web.api.pagination import PAGE_QUERY, paginate
from web.api.registry import ApiGroup
from web.app import commit_now, settings

group = ApiGroup("kb", "Knowledge base")

MAX_UPLOAD_MB = 20
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024
ENTRY_STATUSES = [KbEntryStatus.DRAFT.value, KbEntryStatus.ACTIVE.value, KbEntryStatus.ARCHIVED.value]
STATUS_TEXT = {
    KbSourceStatus.PENDING.value: "Ожидает индексации",
    KbSourceStatus.INDEXING.value: "Индексируется",
    KbSourceStatus.READY.value: "Готов, используется агентами",
    KbSourceStatus.FAILED.value: "Ошибка индексации",
}

_NULL_STR = {"type": ["string", "null"]}
S.COMPONENTS.update({
    "KbSource": S.obj(["id", "project_id", "name", "kind", "status", "status_text", "chunk_count", "created_at"], {
        "id": S.UUID, "project_id": S.UUID, "name": {"type": "string"},
        "kind": {"type": "string", "enum": [k.value for k in KbSourceKind]},
        "filename": _NULL_STR, "content_type": _NULL_STR, "size_bytes": {"type": ["integer", "null"]},
        "sha256": _NULL_STR, "status": {"type": "string", "enum": [s.value for s in KbSourceStatus]},
        "status_text": {"type": "string"}, "error": _NULL_STR, "error_code": _NULL_STR,
        "chunk_count": {"type": "integer"}, "embedding_model": _NULL_STR, "indexed_at": S.TS_NULL,
        "created_at": S.TS, "updated_at": S.TS}),
    "KbEntry": S.obj(["id", "project_id", "question", "answer", "status", "tags", "created_at"], {
        "id": S.UUID, "project_id": S.UUID, "source_id": _NULL_STR, "question": {"type": "string"},
        "answer": {"type": "string"}, "status": {"type": "string", "enum": [s.value for s in KbEntryStatus]},
        "tags": {"type": "array", "items": {"type": "string"}}, "from_call_id": _NULL_STR,
        "created_at": S.TS, "updated_at": S.TS, "reviewed_at": S.TS_NULL}),
    "KbSnippet": S.obj(["text", "score", "chunk_id", "source_name", "citation"], {
        "text": {"type": "string"}, "score": {"type": "number"}, "chunk_id": S.UUID, "source_id": _NULL_STR,
        "entry_id": _NULL_STR, "source_name": {"type": "string"}, "citation": {"type": "string"}}),
})
S.COMPONENTS["KbSearch"] = S.obj(["query", "items"], {
    "query": {"type": "string"}, "items": {"type": "array", "items": S.ref("KbSnippet")}})

TEXT = {"type": "string", "minLength": 1, "maxLength": 5000}
TAGS = {"type": "array", "maxItems": 20, "items": {"type": "string", "minLength": 1, "maxLength": 50}}
ENTRY_FIELDS = {"question": {**TEXT, "maxLength": 1000}, "answer": TEXT, "tags": TAGS,
                "status": {"type": "string", "enum": ENTRY_STATUSES}}
ENTRY_CREATE = S.obj(["question", "answer"], ENTRY_FIELDS)
ENTRY_UPDATE = {**S.obj([], ENTRY_FIELDS), "minProperties": 1}
REINDEX = S.obj([], {"force": {"type": "boolean"}})
ADD_TO_KB = {**S.obj([], {"question": {**TEXT, "maxLength": 1000}, "answer": TEXT, "tags": TAGS,
                          "transcript_ids": {"type": "array", "minItems": 1, "maxItems": 50,
                                             "items": {"type": "string", "format": "uuid"}}}),
             "minProperties": 1}




def serialize_source(s: KbSource) -> dict:
    return {"id": str(s.id), "project_id": str(s.project_id), "name": s.name, "kind": s.kind,
            "filename": s.filename, "content_type": s.content_type, "size_bytes": s.size_bytes,
            "sha256": s.sha256, "status": s.status, "status_text": STATUS_TEXT.get(s.status, s.status),
            "error": s.error, "error_code": s.error_code, "chunk_count": s.chunk_count,
            "embedding_model": s.embedding_model, "indexed_at": S.iso(s.indexed_at),
            "created_at": s.created_at.isoformat(), "updated_at": s.updated_at.isoformat()}


def serialize_entry(e: KbEntry) -> dict:
    return {"id": str(e.id), "project_id": str(e.project_id), "source_id": S.sid(e.source_id),
            "question": e.question, "answer": e.answer, "status": e.status, "tags": list(e.tags_json or []),
            "from_call_id": S.sid(e.from_call_id), "created_at": e.created_at.isoformat(),
            "updated_at": e.updated_at.isoformat(), "reviewed_at": S.iso(e.reviewed_at)}


def _get(model, raw_id: str, entity: str):
    try:
        oid = uuid.UUID(str(raw_id))
    except ValueError:
        raise NotFound(entity, raw_id)
    row = model.for_project(g.project.id).where(model.id == oid).first()
    if row is None:
        raise NotFound(entity, raw_id)
    return row


def _user_id() -> uuid.UUID | None:
    principal = g.principal
    return principal.user.id if principal is not None and principal.user is not None else None


# ---- documents -----------------------------------------------------------------------------------

@group.route("/kb/sources", ["POST"], permission="kb.edit", raw_body=True,
             responses={201: S.ref("KbSource"), 409: None, 413: None},
             summary="Загрузить документ в базу знаний (multipart: file, name); TXT, MD, HTML, PDF, DOCX")
def upload_source():
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise ValidationFailed({"file": "Приложите файл в поле file (multipart/form-data)"})
    data = upload.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise AppError("PAYLOAD_TOO_LARGE", {"max_mb": MAX_UPLOAD_MB,
                                             "reason": f"Файл больше {MAX_UPLOAD_MB} МБ"})
    if not data:
        raise ValidationFailed({"file": "Файл пустой"})
    content_type = (upload.mimetype or "").lower()
    fmt = detect_format(upload.filename, content_type, data[:8])
    if fmt is None:
        ext = os.path.splitext(upload.filename)[1] or "без расширения"
        raise ValidationFailed({"file": f"Формат «{ext}» ({content_type or 'тип не указан'}) не поддерживается: "
                                        f"загрузите {', '.join(f.upper() for f in FORMATS)}"})
    name = (request.form.get("name") or "").strip() or os.path.basename(upload.filename)
    if len(name) > 300:
        raise ValidationFailed({"name": "Не длиннее 300 символов"})
    digest = sha256_hex(data)
    duplicate = KbSource.for_project(g.project.id).where(KbSource.sha256 == digest).first()
    if duplicate is not None:
        raise AppError("CONFLICT", {"reason": f"Этот файл уже загружен как «{duplicate.name}»",
                                    "source_id": str(duplicate.id)})
    source_id = uuid.uuid4()
    key = f"kb/{g.project.id}/{source_id}.{fmt}"
    with tempfile.NamedTemporaryFile(prefix="voiceai-kb-") as tmp:
        tmp.write(data)
        tmp.flush()
        make_storage(settings()).put_file(key, tmp.name)
    source = KbSource.create(
        id=source_id, project=g.project.id, name=name, kind=KbSourceKind.DOCUMENT.value,
        filename=os.path.basename(upload.filename)[:300],
        content_type=content_type if content_type not in GENERIC_TYPES else None, storage_path=key,
        size_bytes=len(data), sha256=digest, status=KbSourceStatus.PENDING.value, created_by=_user_id())
    audit.record("kb.source.create", "kb_source", source.id, after={"name": name, "size_bytes": len(data),
                                                                    "format": fmt}, project_id=g.project.id)
    commit_now()  # the worker must see the row
    enqueue_source(settings(), source.id, trace_id=g.trace_id)
    return serialize_source(source), 201


@group.route("/kb/sources", ["GET"], permission="kb.read", responses={200: S.page_of("KbSource")},
             query={**PAGE_QUERY, "status": {"type": "string"}}, summary="Документы базы знаний")
def list_sources():
    query = KbSource.for_project(g.project.id)
    if request.args.get("status"):
        query = query.where(KbSource.status == request.args["status"])
    return paginate(query, KbSource.created_at, KbSource.id, serialize_source)


@group.route("/kb/sources/<source_id>", ["GET"], permission="kb.read", responses={200: S.ref("KbSource")},
             summary="Документ базы знаний и состояние индексации")
def get_source(source_id: str):
    return serialize_source(_get(KbSource, source_id, "kb_source"))


@group.route("/kb/sources/<source_id>", ["DELETE"], permission="kb.edit", responses={200: S.ref("Ok")},
             summary="Удалить документ (и его фрагменты) из базы знаний")
def delete_source(source_id: str):
    source = _get(KbSource, source_id, "kb_source")
    before = {"name": source.name, "status": source.status}
    path = source.storage_path
    source.delete_instance()  # chunks and entries of the source cascade
    audit.record("kb.source.delete", "kb_source", source.id, before=before, project_id=g.project.id)
    if path:
        commit_now()  # the row is gone for good before the file goes
        make_storage(settings()).delete(path)
    return {"ok": True}


@group.route("/kb/sources/<source_id>/reindex", ["POST"], permission="kb.edit", body=REINDEX,
             responses={202: S.ref("KbSource")},
             summary="Переиндексировать документ (force=false: пропустить, если файл не менялся)")
def reindex_source(source_id: str):
    source = _get(KbSource, source_id, "kb_source")
    force = g.body.get("force", True)
    if force:
        KbSource.update(status=KbSourceStatus.PENDING.value, updated_at=utcnow()).where(
            KbSource.id == source.id).execute()
        source = KbSource.get_by_id(source.id)
    audit.record("kb.source.reindex", "kb_source", source.id, after={"force": force}, project_id=g.project.id)
    commit_now()
    enqueue_source(settings(), source.id, force=force, trace_id=g.trace_id)
    return serialize_source(source), 202


# ---- FAQ entries ---------------------------------------------------------------------------------

def _apply_entry(entry: KbEntry, body: dict) -> bool:
    """Copy body fields onto an entry; returns whether the searchable text changed."""
    changed_text = False
    for key in ("question", "answer"):
        if key in body and body[key].strip() != getattr(entry, key):
            setattr(entry, key, body[key].strip())
            changed_text = True
    if "tags" in body:
        entry.tags_json = sorted({t.strip() for t in body["tags"] if t.strip()})
    if "status" in body and body["status"] != entry.status:
        entry.status = body["status"]
        if body["status"] == KbEntryStatus.ACTIVE.value:
            entry.reviewed_by = _user_id()
            entry.reviewed_at = utcnow()
    for key in ("question", "answer"):
        if not getattr(entry, key).strip():
            raise ValidationFailed({key: "Не может быть пустым"})
    return changed_text


def _index_entry_now(entry: KbEntry) -> None:
    """Full-text chunk at once (searchable on activation); the job adds the embedding."""
    index_entry(entry, None)
    commit_now()
    enqueue_entry(settings(), entry.id, trace_id=g.trace_id)


@group.route("/kb/entries", ["GET"], permission="kb.read", responses={200: S.page_of("KbEntry")},
             query={**PAGE_QUERY, "status": {"type": "string"}, "from_call_id": {"type": "string"}},
             summary="Вопросы и ответы (FAQ) базы знаний")
def list_entries():
    query = KbEntry.for_project(g.project.id)
    if request.args.get("status"):
        query = query.where(KbEntry.status == request.args["status"])
    if request.args.get("from_call_id"):
        try:
            query = query.where(KbEntry.from_call == uuid.UUID(request.args["from_call_id"]))
        except ValueError:
            raise ValidationFailed({"from_call_id": "Ожидается UUID звонка"})
    return paginate(query, KbEntry.created_at, KbEntry.id, serialize_entry)


@group.route("/kb/entries", ["POST"], permission="kb.edit", body=ENTRY_CREATE, responses={201: S.ref("KbEntry")},
             summary="Добавить вопрос и ответ (по умолчанию сразу активен)")
def create_entry():
    entry = KbEntry(project=g.project.id, question="", answer="", status=KbEntryStatus.ACTIVE.value,
                    tags_json=[], created_by=_user_id())
    body = {"status": KbEntryStatus.ACTIVE.value, **g.body}
    _apply_entry(entry, body)
    entry.save(force_insert=True)
    audit.record("kb.entry.create", "kb_entry", entry.id, after=serialize_entry(entry), project_id=g.project.id)
    _index_entry_now(entry)
    return serialize_entry(entry), 201


@group.route("/kb/entries/<entry_id>", ["GET"], permission="kb.read", responses={200: S.ref("KbEntry")},
             summary="Вопрос и ответ базы знаний")
def get_entry(entry_id: str):
    return serialize_entry(_get(KbEntry, entry_id, "kb_entry"))


@group.route("/kb/entries/<entry_id>", ["PATCH"], permission="kb.edit", body=ENTRY_UPDATE,
             responses={200: S.ref("KbEntry")},
             summary="Изменить вопрос/ответ/теги или статус (draft → active после проверки)")
def update_entry(entry_id: str):
    entry = _get(KbEntry, entry_id, "kb_entry")
    before = serialize_entry(entry)
    changed_text = _apply_entry(entry, g.body)
    entry.save()
    audit.record("kb.entry.update", "kb_entry", entry.id, before=before, after=serialize_entry(entry),
                 project_id=g.project.id)
    if changed_text:
        _index_entry_now(entry)
    return serialize_entry(entry)


@group.route("/kb/entries/<entry_id>", ["DELETE"], permission="kb.edit", responses={200: S.ref("Ok")},
             summary="Удалить вопрос и ответ")
def delete_entry(entry_id: str):
    entry = _get(KbEntry, entry_id, "kb_entry")
    before = serialize_entry(entry)
    entry.delete_instance()
    audit.record("kb.entry.delete", "kb_entry", entry.id, before=before, project_id=g.project.id)
    return {"ok": True}


# ---- search --------------------------------------------------------------------------------------

@group.route("/kb/search", ["GET"], permission="kb.read", responses={200: S.ref("KbSearch")},
             query={"q": {"type": "string"}, "limit": {"type": "integer", "minimum": 1, "maximum": 20},
                    "source_id": {"type": "string", "format": "uuid"}},
             summary="Поиск по базе знаний, как его видит агент (с указанием источника)")
def search():
    q = (request.args.get("q") or "").strip()
    if not q:
        raise ValidationFailed({"q": "Введите вопрос для поиска"})
    if len(q) > 1000:
        raise ValidationFailed({"q": "Не длиннее 1000 символов"})
    try:
        limit = int(request.args.get("limit", 4))
    except ValueError:
        raise ValidationFailed({"limit": "Ожидается целое число"})
    if not 1 <= limit <= 20:
        raise ValidationFailed({"limit": "От 1 до 20"})
    source_ids = None
    if request.args.getlist("source_id"):
        try:
            source_ids = [uuid.UUID(s) for s in request.args.getlist("source_id")]
        except ValueError:
            raise ValidationFailed({"source_id": "Ожидается UUID документа"})
    snippets = retrieve(g.project.id, q, source_ids=source_ids, limit=limit)
    return {"query": q, "items": [{"text": s.text, "score": s.score, "chunk_id": str(s.chunk_id),
                                   "source_id": S.sid(s.source_id), "entry_id": S.sid(s.entry_id),
                                   "source_name": s.source_name, "citation": s.citation} for s in snippets]}


# ---- from a call ---------------------------------------------------------------------------------

def _from_transcripts(call_id: uuid.UUID, ids: list[str]) -> tuple[str | None, str | None]:
    """The caller's words as the question; the operator's (else the agent's) words as the answer."""
    wanted = {uuid.UUID(i) for i in ids}
    rows = list(Transcript.for_project(g.project.id)
                .where((Transcript.call == call_id) & (Transcript.id.in_(list(wanted))))
                .order_by(Transcript.ts_start_ms))
    missing = wanted - {r.id for r in rows}
    if missing:
        raise ValidationFailed({"transcript_ids": "Реплики не найдены в этом звонке: "
                                                  + ", ".join(sorted(str(m) for m in missing))})

    def said(speaker: Speaker) -> str | None:
        text = " ".join((r.heard_text or r.text).strip() for r in rows if r.speaker == speaker.value)
        return text.strip() or None

    return said(Speaker.CALLER), said(Speaker.OPERATOR) or said(Speaker.AGENT)


@group.route("/calls/<call_id>/add-to-kb", ["POST"], permission="kb.edit", body=ADD_TO_KB,
             responses={201: S.ref("KbEntry")},
             summary="Вопрос из звонка в базу знаний: черновик FAQ (question/answer или transcript_ids)")
def add_call_to_kb(call_id: str):
    call = project_call(call_id)
    question, answer = None, None
    if g.body.get("transcript_ids"):
        question, answer = _from_transcripts(call.id, g.body["transcript_ids"])
    question = (g.body.get("question") or question or "").strip()
    answer = (g.body.get("answer") or answer or "").strip()
    errors: dict[str, str] = {}
    if not question:
        errors["question"] = "Укажите вопрос или выберите реплику звонящего (transcript_ids)"
    if not answer:
        errors["answer"] = "Укажите ответ или выберите реплику оператора или агента с ответом (transcript_ids)"
    if errors:
        raise ValidationFailed(errors)
    entry = KbEntry.create(project=g.project.id, question=question[:1000], answer=answer[:5000],
                           status=KbEntryStatus.DRAFT.value, from_call=call.id,
                           tags_json=sorted(set(g.body.get("tags") or [])), created_by=_user_id())
    audit.record("kb.entry.from_call", "kb_entry", entry.id, after=serialize_entry(entry), project_id=g.project.id)
    _index_entry_now(entry)
    return serialize_entry(entry), 201
