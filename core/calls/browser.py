"""Calls placed from the cabinet's "Поговорить с агентом" page: no phone line, same call record.

A browser conversation is stored as a test call (``is_test``, channel ``browser`` in metadata) so
its transcript, timings and issues show up in the Inbox like any phone call and the realtime
monitor sees it start and end; it never touches a trunk or the billing of telephony minutes.
"""
from __future__ import annotations

import uuid
from typing import Any

import redis

from core.calls.store import CallRecorder
from core.telephony.causes import CallState, human_status
from models.agents import Agent, AgentVersion
from models.base import database, utcnow
from models.calls import Call, CallOutcome
from models.calls import CallState as StoredState

TOKEN_TYPE = "voice_talk"


def start_browser_call(r: redis.Redis, claims: dict[str, Any], node: str) -> tuple[Call, CallRecorder]:
    """Create the call row for a validated talk token and announce it (call.started)."""
    project_id = uuid.UUID(claims["project_id"])
    agent = Agent.get((Agent.id == uuid.UUID(claims["agent_id"])) & (Agent.project == project_id))
    version = AgentVersion.get((AgentVersion.id == uuid.UUID(claims["agent_version_id"]))
                               & (AgentVersion.agent == agent.id))
    now = utcnow()
    trace_id = claims.get("trace_id") or uuid.uuid4().hex
    with database.atomic():
        call = Call.create(project=project_id, direction="inbound", from_number="browser",
                           to_number=agent.name[:64], state=StoredState.IN_PROGRESS.value,
                           human_status=human_status(CallState.ANSWERED), started_at=now, answered_at=now,
                           agent=agent.id, agent_version=version.id, is_test=True, fs_node=node,
                           trace_id=str(trace_id)[:64], language=agent.language,
                           initiated_by=uuid.UUID(claims["user_id"]) if claims.get("user_id") else None,
                           metadata_json={"channel": "browser", "agent_version": version.version})
        recorder = CallRecorder(call, r)
        recorder.add_event("started", now, "Разговор в браузере", {"channel": "browser",
                                                                    "agent_version": version.version})
    recorder.publish("call.started", now, {"human_status": "Разговор в браузере", "channel": "browser"})
    return call, recorder


def finish_browser_call(call: Call, recorder: CallRecorder, ended_by: str) -> None:
    """Close the row the way a phone hang-up would (outcome, duration, call.ended)."""
    now = utcnow()
    duration = max(0, int((now - call.started_at).total_seconds()))
    fields = {"state": StoredState.ENDED.value, "ended_at": now, "duration_s": duration, "billsec": 0,
              "outcome": CallOutcome.COMPLETED.value, "ended_by": ended_by, "hangup_cause": "NORMAL_CLEARING",
              "hangup_cause_text": "Разговор завершён", "human_status": human_status(CallState.ENDED)}
    from core.billing.costs import price_call
    with database.connection_context():
        recorder.persist(fields)
        payload = {"outcome": fields["outcome"], "duration_s": duration, "human_status": fields["human_status"],
                   "channel": "browser"}
        recorder.add_event("ended", now, "Разговор завершён", payload)
        price_call(call.id)  # the engines it used; no trunk minutes (billsec is 0 on a browser line)
    recorder.publish("call.ended", now, payload)
