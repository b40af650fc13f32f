"""Agents API (Agent Studio): agents, versions (drafts, publish, rollback, diff), templates, playground.

The contract is /tmp/briefs/agents_api.md (copied into docs/agents.md). Domain logic lives in
``core.agent`` (``versions``, ``config``, ``diff``, ``playground``); views only load rows of the
caller's project (other projects' agents are 404), call it and describe the change for the audit.
"""
from __future__ import annotations

import uuid
from typing import Any

from flask import g, request

from core.agent import playground as pg
from core.agent import versions as vs
from core.agent.diff import config_diff
from core.agent.session import AgentSession
from core.agent.templates import list_templates
from core.errors import AppError, NotFound, ValidationFailed
from models.agents import Agent, AgentVersion, AgentVersionState
from models.saas import Project
from web import audit
from web.api import schemas as S
from web.api.pagination import PAGE_QUERY, paginate
from web.api.registry import ApiGroup
from web.app import get_redis, settings

group = ApiGroup("agents", "Agents")

_INT_NULL = {"type": ["integer", "null"]}
_SUMMARY_PROPS = {"version": {"type": "integer"}, "state": {"type": "string", "enum": [s.value for s in AgentVersionState]},
                  "comment": {"type": "string"}, "created_at": S.TS, "published_at": S.TS_NULL,
                  "based_on": _INT_NULL}
_TOOL_CALL = S.obj(["name", "args", "ok", "data", "error_code", "duration_ms"], {
    "name": {"type": "string"}, "args": {"type": "object"}, "ok": {"type": "boolean"}, "data": {"type": "object"},
    "error_code": {"type": ["string", "null"]}, "error_message": {"type": ["string", "null"]},
    "duration_ms": {"type": "integer"}})

S.COMPONENTS.update({
    "Agent": S.obj(["id", "name", "description", "status", "template", "published_version", "draft_version",
                    "created_at", "updated_at"], {
        "id": S.UUID, "project_id": S.UUID, "name": {"type": "string"}, "description": {"type": "string"},
        "status": {"type": "string"}, "template": {"type": ["string", "null"]}, "language": {"type": "string"},
        "published_version": _INT_NULL, "draft_version": _INT_NULL, "created_at": S.TS, "updated_at": S.TS}),
    "AgentTemplate": S.obj(["key", "title", "description"], {
        "key": {"type": "string"}, "title": {"type": "string"}, "description": {"type": "string"}}),
    "AgentVersionSummary": S.obj(list(_SUMMARY_PROPS), _SUMMARY_PROPS),
    "AgentVersion": S.obj([*_SUMMARY_PROPS, "config_json"], {
        **_SUMMARY_PROPS, "id": S.UUID, "agent_id": S.UUID, "config_json": {"type": "object"},
        "config_schema": {"type": "integer"}}),
    "AgentDiff": S.obj(["from", "to", "changes", "text"], {
        "from": {"type": "integer"}, "to": {"type": "integer"}, "text": {"type": "string"},
        "changes": {"type": "array", "items": S.obj(["path", "kind", "before", "after"], {
            "path": {"type": "string"}, "kind": {"type": "string", "enum": ["added", "removed", "changed"]},
            "before": {}, "after": {}})}}),
    "PlaygroundSession": S.obj(["session_id", "greeting", "state", "fields"], {
        "session_id": {"type": "string"}, "greeting": {"type": "string"}, "state": {"type": "string"},
        "fields": {"type": "object"}, "version": {"type": "integer"}, "sandbox": {"type": "boolean"}}),
    "PlaygroundReply": S.obj(["reply", "state", "fields", "tool_calls", "escalation", "citations", "ended"], {
        "reply": {"type": "string"}, "state": {"type": "string"}, "fields": {"type": "object"},
        "tool_calls": {"type": "array", "items": _TOOL_CALL},
        "escalation": {"anyOf": [{"type": "null"}, S.obj(["reason", "reason_text"], {
            "reason": {"type": "string"}, "reason_text": {"type": "string"},
            "operator_route_id": {"type": ["string", "null"]}})]},
        "handoff_packet": {"type": ["object", "null"]},
        "citations": {"type": "array", "items": {"type": "object"}}, "ended": {"type": "boolean"},
        "sandbox": {"type": "boolean"}}),
})

