"""Knowledge base through the API: upload -> RQ job (real worker, real Redis) -> search with citations;
failed files, idempotent re-index, FAQ entries, add-to-kb from a call, tenancy, audit."""
from __future__ import annotations

import io
import uuid

import pytest
from rq import SimpleWorker

from core.kb.indexing import kb_queue
from core.seed import create_org, create_project
from models.calls import Call, Transcript
from models.kb import KbChunk, KbSource
from models.saas import AuditLog
from tests.support.api import login
from tests.support.kb_docs import make_docx, make_pdf


@pytest.fixture()
def owner(api, tenant):
    t = tenant("kbapi", roles=("owner", "analyst"))
    client = api.with_(token=login(api, *t["users"]["owner"])["access_token"], project_id=t["project_id"])
    client.tenant = t  # type: ignore[attr-defined]
    return client


def run_jobs(test_settings) -> None:
    """Run every queued job in this process with a real RQ worker, until the queue is empty."""
    queue = kb_queue(test_settings)
    SimpleWorker([queue], connection=queue.connection).work(burst=True)


def upload(client, data: bytes, filename: str, content_type: str = "application/octet-stream", name=None):
    form = {"file": (io.BytesIO(data), filename, content_type)}
    if name:
        form["name"] = name
    return client.request("POST", "/api/kb/sources", data=form, content_type="multipart/form-data")


def test_upload_index_search_with_citation(owner, test_settings):
    created = upload(owner, make_pdf(), "Прайс.pdf", "application/pdf")
    assert created.status_code == 201, created.get_json()
    source = created.get_json()
    assert source["status"] == "pending" and source["name"] == "Прайс.pdf" and source["size_bytes"] > 0
    assert owner.get(f"/api/kb/search?q=сколько стоит чистка зубов").get_json()["items"] == []

    run_jobs(test_settings)
    ready = owner.get(f"/api/kb/sources/{source['id']}").get_json()
    assert ready["status"] == "ready" and ready["chunk_count"] >= 2 and ready["error"] is None

    found = owner.get("/api/kb/search?q=сколько стоит чистка зубов&limit=2").get_json()["items"]
    assert found[0]["citation"] == "Прайс.pdf, стр. 2" and "3500 рублей" in found[0]["text"]
    assert found[0]["source_id"] == source["id"] and found[0]["entry_id"] is None

    docx = upload(owner, make_docx([("Оплата", ["Принимаем карты Мир и наличные."])]), "Правила.docx",
                  name="Правила клиники")
    assert docx.status_code == 201 and docx.get_json()["name"] == "Правила клиники"
    run_jobs(test_settings)
    hit = owner.get("/api/kb/search?q=можно оплатить наличными").get_json()["items"][0]
    assert hit["citation"] == "Правила клиники, раздел «Оплата»"

    listed = owner.get("/api/kb/sources").get_json()["items"]
    assert {s["name"] for s in listed} == {"Прайс.pdf", "Правила клиники"}
    assert AuditLog.select().where(AuditLog.action == "kb.source.create").count() == 2


def test_reindex_is_idempotent_and_force_rebuilds(owner, test_settings):
    source = upload(owner, "Парковка бесплатная во дворе.".encode(), "info.txt", "text/plain").get_json()
    run_jobs(test_settings)
    first = [c.id for c in KbChunk.select().where(KbChunk.source == source["id"])]
    assert len(first) == 1

    resp = owner.post(f"/api/kb/sources/{source['id']}/reindex", json={"force": False})
    assert resp.status_code == 202
    run_jobs(test_settings)
    assert [c.id for c in KbChunk.select().where(KbChunk.source == source["id"])] == first  # skipped

    assert owner.post(f"/api/kb/sources/{source['id']}/reindex", json={}).get_json()["status"] == "pending"
    run_jobs(test_settings)
    rebuilt = [c.id for c in KbChunk.select().where(KbChunk.source == source["id"])]
    assert len(rebuilt) == 1 and rebuilt != first
    assert owner.get(f"/api/kb/sources/{source['id']}").get_json()["status"] == "ready"


def test_broken_file_fails_with_code_and_russian_text(owner, test_settings):
    source = upload(owner, b"%PDF-1.7\n%%EOF garbage", "Скан.pdf", "application/pdf").get_json()
    run_jobs(test_settings)
    failed = owner.get(f"/api/kb/sources/{source['id']}").get_json()
    assert failed["status"] == "failed" and failed["status_text"] == "Ошибка индексации"
    assert failed["error_code"] == "KB_FILE_BROKEN"
    assert failed["error"].startswith("Файл повреждён или не читается") and "загрузите" in failed["error"]
    assert KbChunk.select().where(KbChunk.source == source["id"]).count() == 0

    scan = upload(owner, b"   \n", "empty.txt", "text/plain").get_json()
    run_jobs(test_settings)
    assert owner.get(f"/api/kb/sources/{scan['id']}").get_json()["error_code"] == "KB_FILE_EMPTY"


