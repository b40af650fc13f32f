"""Persistence of call state: the calls row, its event timeline and the realtime events.

Used by esl_app's call runner to execute the actions of ``core.calls.lifecycle``; every write is
scoped to the call's project and stamped with the call's trace id.
"""
from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any

import peewee as pw
import redis

from core.events.bus import publish
from core.events.schema import make_event
from models.agents import Agent
from models.base import utcnow
from models.calls import Call, CallEvent
from models.saas import Project
from models.telephony import PhoneNumber

log = logging.getLogger("voiceai.calls")


def _uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


def inbound_call_from_channel(headers: dict[str, str], node: str) -> Call | None:
    """Create (or find) the calls row of an inbound call routed by our dialplan.

    The project, number and agent come from channel variables set by the generated dialplan; they
    are cross-checked against the database so a hand-edited dialplan cannot attach a call to
    another tenant's number.
    """
    fs_uuid = headers.get("Unique-ID", "")
    existing = Call.get_or_none(Call.fs_uuid == fs_uuid)
    if existing is not None:
        return existing
    project_id = _uuid(headers.get("variable_voiceai_project_id"))
    if project_id is None or not Project.select().where(Project.id == project_id).exists():
        log.warning("channel without a known VoiceAI project", extra={"fs_uuid": fs_uuid})
        return None
    number = None
    number_id = _uuid(headers.get("variable_voiceai_number_id"))
    if number_id is not None:
        number = PhoneNumber.get_or_none((PhoneNumber.id == number_id) & (PhoneNumber.project == project_id))
        if number is None:
            log.error("dialplan names a number of another project; call not attached",
                      extra={"fs_uuid": fs_uuid, "number_id": str(number_id)})
            return None
    agent_id = _uuid(headers.get("variable_voiceai_agent_id")) or (number.agent_id if number else None)
    caller = headers.get("Caller-Caller-ID-Number", "") or ""
    decision = route_decision(project_id, number, caller, agent_id)
    if decision.action == "agent" and decision.agent_id:
        agent_id = _uuid(decision.agent_id)
    agent = Agent.get_or_none((Agent.id == agent_id) & (Agent.project == project_id)) if agent_id else None
    created = headers.get("Caller-Channel-Created-Time")
    started = dt.datetime.fromtimestamp(int(created) / 1e6, dt.timezone.utc) if created and created != "0" else utcnow()
    trace_id = headers.get("variable_voiceai_trace_id") or fs_uuid.replace("-", "")
    try:
        return Call.create(
            project=project_id, direction="inbound",
            from_number=headers.get("Caller-Caller-ID-Number", "") or "",
            to_number=headers.get("Caller-Destination-Number", "") or "",
            state="ringing", human_status="Входящий звонок", started_at=started,
            agent=agent.id if agent else None,
            agent_version=agent.published_version_id if agent else None,  # frozen for the whole call
            phone_number=number.id if number else None,
            sip_connection=number.sip_connection_id if number else None,
            fs_uuid=fs_uuid, fs_node=node, trace_id=trace_id[:64],
            sip_call_id=headers.get("variable_sip_call_id"),
            variables_json={k[len("variable_voiceai_var_"):]: v for k, v in headers.items()
                            if k.startswith("variable_voiceai_var_")},
            metadata_json={"routing": {"action": decision.action, "rule_id": decision.rule_id,
                                       "operator_route_id": decision.operator_route_id,
                                       "message_text": decision.message_text}})
    except pw.IntegrityError:  # raced with another event of the same channel
        return Call.get_or_none(Call.fs_uuid == fs_uuid)


def route_decision(project_id: uuid.UUID, number: PhoneNumber | None, caller: str,
                   agent_id: uuid.UUID | None):  # type: ignore[no-untyped-def]
    """Apply the number's (and project-wide) routing rules to this caller (core.telephony.routing)."""
    from core.telephony.routing import Rule, decide
    from models.saas import Project
    from models.telephony import RoutingRule
    q = RoutingRule.select().where((RoutingRule.project == project_id) & (RoutingRule.enabled == True))  # noqa: E712
    q = q.where(RoutingRule.phone_number.is_null() | (RoutingRule.phone_number == (number.id if number else None)))
    rules = [Rule(str(r.id), r.priority, r.match_json or {}, r.action, str(r.agent_id) if r.agent_id else None,
                  str(r.operator_route_id) if r.operator_route_id else None, r.message_text, r.enabled) for r in q]
    project = Project.get_by_id(project_id)
    tz = (number.timezone if number and number.timezone else None) or project.timezone
    return decide(rules, caller, utcnow(), str(agent_id) if agent_id else None, default_timezone=tz)


class CallRecorder:
    """Applies lifecycle actions of one call to PostgreSQL and the realtime bus."""

    def __init__(self, call: Call, r: redis.Redis) -> None:
        self.call = call
        self.r = r
        self._seq = CallEvent.select().where(CallEvent.call == call.id).count()

    def persist(self, fields: dict[str, Any]) -> None:
        if not fields:
            return
        Call.update(**fields, updated_at=utcnow()).where(Call.id == self.call.id).execute()
        for key, value in fields.items():
            setattr(self.call, key, value)

    def add_event(self, etype: str, ts: dt.datetime, human_status: str, payload: dict[str, Any]) -> None:
        self._seq += 1
        CallEvent.create(project=self.call.project_id, call=self.call.id, seq=self._seq, ts=ts, type=etype,
                         human_status=human_status, payload_json=_jsonable(payload), trace_id=self.call.trace_id)

    def publish(self, etype: str, ts: dt.datetime | None, payload: dict[str, Any]) -> None:
        call = self.call
        base = {"direction": call.direction, "from_number": call.from_number, "to_number": call.to_number,
                "agent_id": str(call.agent_id) if call.agent_id else None, "trace_id": call.trace_id,
                "cost_so_far": float(call.cost_total or 0)}
        try:
            publish(self.r, make_event(etype, call.project_id, "call", call.id, {**base, **_jsonable(payload)}, ts))
        except redis.RedisError:
            log.exception("realtime publish failed", extra={"call_id": str(call.id)})


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value
