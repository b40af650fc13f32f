"""Browser voice sessions: talk to an agent (``POST /agents/{id}/talk``) and listen in on a running
call (``POST /calls/{id}/listen``).

The audio itself flows through esl_app's audio server (``/browser``, ``/listen``); the web process
only authorises it: RBAC, the agent, version or call belongs to the project, and a short-lived
single-use token names exactly what may be talked to or listened to.
"""
from __future__ import annotations

import datetime as dt
import uuid
from urllib.parse import urlsplit

from flask import g, request

from core.calls.browser import TOKEN_TYPE
from core.errors import AppError, NotFound
from core.security.tokens import issue_scoped_token
from models.agents import Agent, AgentVersion
from models.calls import Call
from web import audit
from web.api import schemas as S
from web.api.registry import ApiGroup
from web.app import settings

group = ApiGroup("talk", "Agents")
TOKEN_TTL_S = 60

S.COMPONENTS["TalkSession"] = S.obj(["token", "ws_url", "expires_at", "agent_id", "version"], {
    "token": {"type": "string"}, "ws_url": {"type": "string"}, "expires_at": S.TS,
    "agent_id": S.UUID, "version": {"type": "integer"}, "sample_rate": {"type": "integer"}})

TALK_BODY = S.obj([], {"version": {"type": "integer", "minimum": 1}})


def audio_ws_url(path: str = "/browser") -> str:
    """Where the browser opens the voice socket: configured public URL, else the cabinet host + audio port."""
    base = settings().audio_public_url.rstrip("/")
    if not base:
        host = urlsplit(request.host_url).hostname or "127.0.0.1"
        scheme = "wss" if request.scheme == "https" else "ws"
        base = f"{scheme}://{host}:{settings().audio_ws_port}"
    return base + path


@group.route("/agents/<agent_id>/talk", ["POST"], permission="agents.edit", body=TALK_BODY,
             responses={201: S.ref("TalkSession"), 404: None, 422: None},
             summary="Поговорить с агентом из браузера (одноразовый токен голосовой сессии)")
def talk(agent_id: str):
    try:
        aid = uuid.UUID(agent_id)
    except ValueError:
        raise NotFound("agent", agent_id)
    agent = Agent.get_or_none((Agent.id == aid) & (Agent.project == g.project.id))
    if agent is None:
        raise NotFound("agent", agent_id)
    number = g.body.get("version")
    q = AgentVersion.select().where(AgentVersion.agent == agent.id)
    if number is not None:
        version = q.where(AgentVersion.version == number).first()
    elif agent.published_version_id:
        version = AgentVersion.get_by_id(agent.published_version_id)
    else:
        version = q.order_by(AgentVersion.version.desc()).first()
    if version is None:
        raise NotFound("agent_version", str(number) if number is not None else "any")
    claims = {"project_id": str(g.project.id), "agent_id": str(agent.id), "agent_version_id": str(version.id),
              "user_id": str(g.principal.id) if g.principal.kind == "user" else None, "trace_id": g.trace_id}
    token, exp = issue_scoped_token(settings().secret_key, TOKEN_TYPE, claims, TOKEN_TTL_S)
    expires_at = dt.datetime.fromtimestamp(exp, dt.timezone.utc).isoformat()
    audit.record("agent.talk", "agent", agent.id, after={"version": version.version}, project_id=g.project.id)
    return {"token": token, "ws_url": audio_ws_url(), "expires_at": expires_at, "agent_id": str(agent.id),
            "version": version.version, "sample_rate": 16000}, 201


LISTEN_TOKEN_TYPE = "voice_listen"  # esl_app.listen.TOKEN_TYPE
S.COMPONENTS["ListenSession"] = S.obj(["token", "ws_url", "expires_at", "call_id"], {
    "token": {"type": "string"}, "ws_url": {"type": "string"}, "expires_at": S.TS, "call_id": S.UUID})


@group.route("/calls/<call_id>/listen", ["POST"], permission="calls.listen",
             responses={201: S.ref("ListenSession"), 404: None, 409: None},
             summary="Слушать идущий звонок в браузере (одноразовый токен)")
def listen(call_id: str):
    try:
        cid = uuid.UUID(call_id)
    except ValueError:
        raise NotFound("call", call_id)
    call = Call.get_or_none((Call.id == cid) & (Call.project == g.project.id))
    if call is None:
        raise NotFound("call", call_id)
    if call.ended_at is not None or call.state == "ended":
        raise AppError("CONFLICT", {"reason": "Звонок уже завершён: слушайте запись в карточке звонка"})
    claims = {"project_id": str(g.project.id), "call_id": str(call.id),
              "user_id": str(g.principal.id) if g.principal.kind == "user" else None}
    token, exp = issue_scoped_token(settings().secret_key, LISTEN_TOKEN_TYPE, claims, TOKEN_TTL_S)
    audit.record("call.listen", "call", call.id, after={"state": call.state}, project_id=g.project.id)
    return {"token": token, "ws_url": audio_ws_url("/listen"), "call_id": str(call.id),
            "expires_at": dt.datetime.fromtimestamp(exp, dt.timezone.utc).isoformat()}, 201