def test_upload_validation(owner):
    bad = upload(owner, b"\xd0\xcf\x11\xe0" + b"\x00" * 50, "old.doc", "application/msword")
    assert bad.status_code == 422
    assert "не поддерживается" in bad.get_json()["error"]["details"]["fields"]["file"]
    assert upload(owner, b"", "empty.txt").status_code == 422
    missing = owner.request("POST", "/api/kb/sources", data={"name": "x"}, content_type="multipart/form-data")
    assert missing.status_code == 422 and "file" in missing.get_json()["error"]["details"]["fields"]
    big = upload(owner, b"a" * (20 * 1024 * 1024 + 1), "big.txt", "text/plain")
    assert big.status_code == 413 and big.get_json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    first = upload(owner, "Текст".encode(), "a.txt", "text/plain")
    dup = upload(owner, "Текст".encode(), "b.txt", "text/plain")
    assert dup.status_code == 409 and dup.get_json()["error"]["details"]["source_id"] == first.get_json()["id"]


def test_delete_source_removes_chunks_and_file(owner, test_settings):
    from core.storage import make_storage
    source = upload(owner, "Скидки пенсионерам 10%.".encode(), "sale.txt", "text/plain").get_json()
    run_jobs(test_settings)
    key = KbSource.get_by_id(source["id"]).storage_path
    assert make_storage(test_settings).size(key) is not None
    assert owner.delete(f"/api/kb/sources/{source['id']}").get_json() == {"ok": True}
    assert KbChunk.select().where(KbChunk.source == source["id"]).count() == 0
    assert make_storage(test_settings).size(key) is None
    assert owner.get(f"/api/kb/sources/{source['id']}").status_code == 404
    assert owner.get("/api/kb/search?q=скидки пенсионерам").get_json()["items"] == []
    run_jobs(test_settings)  # nothing queued is left failing


def test_faq_entries_crud_and_draft_not_retrieved(owner, test_settings):
    created = owner.post("/api/kb/entries", json={"question": "Есть ли парковка?", "answer": "Да, во дворе.",
                                                  "tags": ["парковка"], "status": "draft"})
    assert created.status_code == 201, created.get_json()
    entry = created.get_json()
    assert entry["status"] == "draft" and entry["tags"] == ["парковка"]
    assert owner.get("/api/kb/search?q=где припарковаться").get_json()["items"] == []

    active = owner.patch(f"/api/kb/entries/{entry['id']}", json={"status": "active"}).get_json()
    assert active["status"] == "active" and active["reviewed_at"]
    hit = owner.get("/api/kb/search?q=парковка").get_json()["items"][0]
    assert hit["entry_id"] == entry["id"] and hit["citation"] == "FAQ: «Есть ли парковка?»"

    owner.patch(f"/api/kb/entries/{entry['id']}", json={"answer": "Да, бесплатная, у входа."})
    run_jobs(test_settings)  # the job re-embeds the edited entry
    assert "бесплатная" in owner.get("/api/kb/search?q=парковка").get_json()["items"][0]["text"]

    assert owner.patch(f"/api/kb/entries/{entry['id']}", json={"status": "archived"}).status_code == 200
    assert owner.get("/api/kb/search?q=парковка").get_json()["items"] == []
    assert [e["id"] for e in owner.get("/api/kb/entries?status=archived").get_json()["items"]] == [entry["id"]]
    bad = owner.patch(f"/api/kb/entries/{entry['id']}", json={"status": "published"})
    assert bad.status_code == 422
    assert owner.delete(f"/api/kb/entries/{entry['id']}").get_json() == {"ok": True}
    assert owner.get(f"/api/kb/entries/{entry['id']}").status_code == 404
    actions = {a.action for a in AuditLog.select().where(AuditLog.entity_type == "kb_entry")}
    assert {"kb.entry.create", "kb.entry.update", "kb.entry.delete"} <= actions


def _call_with_transcript(project_id):
    call = Call.create(project=project_id, direction="inbound", from_number="+79990001122",
                       to_number="+74950000000", state="ended", trace_id=uuid.uuid4().hex)
    turns = [("agent", "Здравствуйте! Клиника «Улыбка», чем помочь?"),
             ("caller", "Скажите, у вас можно прийти с собакой?"),
             ("agent", "Минуту, переключаю на оператора."),
             ("operator", "С собаками к нам нельзя, но есть бесплатная передержка у входа.")]
    rows = [Transcript.create(project=project_id, call=call.id, speaker=s, text=t, ts_start_ms=i * 1000)
            for i, (s, t) in enumerate(turns)]
    return call, rows


