"""Calls API: one call's card, its recording (authorised download), and live call control."""
from __future__ import annotations

import uuid

from flask import Response, g, stream_with_context

from core.errors import AppError, NotFound
from core.storage import make_storage
from core.telephony.command_queue import CommandQueue, CommandType, TelephonyCommand
from models.calls import Call, CallEvent, HandoffPacket
from models.telephony import OperatorRoute
from web import audit
from web.api import schemas as S
from web.api.registry import ApiGroup
from web.app import get_redis, settings

group = ApiGroup("calls", "Calls")

CALL = S.obj(["id", "project_id", "direction", "from_number", "to_number", "state", "started_at"], {
    "id": S.UUID, "project_id": S.UUID, "direction": {"type": "string", "enum": ["inbound", "outbound"]},
    "from_number": {"type": "string"}, "to_number": {"type": "string"}, "state": {"type": "string"},
    "human_status": {"type": "string"}, "started_at": S.TS, "answered_at": S.TS_NULL, "ended_at": S.TS_NULL,
    "duration_s": {"type": "integer"}, "billsec": {"type": "integer"}, "outcome": {"type": ["string", "null"]},
    "hangup_cause": {"type": ["string", "null"]}, "hangup_cause_text": {"type": ["string", "null"]},
    "agent_id": {"type": ["string", "null"]}, "agent_version_id": {"type": ["string", "null"]},
    "phone_number_id": {"type": ["string", "null"]}, "sip_connection_id": {"type": ["string", "null"]},
    "is_test": {"type": "boolean"}, "trace_id": {"type": "string"}, "has_recording": {"type": "boolean"},
    "cost_total": {"type": "string"}, "currency": {"type": "string"}, "summary": {"type": ["string", "null"]},
    "events": {"type": "array", "items": S.obj(["type", "ts"], {
        "type": {"type": "string"}, "ts": S.TS, "human_status": {"type": "string"}, "payload": {"type": "object"}})},
})
S.COMPONENTS["Call"] = CALL
S.COMPONENTS["CommandResult"] = S.obj(["ok"], {"ok": {"type": "boolean"}}, additional=True)

TRANSFER = S.obj(["operator_route_id"], {
    "operator_route_id": {"type": "string", "format": "uuid"},
    "mode": {"type": "string", "enum": ["blind", "attended"]},
    "handoff_packet_id": {"type": "string", "format": "uuid"},
})
HANGUP = S.obj([], {"cause": {"type": "string", "enum": ["NORMAL_CLEARING", "CALL_REJECTED", "USER_BUSY"]}})


def _iso(v):
    return v.isoformat() if v else None


def serialize_call(c: Call, with_events: bool = False) -> dict:
    data = {"id": str(c.id), "project_id": str(c.project_id), "direction": c.direction,
            "from_number": c.from_number, "to_number": c.to_number, "state": c.state,
            "human_status": c.human_status, "started_at": _iso(c.started_at), "answered_at": _iso(c.answered_at),
            "ended_at": _iso(c.ended_at), "duration_s": c.duration_s, "billsec": c.billsec, "outcome": c.outcome,
            "hangup_cause": c.hangup_cause, "hangup_cause_text": c.hangup_cause_text,
            "agent_id": str(c.agent_id) if c.agent_id else None,
            "agent_version_id": str(c.agent_version_id) if c.agent_version_id else None,
            "phone_number_id": str(c.phone_number_id) if c.phone_number_id else None,
            "sip_connection_id": str(c.sip_connection_id) if c.sip_connection_id else None,
            "is_test": c.is_test, "trace_id": c.trace_id,
            "has_recording": bool(c.recording_path and not c.recording_deleted_at),
            "cost_total": str(c.cost_total), "currency": c.currency, "summary": c.summary}
    if with_events:
        events = CallEvent.select().where(CallEvent.call == c.id).order_by(CallEvent.ts, CallEvent.seq)
        data["events"] = [{"type": e.type, "ts": e.ts.isoformat(), "human_status": e.human_status,
                           "payload": e.payload_json or {}} for e in events]
    return data