AGENT_CREATE = S.obj(["name"], {"name": S.NAME, "description": {"type": "string", "maxLength": 2000},
                                "template": {"type": ["string", "null"], "maxLength": 50}})
VERSION_CREATE = S.obj([], {"config_json": {"type": "object"}, "comment": {"type": "string", "maxLength": 2000},
                            "based_on": {"type": "integer", "minimum": 1}})
VERSION_UPDATE = S.obj(["config_json"], {"config_json": {"type": "object"},
                                         "comment": {"type": "string", "maxLength": 2000}})
PUBLISH = S.obj(["version"], {"version": {"type": "integer", "minimum": 1}})
ROLLBACK = S.obj([], {"version": {"type": "integer", "minimum": 1}})
PLAYGROUND_CREATE = S.obj(["version"], {
    "version": {"type": "integer", "minimum": 1},
    "caller_phone": {"type": ["string", "null"], "maxLength": 32},
    "variables": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean", "null"]}}})
PLAYGROUND_MESSAGE = S.obj(["text"], {"text": {"type": "string", "minLength": 1, "maxLength": 2000},
                                      "use_real_data": {"type": "boolean"}})



def _user_id() -> uuid.UUID | None:
    return g.principal.id if g.principal.kind == "user" else None


def _agent(agent_id: str) -> Agent:
    try:
        aid = uuid.UUID(agent_id)
    except ValueError:
        raise NotFound("agent", agent_id)
    agent = Agent.for_project(g.project.id).where(Agent.id == aid).first()
    if agent is None:
        raise NotFound("agent", agent_id)
    return agent


def serialize_agent(a: Agent) -> dict[str, Any]:
    published = AgentVersion.get_or_none(AgentVersion.id == a.published_version_id) if a.published_version_id else None
    draft = AgentVersion.select(AgentVersion.version).where(
        (AgentVersion.agent == a.id) & (AgentVersion.state == AgentVersionState.DRAFT.value)).order_by(
        AgentVersion.version.desc()).first()
    return {"id": str(a.id), "project_id": str(a.project_id), "name": a.name, "description": a.description,
            "status": a.status, "template": a.template, "language": a.language,
            "published_version": published.version if published else None,
            "draft_version": draft.version if draft else None,
            "created_at": a.created_at.isoformat(), "updated_at": a.updated_at.isoformat()}


def _based_on_number(v: AgentVersion) -> int | None:
    if not v.based_on_id:
        return None
    base = AgentVersion.get_or_none(AgentVersion.id == v.based_on_id)
    return base.version if base else None


def serialize_version(v: AgentVersion, full: bool = False) -> dict[str, Any]:
    data = {"version": v.version, "state": v.state, "comment": v.comment, "created_at": v.created_at.isoformat(),
            "published_at": S.iso(v.published_at), "based_on": _based_on_number(v)}
    if full:
        data.update({"id": str(v.id), "agent_id": str(v.agent_id), "config_json": v.config_json or {},
                     "config_schema": v.config_schema})
    return data


# ---- agents ---------------------------------------------------------------------------------------

@group.route("/agents", ["GET"], permission="agents.read", query=PAGE_QUERY,
             responses={200: S.page_of("Agent")}, summary="Агенты проекта")
def list_agents():
    q = Agent.for_project(g.project.id)
    return paginate(q, Agent.created_at, Agent.id, serialize_agent)


@group.route("/agents", ["POST"], permission="agents.edit", body=AGENT_CREATE,
             responses={201: S.ref("Agent")}, summary="Создать агента (черновик v1 из шаблона или по умолчанию)")
def create_agent():
    body = g.body
    agent = vs.create_agent(g.project.id, body["name"], body.get("description", ""), body.get("template"),
                            _user_id())
    data = serialize_agent(agent)
    audit.record("agent.create", "agent", agent.id, after=data, project_id=g.project.id)
    return data, 201


@group.route("/agents/<agent_id>", ["GET"], permission="agents.read", responses={200: S.ref("Agent")},
             summary="Агент")
def get_agent(agent_id: str):
    return serialize_agent(_agent(agent_id))


@group.route("/agent-templates", ["GET"], permission="agents.read", responses={200: S.list_of("AgentTemplate")},
             summary="Шаблоны агентов")
def templates():
    return {"items": list_templates()}


# ---- versions -------------------------------------------------------------------------------------

@group.route("/agents/<agent_id>/versions", ["GET"], permission="agents.read",
             responses={200: S.list_of("AgentVersionSummary")}, summary="Версии агента")
def list_versions(agent_id: str):
    agent = _agent(agent_id)
    rows = AgentVersion.select().where(AgentVersion.agent == agent.id).order_by(AgentVersion.version.desc())
    return {"items": [serialize_version(v) for v in rows]}


@group.route("/agents/<agent_id>/versions/<int:number>", ["GET"], permission="agents.read",
             responses={200: S.ref("AgentVersion")}, summary="Версия агента с конфигурацией")
def get_version(agent_id: str, number: int):
    return serialize_version(vs.get_version(_agent(agent_id), number), full=True)


@group.route("/agents/<agent_id>/versions", ["POST"], permission="agents.edit", body=VERSION_CREATE,
             responses={201: S.ref("AgentVersion")},
             summary="Новый черновик (копия указанной или последней версии, если config_json не передан)")
def create_version(agent_id: str):
    agent = _agent(agent_id)
    version = vs.new_draft(agent, g.body.get("config_json"), g.body.get("comment", ""), g.body.get("based_on"),
                           _user_id())
    audit.record("agent.version_create", "agent_version", version.id,
                 after={"agent_id": str(agent.id), "version": version.version, "comment": version.comment},
                 project_id=g.project.id)
    return serialize_version(version, full=True), 201


@group.route("/agents/<agent_id>/versions/<int:number>", ["PUT"], permission="agents.edit", body=VERSION_UPDATE,
             responses={200: S.ref("AgentVersion"), 409: None}, summary="Изменить черновик")
def update_version(agent_id: str, number: int):
    agent = _agent(agent_id)
    before = vs.get_version(agent, number).config_json
    version = vs.update_draft(agent, number, g.body["config_json"], g.body.get("comment"))
    audit.record("agent.version_update", "agent_version", version.id,
                 before={"config_json": before}, after={"config_json": version.config_json}, project_id=g.project.id)
    return serialize_version(version, full=True)


@group.route("/agents/<agent_id>/diff", ["GET"], permission="agents.read",
             query={"from": {"type": "integer", "minimum": 1}, "to": {"type": "integer", "minimum": 1}},
             responses={200: S.ref("AgentDiff")}, summary="Разница между двумя версиями")
def diff(agent_id: str):
    agent = _agent(agent_id)
    try:
        a, b = int(request.args["from"]), int(request.args["to"])
    except (KeyError, ValueError):
        raise ValidationFailed({"from": "Укажите номера версий: ?from=1&to=2"})
    va, vb = vs.get_version(agent, a), vs.get_version(agent, b)
    result = config_diff(va.config_json or {}, vb.config_json or {}, f"версия {a}", f"версия {b}")
    return {"from": a, "to": b, **result}


@group.route("/agents/<agent_id>/publish", ["POST"], permission="agents.publish", body=PUBLISH,
             responses={200: S.ref("Agent")}, summary="Опубликовать версию (новые звонки пойдут на неё)")
def publish(agent_id: str):
    agent = _agent(agent_id)
    before = serialize_agent(agent)
    agent = vs.publish(agent, g.body["version"], _user_id())
    after = serialize_agent(agent)
    audit.record("agent.publish", "agent", agent.id, before={"published_version": before["published_version"]},
                 after={"published_version": after["published_version"]}, project_id=g.project.id)
    return after


@group.route("/agents/<agent_id>/rollback", ["POST"], permission="agents.publish", body=ROLLBACK,
             responses={200: S.ref("Agent"), 409: None},
             summary="Откатиться на ранее опубликованную версию (по умолчанию — предыдущую)")
def rollback(agent_id: str):
    agent = _agent(agent_id)
    before = serialize_agent(agent)
    agent = vs.rollback(agent, g.body.get("version"), _user_id())
    after = serialize_agent(agent)
    audit.record("agent.rollback", "agent", agent.id, before={"published_version": before["published_version"]},
                 after={"published_version": after["published_version"]}, project_id=g.project.id)
    return after


# ---- playground -----------------------------------------------------------------------------------

@group.route("/agents/<agent_id>/playground", ["POST"], permission="agents.edit", body=PLAYGROUND_CREATE,
             responses={201: S.ref("PlaygroundSession")},
             summary="Начать текстовый диалог с версией агента (песочница)")
def playground_start(agent_id: str):
    agent = _agent(agent_id)
    version = vs.get_version(agent, g.body["version"])
    project = Project.get_by_id(g.project.id)
    caller_phone = g.body.get("caller_phone")
    if caller_phone:
        from core.telephony.e164 import normalize_e164
        try:
            caller_phone = normalize_e164(caller_phone)
        except ValueError as exc:
            raise ValidationFailed({"caller_phone": str(exc)})
    ps = pg.PlaygroundSession(id=pg.new_id(), project_id=str(g.project.id), agent_id=str(agent.id),
                              version_id=str(version.id), version=version.version,
                              user_id=str(_user_id()) if _user_id() else None, caller_phone=caller_phone,
                              timezone=project.timezone, variables=dict(g.body.get("variables") or {}), state={})
    session = AgentSession(version.config_json or {}, pg.context(ps, agent.id, g.trace_id, False), None)
    greeting = session.greeting()
    ps.state = session.to_state()
    pg.save(get_redis(), ps)
    audit.record("agent.playground_start", "agent", agent.id, after={"version": version.version, "session_id": ps.id},
                 project_id=g.project.id)
    return {"session_id": ps.id, "greeting": greeting, "state": session.state, "fields": session.fields,
            "version": version.version, "sandbox": True}, 201


@group.route("/agents/<agent_id>/playground/<session_id>/messages", ["POST"], permission="agents.edit",
             body=PLAYGROUND_MESSAGE, responses={200: S.ref("PlaygroundReply")},
             summary="Реплика в текстовом диалоге: ответ агента, состояние, поля и вызовы инструментов")
def playground_message(agent_id: str, session_id: str):
    agent = _agent(agent_id)
    r = get_redis()
    ps = pg.load(r, session_id, g.project.id, agent.id)
    if ps is None:
        raise NotFound("playground_session", session_id)
    use_real = bool(g.body.get("use_real_data"))
    if use_real and not g.principal.can("crm.edit", g.project.id):
        raise AppError("PERMISSION_DENIED", {"permission": "crm.edit",
                                             "reason": "Для проверки на реальных данных нужны права на CRM"})
    version = AgentVersion.get_or_none((AgentVersion.id == uuid.UUID(ps.version_id)) & (AgentVersion.agent == agent.id))
    if version is None:
        raise NotFound("agent_version", ps.version)
    config = version.config_json or {}
    session = AgentSession.from_state(config, pg.context(ps, agent.id, g.trace_id, use_real),
                                      pg.llm_for(config, settings()), ps.state)
    reply = pg.run_turn(session, g.body["text"])
    ps.state = session.to_state()
    pg.save(r, ps)
    audit.record("agent.playground_message", "agent", agent.id,
                 after={"session_id": ps.id, "state": session.state, "use_real_data": use_real,
                        "tool_calls": [t.name for t in session.turn_tool_calls]}, project_id=g.project.id)
    esc = session.escalation
    return {"reply": reply, "state": session.state, "fields": session.fields,
            "tool_calls": [{"name": t.name, "args": t.args, "ok": t.ok, "data": t.data, "error_code": t.error_code,
                            "error_message": t.error_message, "duration_ms": t.duration_ms}
                           for t in session.turn_tool_calls],
            "escalation": {"reason": esc.reason, "reason_text": esc.reason_text,
                           "operator_route_id": esc.operator_route_id} if esc else None,
            "handoff_packet": session.handoff_packet() if esc else None,
            "citations": session.citations, "ended": session.ended, "sandbox": not use_real}