def test_add_to_kb_from_a_call(owner, test_settings):
    call, rows = _call_with_transcript(owner.tenant["project_id"])
    resp = owner.post(f"/api/calls/{call.id}/add-to-kb", json={"transcript_ids": [str(rows[1].id), str(rows[3].id)]})
    assert resp.status_code == 201, resp.get_json()
    entry = resp.get_json()
    assert entry["question"] == "Скажите, у вас можно прийти с собакой?"
    assert entry["answer"] == "С собаками к нам нельзя, но есть бесплатная передержка у входа."
    assert entry["status"] == "draft" and entry["from_call_id"] == str(call.id)
    # a draft is not used by agents until reviewed
    assert owner.get("/api/kb/search?q=можно ли с собакой").get_json()["items"] == []
    owner.patch(f"/api/kb/entries/{entry['id']}", json={"status": "active"})
    run_jobs(test_settings)
    hit = owner.get("/api/kb/search?q=можно ли с собакой").get_json()["items"][0]
    assert hit["entry_id"] == entry["id"]
    assert [e["id"] for e in owner.get(f"/api/kb/entries?from_call_id={call.id}").get_json()["items"]] == [entry["id"]]

    # explicit question/answer; the agent's words answer when no operator spoke
    typed = owner.post(f"/api/calls/{call.id}/add-to-kb", json={"question": "Можно с собакой?", "answer": "Нет."})
    assert typed.status_code == 201 and typed.get_json()["answer"] == "Нет."
    agent_only = owner.post(f"/api/calls/{call.id}/add-to-kb",
                            json={"transcript_ids": [str(rows[1].id), str(rows[2].id)]}).get_json()
    assert agent_only["answer"] == "Минуту, переключаю на оператора."
    no_answer = owner.post(f"/api/calls/{call.id}/add-to-kb", json={"transcript_ids": [str(rows[1].id)]})
    assert no_answer.status_code == 422 and "answer" in no_answer.get_json()["error"]["details"]["fields"]
    other_call, other_rows = _call_with_transcript(owner.tenant["project_id"])
    foreign = owner.post(f"/api/calls/{call.id}/add-to-kb", json={"transcript_ids": [str(other_rows[1].id)]})
    assert foreign.status_code == 422
    assert AuditLog.select().where(AuditLog.action == "kb.entry.from_call").count() == 3


def test_tenant_isolation_and_permissions(owner, api, test_settings):
    source = upload(owner, "Секретный прайс: консультация 1000 рублей.".encode(), "secret.txt", "text/plain").get_json()
    entry = owner.post("/api/kb/entries", json={"question": "Секрет?", "answer": "Да."}).get_json()
    call, rows = _call_with_transcript(owner.tenant["project_id"])
    run_jobs(test_settings)

    org = create_org("Чужие", "kb-stranger")
    project = create_project(org, "Чужой проект")
    from core.seed import create_user
    create_user(org, "owner@kb-stranger.test", "Passw0rd-owner", "owner")
    stranger = api.with_(token=login(api, "owner@kb-stranger.test", "Passw0rd-owner")["access_token"],
                         project_id=str(project.id))
    assert stranger.get(f"/api/kb/sources/{source['id']}").status_code == 404
    assert stranger.delete(f"/api/kb/sources/{source['id']}").status_code == 404
    assert stranger.post(f"/api/kb/sources/{source['id']}/reindex", json={}).status_code == 404
    assert stranger.get(f"/api/kb/entries/{entry['id']}").status_code == 404
    assert stranger.patch(f"/api/kb/entries/{entry['id']}", json={"status": "archived"}).status_code == 404
    assert stranger.post(f"/api/calls/{call.id}/add-to-kb", json={"question": "a", "answer": "b"}).status_code == 404
    assert stranger.get("/api/kb/search?q=секретный прайс консультация").get_json()["items"] == []
    assert stranger.get("/api/kb/sources").get_json()["items"] == []
    # the stranger's token on our project: not found either
    assert stranger.with_(project_id=owner.tenant["project_id"]).get("/api/kb/sources").status_code == 404

    viewer = api.with_(token=login(api, *owner.tenant["users"]["analyst"])["access_token"],
                       project_id=owner.tenant["project_id"])
    assert viewer.get("/api/kb/search?q=консультация").get_json()["items"][0]["source_id"] == source["id"]
    denied = viewer.post("/api/kb/entries", json={"question": "a", "answer": "b"})
    assert denied.status_code == 403 and denied.get_json()["error"]["code"] == "PERMISSION_DENIED"
    assert upload(viewer, b"x", "x.txt", "text/plain").status_code == 403
