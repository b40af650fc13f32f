"""Calls API: the Inbox list with filters, one call's card with its transcript, actions, errors,
cost and handoffs, "report a problem", its recording (authorised download), and live call control.

The list is built to stay fast on millions of calls: every filter maps onto an index of
``models/calls.py`` (``models/migrations/0006_calls_inbox.sql``), pagination is keyset on
``(started_at, id)`` compared as a row value so a deep page seeks instead of scanning, and
transcript search uses the GIN full-text index on ``transcripts`` (``docs/calls_query_plan.md``).
"""
from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass
from typing import Any, Mapping

import peewee as pw
from flask import Response, g, request, stream_with_context

from core.errors import CATALOG, AppError, NotFound, ValidationFailed
from core.storage import make_storage
from core.telephony.causes import outcome_label
from core.telephony.command_queue import CommandQueue, CommandType, TelephonyCommand
from models.agents import Agent
from models.base import utcnow
from models.billing import BillableEntity, CostBreakdown
from models.calls import (Call, CallDirection, CallEvent, CallIssue, CallOutcome, HandoffPacket, IssueSource,
                          ToolInvocation, Transcript)
from models.telephony import OperatorRoute
from web import audit
from web.api import schemas as S
from web.api.pagination import PAGE_QUERY, _decode, _encode, page_limit
from web.api.registry import ApiGroup
from web.app import get_redis, settings

group = ApiGroup("calls", "Calls")

# Full-text configuration of transcript search; the index expression in 0006 uses the same literal.
FTS_CONFIG = "russian"

_STR_NULL = {"type": ["string", "null"]}
_CALL_PROPS = {
    "id": S.UUID, "project_id": S.UUID, "direction": {"type": "string", "enum": ["inbound", "outbound"]},
    "from_number": {"type": "string"}, "to_number": {"type": "string"}, "state": {"type": "string"},
    "human_status": {"type": "string"}, "started_at": S.TS, "answered_at": S.TS_NULL, "ended_at": S.TS_NULL,
    "duration_s": {"type": "integer"}, "billsec": {"type": "integer"}, "outcome": _STR_NULL,
    "outcome_label": _STR_NULL, "hangup_cause": _STR_NULL, "hangup_cause_text": _STR_NULL,
    "agent_id": _STR_NULL, "agent_name": _STR_NULL, "agent_version_id": _STR_NULL,
    "phone_number_id": _STR_NULL, "sip_connection_id": _STR_NULL, "campaign_id": _STR_NULL,
    "is_test": {"type": "boolean"}, "trace_id": {"type": "string"}, "has_recording": {"type": "boolean"},
    "has_errors": {"type": "boolean"},
    # cost_total/currency only for principals holding billing.read
    "cost_total": {"type": "string"}, "currency": {"type": "string"}, "summary": _STR_NULL,
    "events": {"type": "array", "items": S.obj(["type", "ts"], {
        "type": {"type": "string"}, "ts": S.TS, "human_status": {"type": "string"}, "payload": {"type": "object"}})},
}
_CALL_REQUIRED = ["id", "project_id", "direction", "from_number", "to_number", "state", "started_at"]
CALL = S.obj(_CALL_REQUIRED, _CALL_PROPS)
CALL_DETAILS = S.obj(_CALL_REQUIRED + ["transcript", "tool_invocations", "issues", "cost", "handoff_packets",
                                       "recording_url"], {
    **_CALL_PROPS,
    "extracted": {"type": "object"},
    "transcript": {"type": "array", "items": S.obj(["speaker", "text", "ts_start_ms"], {
        "id": S.UUID, "speaker": {"type": "string"}, "text": {"type": "string"}, "heard_text": _STR_NULL,
        "interrupted": {"type": "boolean"}, "ts_start_ms": {"type": "integer"},
        "ts_end_ms": {"type": ["integer", "null"]}, "confidence": {"type": ["number", "null"]},
        "engine": _STR_NULL})},
    "tool_invocations": {"type": "array", "items": S.obj(["tool_name", "status"], {
        "id": S.UUID, "tool_name": {"type": "string"}, "provider": _STR_NULL, "status": {"type": "string"},
        "attempt": {"type": "integer"}, "duration_ms": {"type": ["integer", "null"]}, "error_code": _STR_NULL,
        "error_title": _STR_NULL, "error_message": _STR_NULL, "started_at": S.TS_NULL, "finished_at": S.TS_NULL,
        "trace_id": {"type": "string"}})},
    "issues": {"type": "array", "items": S.ref("CallIssue")},
    "cost": {"oneOf": [{"type": "null"}, S.obj(["total", "currency", "lines"], {
        "total": {"type": "string"}, "currency": {"type": "string"},
        "lines": {"type": "array", "items": S.obj(["component", "title", "amount"], {
            "component": {"type": "string"}, "title": {"type": "string"}, "amount": {"type": "string"}})}})]},
    "handoff_packets": {"type": "array", "items": S.obj(["id", "reason", "status"], {
        "id": S.UUID, "reason": {"type": "string"}, "reason_text": {"type": "string"},
        "summary": {"type": "string"}, "collected": {"type": "object"}, "transcript_excerpt": {"type": "string"},
        "status": {"type": "string"}, "transfer_mode": {"type": "string"}, "target": _STR_NULL,
        "created_at": S.TS, "accepted_at": S.TS_NULL})},
    "recording_url": _STR_NULL,
})
S.COMPONENTS["Call"] = CALL
S.COMPONENTS["CallDetails"] = CALL_DETAILS
S.COMPONENTS["CallIssue"] = S.obj(["id", "code", "title", "how_to_fix", "source", "created_at"], {
    "id": S.UUID, "code": {"type": "string"}, "title": {"type": "string"},
    "how_to_fix": {"type": "array", "items": {"type": "string"}}, "source": {"type": "string"},
    "comment": {"type": "string"}, "trace_id": _STR_NULL, "created_at": S.TS, "resolved_at": S.TS_NULL})
