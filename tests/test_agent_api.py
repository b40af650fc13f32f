"""Agents API: create from templates, drafts, validation messages, publish/rollback with RBAC and
audit, diff, the version a call keeps, and the text playground (sandboxed tools)."""
from __future__ import annotations

import uuid

import pytest

from core.agent.session import AgentSession, SessionContext
from core.calls.store import inbound_call_from_channel
from models.agents import AgentPolicy, AgentSettings, AgentTool, AgentVersion
from models.calls import Call, ToolInvocation
from models.crm import CrmContact, CrmDeal, CrmTask
from models.saas import AuditLog
from tests.support.api import login


@pytest.fixture()
def t(tenant):
    return tenant("ag", roles=("owner", "supervisor", "analyst"))


def client(api, t, role: str):
    email, password = t["users"][role]
    return api.with_(token=login(api, email, password)["access_token"], project_id=t["project_id"])


def test_create_from_template_versions_and_materialised_rows(api, t):
    owner = client(api, t, "owner")
    assert {x["key"] for x in owner.get("/api/agent-templates").get_json()["items"]} >= {"appointment_clinic"}
    resp = owner.post("/api/agents", json={"name": "Запись", "template": "appointment_clinic"})
    assert resp.status_code == 201, resp.get_json()
    agent = resp.get_json()
    assert agent["draft_version"] == 1 and agent["published_version"] is None and agent["status"] == "draft"
    v1 = AgentVersion.get(AgentVersion.agent == agent["id"])
    settings = AgentSettings.get(AgentSettings.agent_version == v1.id)
    assert settings.formality == "formal" and settings.max_call_duration_s == 600
    assert {p.kind for p in AgentPolicy.select().where(AgentPolicy.agent_version == v1.id)} == {
        "escalation", "fallback", "guardrail", "data_collection", "knowledge"}
    assert sorted(x.tool_name for x in AgentTool.select().where(AgentTool.agent_version == v1.id)) == [
        "calendar_book", "calendar_free_slots", "crm_add_note", "crm_find_or_create_contact"]
    assert v1.config_json["voice"]["barge_in_min_ms"] == 300  # the voice loop's section, derived
    assert owner.get("/api/agents").get_json()["items"][0]["id"] == agent["id"]
    unknown = owner.post("/api/agents", json={"name": "x", "template": "nope"})
    assert unknown.status_code == 422 and "template" in unknown.get_json()["error"]["details"]["fields"]


def test_invalid_config_gets_russian_messages_per_field(api, t):
    owner = client(api, t, "owner")
    agent = owner.post("/api/agents", json={"name": "A"}).get_json()
    bad = {"greeting": "Привет", "fields": [{"key": "Phone", "type": "phone", "label": "Телефон", "prompt": "?"},
                                            {"key": "x", "type": "choice", "label": "X", "prompt": "?"}],
           "tools": ["no_such_tool"], "adaptive": {"formality": "casual"}}
    resp = owner.request("PUT", f"/api/agents/{agent['id']}/versions/1", json={"config_json": bad})
    assert resp.status_code == 422
    fields = resp.get_json()["error"]["details"]["fields"]
    assert fields["config_json.fields.0.key"].startswith("Латинские строчные буквы")
    assert fields["config_json.adaptive.formality"] == "Допустимые значения: formal, informal"
    bad = {"fields": [{"key": "x", "type": "choice", "label": "X", "prompt": "?"}], "tools": ["no_such_tool"],
           "actions": [{"tool": "crm_create_task", "args": {"kind": "call"}}]}
    fields = owner.request("PUT", f"/api/agents/{agent['id']}/versions/1",
                           json={"config_json": bad}).get_json()["error"]["details"]["fields"]
    assert fields["config_json.fields.0.choices"] == "Для поля с выбором перечислите варианты ответа"
    assert fields["config_json.actions.0.tool"].startswith("Инструмент «crm_create_task» не включён")
    bad = {"tools": ["no_such_tool", "crm_create_task"],
           "actions": [{"tool": "crm_create_task", "args": {"kind": "call", "title": "{name}", "foo": 1}}],
           "escalation": {"operator_route_id": str(uuid.uuid4())}}
    fields = owner.request("PUT", f"/api/agents/{agent['id']}/versions/1",
                           json={"config_json": bad}).get_json()["error"]["details"]["fields"]
    assert fields["config_json.tools.0"].startswith("Инструмент «no_such_tool» не найден")
    assert fields["config_json.actions.0.args.kind"].startswith("Допустимые значения: todo")
    assert fields["config_json.actions.0.args.foo"].startswith("У инструмента «crm_create_task» нет параметра")
    assert fields["config_json.escalation.operator_route_id"] == "Маршрут оператора не найден в этом проекте"


