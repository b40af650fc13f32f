"""Placing an outbound call: the calls row first, then the originate command for esl_app.

The row exists before anything rings (state ``queued``), carries the FreeSWITCH uuid esl_app will
use (``origination_uuid``), and the command id is derived from the call id, so submitting twice
never dials twice. Used by the test call, the single-call API and the campaign dialer.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Callable

import redis

from core.telephony.command_queue import CommandQueue, CommandType, TelephonyCommand
from core.tracing import current_trace_id, new_trace_id
from models.base import utcnow
from models.calls import Call
from models.telephony import SipConnection


@dataclass
class OutboundRequest:
    project_id: uuid.UUID
    to_e164: str
    sip_connection: SipConnection
    caller_id: str | None = None
    agent_id: uuid.UUID | None = None
    agent_version_id: uuid.UUID | None = None
    variables: dict[str, Any] | None = None
    timeout_s: int = 30
    app: str = "&park()"
    is_test: bool = False
    recording: bool = False
    initiated_by: uuid.UUID | None = None
    campaign_id: uuid.UUID | None = None
    campaign_contact_id: uuid.UUID | None = None
    variables_on_channel: bool = True  # False: only on the call row (free text such as Cyrillic names)


def command_id_for_call(call_id: uuid.UUID) -> str:
    return f"originate-{call_id}"


def prepare_call(req: OutboundRequest, node: str = "default") -> tuple[Call, TelephonyCommand]:
    """Create the call row and build (not queue) its originate command.

    The campaign dialer creates rows inside its claim transaction and queues the commands only
    after commit; ``place_call`` does both at once.
    """
    trace_id = current_trace_id() or new_trace_id()
    fs_uuid = str(uuid.uuid4())
    caller_id = req.caller_id or req.sip_connection.caller_id or ""
    call = Call.create(project=req.project_id, direction="outbound", from_number=caller_id,
                       to_number=req.to_e164, state="queued", human_status="В очереди на набор",
                       started_at=utcnow(), agent=req.agent_id, agent_version=req.agent_version_id,
                       sip_connection=req.sip_connection.id, is_test=req.is_test, fs_uuid=fs_uuid,
                       fs_node=node, trace_id=trace_id, initiated_by=req.initiated_by,
                       campaign=req.campaign_id, campaign_contact=req.campaign_contact_id,
                       variables_json=dict(req.variables or {}))
    cmd = TelephonyCommand(
        id=command_id_for_call(call.id), type=CommandType.ORIGINATE.value, project_id=str(req.project_id),
        trace_id=trace_id,
        args={"call_id": str(call.id), "fs_uuid": fs_uuid, "to": req.to_e164.lstrip("+"),
              "gateway": req.sip_connection.gateway_name, "caller_id": caller_id.lstrip("+") or None,
              "timeout_s": req.timeout_s,
              "variables": dict(req.variables or {}) if req.variables_on_channel else {}, "app": req.app,
              "recording": req.recording, "agent": req.agent_id is not None})
    return call, cmd


def place_call(r: redis.Redis, req: OutboundRequest, node: str = "default",
               before_submit: Callable[[], None] | None = None) -> tuple[Call, TelephonyCommand]:
    """Create the call row and queue its originate; returns both (the caller may wait on the command).

    ``before_submit`` runs between the two: a caller inside a transaction commits there, because
    esl_app must see the row before it dials.
    """
    call, cmd = prepare_call(req, node)
    if before_submit is not None:
        before_submit()
    CommandQueue(r, node).submit(cmd)
    return call, cmd