def project_call(call_id: str) -> Call:
    try:
        cid = uuid.UUID(call_id)
    except ValueError:
        raise NotFound("call", call_id)
    call = Call.for_project(g.project.id).where(Call.id == cid).first()
    if call is None:
        raise NotFound("call", call_id)
    return call


@group.route("/calls/<call_id>", ["GET"], permission="calls.read", responses={200: S.ref("Call")},
             summary="Карточка звонка с лентой событий")
def get_call(call_id: str):
    return serialize_call(project_call(call_id), with_events=True)


@group.route("/calls/<call_id>/recording", ["GET"], permission="calls.listen", responses={200: None},
             summary="Запись разговора (WAV); только для ролей с правом прослушивания")
def get_recording(call_id: str):
    call = project_call(call_id)
    if not call.recording_path or call.recording_deleted_at is not None:
        raise NotFound("recording", call_id)
    storage = make_storage(settings())
    size = storage.size(call.recording_path)
    if size is None:
        raise NotFound("recording", call_id)
    resp = Response(stream_with_context(storage.iter_chunks(call.recording_path)), mimetype="audio/wav")
    resp.headers["Content-Length"] = str(size)
    resp.headers["Content-Disposition"] = f'inline; filename="call-{call.id}.wav"'
    resp.headers["Cache-Control"] = "private, no-store"
    return resp


def _submit_and_wait(cmd: TelephonyCommand, timeout_s: float) -> dict:
    queue = CommandQueue(get_redis(), settings().fs_node)
    queue.submit(cmd)
    result = queue.wait_result(cmd.id, timeout_s)
    if result is None:
        raise AppError("SERVICE_UNAVAILABLE", {"component": "esl_app",
                                               "reason": "Телефонный модуль не ответил вовремя"})
    return result


@group.route("/calls/<call_id>/hangup", ["POST"], permission="calls.control", body=HANGUP,
             responses={200: S.ref("CommandResult"), 409: None}, summary="Завершить идущий звонок")
def hangup_call(call_id: str):
    call = project_call(call_id)
    if call.ended_at is not None:
        raise AppError("CONFLICT", {"reason": "Звонок уже завершён"})
    cmd = TelephonyCommand(type=CommandType.HANGUP.value, project_id=str(call.project_id), trace_id=g.trace_id,
                           args={"call_id": str(call.id), "cause": g.body.get("cause", "NORMAL_CLEARING")})
    result = _submit_and_wait(cmd, 10)
    audit.record("call.hangup", "call", call.id, after={"command_id": cmd.id, "ok": result.get("ok")},
                 project_id=call.project_id)
    return result


@group.route("/calls/<call_id>/transfer", ["POST"], permission="calls.control", body=TRANSFER,
             responses={200: S.ref("CommandResult"), 409: None},
             summary="Перевести звонок на оператора (маршрут оператора)")
def transfer_call(call_id: str):
    call = project_call(call_id)
    if call.ended_at is not None:
        raise AppError("CONFLICT", {"reason": "Звонок уже завершён"})
    route = OperatorRoute.for_project(g.project.id).where(OperatorRoute.id == uuid.UUID(g.body["operator_route_id"])).first()
    if route is None:
        raise NotFound("operator_route", g.body["operator_route_id"])
    args = {"call_id": str(call.id), "operator_route_id": str(route.id)}
    if g.body.get("mode"):
        args["mode"] = g.body["mode"]
    if g.body.get("handoff_packet_id"):
        packet = HandoffPacket.for_project(g.project.id).where(
            (HandoffPacket.id == uuid.UUID(g.body["handoff_packet_id"])) & (HandoffPacket.call == call.id)).first()
        if packet is None:
            raise NotFound("handoff_packet", g.body["handoff_packet_id"])
        args["handoff_packet_id"] = str(packet.id)
    cmd = TelephonyCommand(type=CommandType.TRANSFER.value, project_id=str(call.project_id), trace_id=g.trace_id,
                           args=args)
    result = _submit_and_wait(cmd, route.ring_timeout_s + 30)
    audit.record("call.transfer", "call", call.id, after={"route": route.name, "ok": result.get("ok")},
                 project_id=call.project_id)
    return result