def test_publish_rollback_rbac_audit_and_diff(api, t):
    owner, supervisor, analyst = (client(api, t, r) for r in ("owner", "supervisor", "analyst"))
    agent = owner.post("/api/agents", json={"name": "A"}).get_json()
    aid = agent["id"]
    # the supervisor edits drafts but cannot publish; the analyst only reads
    v2 = supervisor.post(f"/api/agents/{aid}/versions", json={"comment": "новое приветствие", "config_json": {
        "greeting": "Добрый день!", "persona": "Вежливый помощник."}})
    assert v2.status_code == 201 and v2.get_json()["version"] == 2
    assert supervisor.post(f"/api/agents/{aid}/publish", json={"version": 2}).status_code == 403
    assert analyst.post(f"/api/agents/{aid}/versions", json={}).status_code == 403
    assert owner.post(f"/api/agents/{aid}/publish", json={"version": 1}).get_json()["published_version"] == 1
    published = owner.post(f"/api/agents/{aid}/publish", json={"version": 2}).get_json()
    assert published["published_version"] == 2 and published["status"] == "active"
    states = {v["version"]: v["state"] for v in owner.get(f"/api/agents/{aid}/versions").get_json()["items"]}
    assert states == {1: "archived", 2: "published"}
    # published versions are immutable
    edit = owner.request("PUT", f"/api/agents/{aid}/versions/2", json={"config_json": {"greeting": "x"}})
    assert edit.status_code == 409
    diff = owner.get(f"/api/agents/{aid}/diff?from=1&to=2").get_json()
    assert {"path": "greeting", "kind": "changed", "before": "Здравствуйте! Чем могу помочь?",
            "after": "Добрый день!"} in diff["changes"]
    assert '-  "greeting": "Здравствуйте! Чем могу помочь?"' in diff["text"] and '+  "greeting": "Добрый день!"' in diff["text"]
    assert supervisor.post(f"/api/agents/{aid}/rollback", json={}).status_code == 403
    rolled = owner.post(f"/api/agents/{aid}/rollback", json={})
    assert rolled.status_code == 200 and rolled.get_json()["published_version"] == 1
    assert owner.post(f"/api/agents/{aid}/rollback", json={"version": 1}).status_code == 409
    actions = [a.action for a in AuditLog.select().where(AuditLog.entity_id == aid).order_by(AuditLog.created_at)]
    assert actions.count("agent.publish") == 2 and "agent.rollback" in actions
    row = AuditLog.get(AuditLog.action == "agent.rollback")
    assert row.changes_json and row.status_code == 200
    denied = AuditLog.select().where((AuditLog.status_code == 403) & (AuditLog.project == t["project_id"])).count()
    assert denied >= 2


def test_other_projects_agents_are_not_found(api, t, tenant):
    owner = client(api, t, "owner")
    agent = owner.post("/api/agents", json={"name": "A"}).get_json()
    other = tenant("other")
    stranger = api.with_(token=login(api, *other["users"]["owner"])["access_token"], project_id=other["project_id"])
    assert stranger.get(f"/api/agents/{agent['id']}").status_code == 404
    assert stranger.post(f"/api/agents/{agent['id']}/publish", json={"version": 1}).status_code == 404
    assert stranger.post(f"/api/agents/{agent['id']}/playground", json={"version": 1}).status_code == 404