S.COMPONENTS["CommandResult"] = S.obj(["ok"], {"ok": {"type": "boolean"}}, additional=True)

TRANSFER = S.obj(["operator_route_id"], {
    "operator_route_id": {"type": "string", "format": "uuid"},
    "mode": {"type": "string", "enum": ["blind", "attended"]},
    "handoff_packet_id": {"type": "string", "format": "uuid"},
})
HANGUP = S.obj([], {"cause": {"type": "string", "enum": ["NORMAL_CLEARING", "CALL_REJECTED", "USER_BUSY"]}})
ISSUE = S.obj(["comment"], {"comment": {"type": "string", "minLength": 1, "maxLength": 4000},
                            "code": {"type": "string", "enum": sorted(CATALOG)}})
# The code of a problem a user reports without naming a catalog error.
USER_REPORT_CODE = "USER_REPORT"
_USER_REPORT_TITLE = "Сообщение о проблеме"
_USER_REPORT_FIX = ("Разберите звонок по транскрипту и действиям агента, поправьте сценарий или базу знаний.",)

_BOOL = {"type": "string", "enum": ["true", "false"]}
LIST_QUERY = {
    **PAGE_QUERY,
    "from": {"type": "string", "description": "Начало периода: дата (2026-02-01) или момент ISO 8601"},
    "to": {"type": "string", "description": "Конец периода (дата включительно или момент, не включая)"},
    "direction": {"type": "string", "enum": [d.value for d in CallDirection]},
    "outcome": {"type": "string", "description": "Итог звонка; несколько через запятую"},
    "agent_id": S.UUID, "campaign_id": S.UUID, "phone_number_id": S.UUID,
    "number": {"type": "string", "description": "Номер собеседника или наш номер (from/to)"},
    "has_errors": _BOOL,
    "live": {**_BOOL, "description": "true: только идущие звонки (Живой монитор)"},
    "q": {"type": "string", "description": "Поиск по транскриптам (полнотекстовый, с учётом словоформ)"},
}


# ---- pure: filters -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CallFilters:
    """What the Inbox asks for; every field maps onto an index of the calls table."""

    started_from: dt.datetime | None = None
    started_to: dt.datetime | None = None
    direction: str | None = None
    outcomes: tuple[str, ...] = ()
    agent_id: uuid.UUID | None = None
    campaign_id: uuid.UUID | None = None
    phone_number_id: uuid.UUID | None = None
    numbers: tuple[str, ...] = ()
    has_errors: bool | None = None
    live: bool | None = None
    q: str | None = None


def _parse_moment(raw: str, end: bool) -> dt.datetime:
    """A date means the whole day (``to`` inclusive); a moment without a zone is UTC."""
    raw = raw.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
        day = dt.datetime.combine(dt.date.fromisoformat(raw), dt.time(), dt.timezone.utc)
        return day + dt.timedelta(days=1) if end else day
    value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _parse_uuid(raw: str) -> uuid.UUID:
    return uuid.UUID(raw.strip())


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value not in ("true", "false", "1", "0"):
        raise ValueError(value)
    return value in ("true", "1")


def number_variants(raw: str) -> tuple[str, ...]:
    """How a number may be stored in from/to: FreeSWITCH gives digits, our numbers are +E.164."""
    digits = re.sub(r"\D", "", raw)
    if len(digits) == 11 and digits.startswith("8"):
        digits = "7" + digits[1:]  # Russian trunk prefix 8 -> country code 7
    if len(digits) < 3:
        raise ValueError(raw)
    return (digits, "+" + digits)


def parse_call_filters(args: Mapping[str, str]) -> CallFilters:
    """Query string -> filters; every bad field is reported at once with a Russian message."""
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}

    def take(name: str, parse, message: str, key: str | None = None) -> None:
        raw = args.get(name)
        if raw is None or raw == "":
            return
        try:
            values[key or name] = parse(raw)
        except (ValueError, TypeError):
            errors[name] = message

    take("from", lambda r: _parse_moment(r, end=False), "Ожидается дата (2026-02-01) или момент ISO 8601",
         "started_from")
    take("to", lambda r: _parse_moment(r, end=True), "Ожидается дата (2026-02-01) или момент ISO 8601",
         "started_to")
    take("direction", lambda r: CallDirection(r).value, "Допустимо: inbound или outbound")
    take("outcome", lambda r: tuple(CallOutcome(o.strip()).value for o in r.split(",") if o.strip()),
         "Неизвестный итог звонка; допустимо: " + ", ".join(o.value for o in CallOutcome), "outcomes")
    for name in ("agent_id", "campaign_id", "phone_number_id"):
        take(name, _parse_uuid, "Ожидается идентификатор (UUID)")
    take("number", number_variants, "Укажите номер телефона, хотя бы 3 цифры", "numbers")
    take("has_errors", _parse_bool, "Ожидается true или false")
    take("live", _parse_bool, "Ожидается true или false")
    q = (args.get("q") or "").strip()
    if len(q) > 200:
        errors["q"] = "Не длиннее 200 символов"
    elif q:
        values["q"] = q
    if not errors and values.get("started_from") and values.get("started_to") \
            and values["started_from"] >= values["started_to"]:
        errors["to"] = "Конец периода раньше начала"
    if errors:
        raise ValidationFailed(errors)
    return CallFilters(**values)


# ---- queries ---------------------------------------------------------------------------------------------

def transcript_match(q: str) -> pw.Node:
    """``to_tsvector('russian', text) @@ websearch_to_tsquery('russian', q)``: the index's expression."""
    config = pw.SQL(f"'{FTS_CONFIG}'")
    return pw.Expression(pw.fn.to_tsvector(config, Transcript.text), "@@", pw.fn.websearch_to_tsquery(config, q))


def filtered_calls(project_id: uuid.UUID, f: CallFilters) -> pw.ModelSelect:
    query = (Call.select(Call, Agent.name.alias("agent_name"))
             .join(Agent, pw.JOIN.LEFT_OUTER, on=(Call.agent == Agent.id))
             .where(Call.project == project_id))
    if f.started_from is not None:
        query = query.where(Call.started_at >= f.started_from)
    if f.started_to is not None:
        query = query.where(Call.started_at < f.started_to)
    if f.direction:
        query = query.where(Call.direction == f.direction)
    if f.outcomes:
        query = query.where(Call.outcome.in_(list(f.outcomes)))
    if f.agent_id:
        query = query.where(Call.agent == f.agent_id)
    if f.campaign_id:
        query = query.where(Call.campaign == f.campaign_id)
    if f.phone_number_id:
        query = query.where(Call.phone_number == f.phone_number_id)
    if f.numbers:
        query = query.where(Call.from_number.in_(list(f.numbers)) | Call.to_number.in_(list(f.numbers)))
    if f.has_errors is not None:
        query = query.where(Call.has_errors == f.has_errors)
    if f.live is not None:
        query = query.where(Call.ended_at.is_null(f.live))
    if f.q:
        matching = Transcript.select(Transcript.call).where(
            (Transcript.project == project_id) & transcript_match(f.q))
        query = query.where(Call.id.in_(matching))
    return query