def test_a_call_in_progress_keeps_the_version_it_started_with(api, t):
    owner = client(api, t, "owner")
    aid = owner.post("/api/agents", json={"name": "A"}).get_json()["id"]
    owner.request("PUT", f"/api/agents/{aid}/versions/1", json={"config_json": {"greeting": "Версия один."}})
    owner.post(f"/api/agents/{aid}/publish", json={"version": 1})

    def channel(n: int) -> dict:
        return {"Unique-ID": str(uuid.uuid4()), "variable_voiceai_project_id": t["project_id"],
                "variable_voiceai_agent_id": aid, "Caller-Caller-ID-Number": f"+7916000000{n}",
                "Caller-Destination-Number": "+74950000000"}

    first = inbound_call_from_channel(channel(1), "node")
    owner.post(f"/api/agents/{aid}/versions", json={"config_json": {"greeting": "Версия два."}})
    owner.post(f"/api/agents/{aid}/publish", json={"version": 2})
    second = inbound_call_from_channel(channel(2), "node")

    def greeting_of(call: Call) -> str:
        version = AgentVersion.get_by_id(Call.get_by_id(call.id).agent_version_id)
        ctx = SessionContext(project_id=uuid.UUID(t["project_id"]), agent_id=uuid.UUID(aid),
                             agent_version_id=version.id, trace_id=call.trace_id, call_id=call.id)
        return AgentSession(version.config_json, ctx, None).greeting()

    assert greeting_of(first) == "Версия один." and greeting_of(second) == "Версия два."
    owner.post(f"/api/agents/{aid}/rollback", json={})
    assert greeting_of(first) == "Версия один." and greeting_of(second) == "Версия два."  # frozen per call
    assert greeting_of(inbound_call_from_channel(channel(3), "node")) == "Версия один."


def test_playground_chats_with_a_draft_in_a_sandbox(api, t):
    owner = client(api, t, "owner")
    aid = owner.post("/api/agents", json={"name": "Заявки", "template": "lead_qualification"}).get_json()["id"]
    start = owner.post(f"/api/agents/{aid}/playground", json={"version": 1, "caller_phone": "8 916 123-45-67"})
    assert start.status_code == 201, start.get_json()
    sid = start.get_json()["session_id"]
    assert start.get_json()["greeting"].endswith("Как к вам обращаться?") and start.get_json()["state"] == "collect"
    path = f"/api/agents/{aid}/playground/{sid}/messages"
    for text in ("Олег", "ООО Ромашка", "Нужна CRM для отдела продаж", "до ста тысяч"):
        reply = owner.post(path, json={"text": text}).get_json()
    assert reply["state"] == "collect" and reply["fields"]["budget"] == "small"
    reply = owner.post(path, json={"text": "этот номер"}).get_json()
    assert reply["reply"] == "Телефон: +7 916 123-45-67. Верно?" and reply["state"] == "confirm"
    reply = owner.post(path, json={"text": "да"}).get_json()
    assert reply["ended"] is True and reply["state"] == "close" and reply["sandbox"] is True
    # the turn's sandboxed writes see each other (the task is attached to the deal made just before),
    # then the whole turn is rolled back; the invocation rows stay
    assert [(c["name"], c["ok"]) for c in reply["tool_calls"]] == [
        ("crm_find_or_create_contact", True), ("crm_create_deal", True), ("crm_create_task", True)]
    assert reply["tool_calls"][1]["data"]["deal"]["title"] == "Заявка: ООО Ромашка"
    assert CrmContact.select().count() == 0 and CrmDeal.select().count() == 0 and CrmTask.select().count() == 0
    rows = list(ToolInvocation.select().order_by(ToolInvocation.created_at))
    assert [(r.tool_name, r.status, r.request_json["sandbox"]) for r in rows] == [
        ("crm_find_or_create_contact", "succeeded", True), ("crm_create_deal", "succeeded", True),
        ("crm_create_task", "succeeded", True)]
    assert owner.post(f"/api/agents/{aid}/playground/nope/messages", json={"text": "x"}).status_code == 404


def test_playground_real_data_needs_crm_rights_and_shows_escalation(api, t):
    owner, analyst = client(api, t, "owner"), client(api, t, "analyst")
    aid = owner.post("/api/agents", json={"name": "Заявки", "template": "lead_qualification"}).get_json()["id"]
    sid = owner.post(f"/api/agents/{aid}/playground", json={"version": 1}).get_json()["session_id"]
    path = f"/api/agents/{aid}/playground/{sid}/messages"
    assert analyst.post(path, json={"text": "Олег"}).status_code == 403
    reply = owner.post(path, json={"text": "Позовите менеджера", "use_real_data": True}).get_json()
    assert reply["escalation"]["reason"] == "caller_request" and reply["state"] == "escalate"
    assert reply["handoff_packet"]["reason"] == "caller_request"