def keyset_query(query: pw.ModelSelect, limit: int, after: tuple[dt.datetime, uuid.UUID] | None) -> pw.ModelSelect:
    """Newest first by ``(started_at, id)``; the cursor comparison is a row value, so it seeks.

    ``objects()``: the joined agent name lands on the Call row instead of replacing ``call.agent``.
    """
    if after is not None:
        query = query.where(pw.Tuple(Call.started_at, Call.id) < pw.Tuple(*after))
    return query.order_by(Call.started_at.desc(), Call.id.desc()).limit(limit + 1).objects()


def keyset_page(query: pw.ModelSelect, serialize) -> dict[str, Any]:
    limit = page_limit()
    cursor = request.args.get("cursor")
    rows = list(keyset_query(query, limit, _decode(cursor) if cursor else None))
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = _encode(rows[-1].started_at, rows[-1].id) if more and rows else None
    return {"items": [serialize(r) for r in rows], "next_cursor": next_cursor}


# ---- serializers -----------------------------------------------------------------------------------------



def _can_see_costs() -> bool:
    principal = g.get("principal")
    project = g.get("project")
    return bool(principal and project and principal.can("billing.read", project.id))


def serialize_call(c: Call, with_events: bool = False) -> dict:
    data = {"id": str(c.id), "project_id": str(c.project_id), "direction": c.direction,
            "from_number": c.from_number, "to_number": c.to_number, "state": c.state,
            "human_status": c.human_status, "started_at": S.iso(c.started_at), "answered_at": S.iso(c.answered_at),
            "ended_at": S.iso(c.ended_at), "duration_s": c.duration_s, "billsec": c.billsec, "outcome": c.outcome,
            "outcome_label": outcome_label(c.outcome) if c.outcome else None,
            "hangup_cause": c.hangup_cause, "hangup_cause_text": c.hangup_cause_text,
            "agent_id": S.sid(c.agent_id), "agent_name": getattr(c, "agent_name", None),
            "agent_version_id": S.sid(c.agent_version_id), "phone_number_id": S.sid(c.phone_number_id),
            "sip_connection_id": S.sid(c.sip_connection_id), "campaign_id": S.sid(c.campaign_id),
            "is_test": c.is_test, "trace_id": c.trace_id,
            "has_recording": bool(c.recording_path and not c.recording_deleted_at),
            "has_errors": c.has_errors, "summary": c.summary}
    if data["agent_name"] is None and c.agent_id:
        data["agent_name"] = Agent.select(Agent.name).where(Agent.id == c.agent_id).scalar()
    if _can_see_costs():
        data["cost_total"] = str(c.cost_total)
        data["currency"] = c.currency
    if with_events:
        events = CallEvent.select().where(CallEvent.call == c.id).order_by(CallEvent.ts, CallEvent.seq)
        data["events"] = [{"type": e.type, "ts": e.ts.isoformat(), "human_status": e.human_status,
                           "payload": e.payload_json or {}} for e in events]
    return data


def serialize_issue(i: CallIssue) -> dict:
    entry = CATALOG.get(i.code)
    title = entry.human_title if entry else _USER_REPORT_TITLE
    fix = list(entry.human_how_to_fix) if entry else list(_USER_REPORT_FIX)
    return {"id": str(i.id), "code": i.code, "title": title, "how_to_fix": fix, "source": i.source,
            "comment": i.comment, "trace_id": i.trace_id, "created_at": i.created_at.isoformat(),
            "resolved_at": S.iso(i.resolved_at)}


_COST_LINES = (("telephony", "Телефония", "telephony_cost"), ("stt", "Распознавание речи", "stt_cost"),
               ("llm", "Языковая модель", "llm_cost"), ("tts", "Синтез речи", "tts_cost"),
               ("platform", "Платформа", "platform_fee"))


def serialize_cost(c: Call) -> dict | None:
    """Cost lines from the billing breakdown; the call's running total when none exists yet."""
    row = CostBreakdown.get_or_none((CostBreakdown.entity_type == BillableEntity.CALL.value)
                                    & (CostBreakdown.entity_id == c.id))
    if row is None:
        return {"total": str(c.cost_total), "currency": c.currency, "lines": []}
    return {"total": str(row.total_cost), "currency": row.currency,
            "lines": [{"component": key, "title": title, "amount": str(getattr(row, attr))}
                      for key, title, attr in _COST_LINES]}


def serialize_details(c: Call) -> dict:
    data = serialize_call(c, with_events=True)
    data["extracted"] = c.extracted_json or {}
    turns = Transcript.select().where(Transcript.call == c.id).order_by(Transcript.ts_start_ms, Transcript.created_at)
    data["transcript"] = [{"id": str(t.id), "speaker": t.speaker, "text": t.text, "heard_text": t.heard_text,
                           "interrupted": t.interrupted, "ts_start_ms": t.ts_start_ms, "ts_end_ms": t.ts_end_ms,
                           "confidence": t.stt_confidence, "engine": t.engine} for t in turns]
    tools = ToolInvocation.select().where(ToolInvocation.call == c.id).order_by(ToolInvocation.created_at)
    data["tool_invocations"] = [
        {"id": str(t.id), "tool_name": t.tool_name, "provider": t.provider, "status": t.status, "attempt": t.attempt,
         "duration_ms": t.duration_ms, "error_code": t.error_code,
         "error_title": CATALOG[t.error_code].human_title if t.error_code in CATALOG else None,
         "error_message": t.error_message, "started_at": S.iso(t.started_at), "finished_at": S.iso(t.finished_at),
         "trace_id": t.trace_id} for t in tools]
    issues = CallIssue.select().where(CallIssue.call == c.id).order_by(CallIssue.created_at)
    data["issues"] = [serialize_issue(i) for i in issues]
    data["cost"] = serialize_cost(c) if _can_see_costs() else None
    packets = HandoffPacket.select().where(HandoffPacket.call == c.id).order_by(HandoffPacket.created_at)
    data["handoff_packets"] = [
        {"id": str(p.id), "reason": p.reason, "reason_text": p.reason_text, "summary": p.summary,
         "collected": p.collected_json or {}, "transcript_excerpt": p.transcript_excerpt, "status": p.status,
         "transfer_mode": p.transfer_mode, "target": p.target, "created_at": p.created_at.isoformat(),
         "accepted_at": S.iso(p.accepted_at)} for p in packets]
    listen = g.principal.can("calls.listen", g.project.id)
    data["recording_url"] = f"/api/calls/{c.id}/recording" if data["has_recording"] and listen else None
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


# ---- routes ----------------------------------------------------------------------------------------------

@group.route("/calls", ["GET"], permission="calls.read", responses={200: S.page_of("Call"), 422: None},
             query=LIST_QUERY, summary="Звонки проекта (Inbox): фильтры, поиск по транскриптам, курсор")
def list_calls():
    filters = parse_call_filters(request.args)
    return keyset_page(filtered_calls(g.project.id, filters), serialize_call)


@group.route("/calls/<call_id>", ["GET"], permission="calls.read", responses={200: S.ref("CallDetails")},
             summary="Карточка звонка: транскрипт, действия, ошибки, стоимость, запись, передачи оператору")
def get_call(call_id: str):
    return serialize_details(project_call(call_id))


@group.route("/calls/<call_id>/issue", ["POST"], permission="calls.report_issue", body=ISSUE,
             responses={201: S.ref("CallIssue"), 422: None}, summary="Сообщить о проблеме в звонке")
def report_issue(call_id: str):
    call = project_call(call_id)
    user_id = g.principal.id if g.principal.kind == "user" else None
    issue = CallIssue.create(project=call.project_id, call=call.id, code=g.body.get("code", USER_REPORT_CODE),
                             source=IssueSource.USER.value, comment=g.body["comment"].strip(),
                             trace_id=g.trace_id, reported_by=user_id,
                             details_json={"reported_by": g.principal.label})
    if not call.has_errors:
        Call.update(has_errors=True, updated_at=utcnow()).where(Call.id == call.id).execute()
    out = serialize_issue(issue)
    audit.record("call.issue_reported", "call", call.id, after={"issue_id": out["id"], "code": out["code"],
                                                                "comment": out["comment"]},
                 project_id=call.project_id)
    return out, 201


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
