"""Built-in calendar API: bookable resources (a doctor, a master, a room) and the appointments the
agent booked. Working hours use the schedule format of phone numbers (core.telephony.schedule),
read in the project's time zone unless the schedule names its own.
"""
from __future__ import annotations

import datetime as dt
import uuid
from zoneinfo import ZoneInfo

import peewee as pw
from flask import g, request

from core.errors import AppError, NotFound, ValidationFailed
from core.telephony.e164 import normalize_e164
from core.telephony.schedule import parse_schedule, validate_schedule
from core.tools.base import ToolContext, ToolError
from core.tools.calendar.builtin import BuiltinCalendar
from core.tools.calendar.slots import label_ru, parse_local_date
from models.base import database, utcnow
from models.calendar import Appointment, AppointmentStatus, CalendarResource, ResourceKind
from web import audit
from web.api import schemas as S
from web.api.registry import ApiGroup

group = ApiGroup("calendar", "Calendar")

_STR_NULL = {"type": ["string", "null"]}
RESOURCE_FIELDS = {
    "name": S.NAME,
    "kind": {"type": "string", "enum": [k.value for k in ResourceKind]},
    "description": {"type": "string", "maxLength": 2000},
    "working_hours": {"type": "object"},
    "slot_minutes": {"type": "integer", "minimum": 5, "maximum": 480},
    "min_notice_minutes": {"type": "integer", "minimum": 0, "maximum": 43200},
    "enabled": {"type": "boolean"},
}
RESOURCE_CREATE = S.obj(["name", "working_hours"], RESOURCE_FIELDS)
RESOURCE_UPDATE = {**S.obj([], RESOURCE_FIELDS), "minProperties": 1}
CANCEL = S.obj([], {"reason": {"type": "string", "maxLength": 1000}})

S.COMPONENTS.update({
    "CalendarResource": S.obj(["id", "project_id", "name", "kind", "working_hours", "slot_minutes", "timezone",
                               "enabled", "created_at"], {
        "id": S.UUID, "project_id": S.UUID, "name": {"type": "string"}, "kind": {"type": "string"},
        "description": {"type": "string"}, "working_hours": {"type": "object"},
        "slot_minutes": {"type": "integer"}, "min_notice_minutes": {"type": "integer"},
        "timezone": {"type": "string"}, "enabled": {"type": "boolean"}, "created_at": S.TS}),
    "Appointment": S.obj(["id", "resource_id", "resource_name", "starts_at", "ends_at", "start_local", "label",
                          "status", "created_at"], {
        "id": S.UUID, "resource_id": S.UUID, "resource_name": {"type": "string"},
        "contact_id": _STR_NULL, "client_name": {"type": "string"}, "phone_e164": _STR_NULL,
        "starts_at": S.TS, "ends_at": S.TS, "start_local": {"type": "string"}, "label": {"type": "string"},
        "timezone": {"type": "string"}, "status": {"type": "string"}, "comment": {"type": "string"},
        "call_id": _STR_NULL, "trace_id": _STR_NULL, "cancelled_at": S.TS_NULL, "cancel_reason": _STR_NULL,
        "history": {"type": "array"}, "created_at": S.TS}),
})


def _zone(r: CalendarResource) -> str:
    return parse_schedule(r.working_hours_json or {}, g.project.timezone).timezone


def serialize_resource(r: CalendarResource) -> dict:
    return {"id": str(r.id), "project_id": str(r.project_id), "name": r.name, "kind": r.kind,
            "description": r.description, "working_hours": r.working_hours_json or {},
            "slot_minutes": r.slot_minutes, "min_notice_minutes": r.min_notice_minutes, "timezone": _zone(r),
            "enabled": r.enabled, "created_at": r.created_at.isoformat()}


def serialize_appointment(a: Appointment, r: CalendarResource) -> dict:
    tz = ZoneInfo(_zone(r))
    return {"id": str(a.id), "resource_id": str(a.resource_id), "resource_name": r.name,
            "contact_id": str(a.contact_id) if a.contact_id else None, "client_name": a.client_name,
            "phone_e164": a.phone_e164, "starts_at": a.starts_at.isoformat(), "ends_at": a.ends_at.isoformat(),
            "start_local": a.starts_at.astimezone(tz).isoformat(), "label": label_ru(a.starts_at, tz),
            "timezone": str(tz), "status": a.status, "comment": a.comment,
            "call_id": str(a.call_id) if a.call_id else None, "trace_id": a.trace_id,
            "cancelled_at": a.cancelled_at.isoformat() if a.cancelled_at else None,
            "cancel_reason": a.cancel_reason, "history": list(a.history_json or []),
            "created_at": a.created_at.isoformat()}


def _resource(raw_id: str) -> CalendarResource:
    try:
        rid = uuid.UUID(raw_id)
    except ValueError:
        raise NotFound("calendar_resource", raw_id)
    r = CalendarResource.for_project(g.project.id).where(CalendarResource.id == rid).first()
    if r is None:
        raise NotFound("calendar_resource", raw_id)
    return r


def _apply_fields(r: CalendarResource, body: dict) -> None:
    if "working_hours" in body:
        problems = validate_schedule(body["working_hours"], prefix="working_hours")
        if problems:
            raise ValidationFailed(problems)
        r.working_hours_json = body["working_hours"]
    for key in ("name", "kind", "description", "slot_minutes", "min_notice_minutes", "enabled"):
        if key in body:
            setattr(r, key, body[key])


def _save_unique(r: CalendarResource, insert: bool = False) -> None:
    """Save; a duplicate name in the project is a CONFLICT (the savepoint keeps the request usable)."""
    try:
        with database.atomic():
            r.save(force_insert=insert)
    except pw.IntegrityError:
        raise AppError("CONFLICT", {"reason": f"Ресурс «{r.name}» уже есть в этом проекте"})


@group.route("/calendar/resources", ["GET"], permission="crm.read", responses={200: S.list_of("CalendarResource")},
             summary="Специалисты и ресурсы для записи")
def list_resources():
    rows = CalendarResource.for_project(g.project.id).order_by(CalendarResource.name)
    return {"items": [serialize_resource(r) for r in rows]}


@group.route("/calendar/resources", ["POST"], permission="crm.edit", body=RESOURCE_CREATE,
             responses={201: S.ref("CalendarResource"), 409: None}, summary="Добавить специалиста или ресурс")
def create_resource():
    r = CalendarResource(project=g.project.id)
    _apply_fields(r, g.body)
    _save_unique(r, insert=True)
    data = serialize_resource(r)
    audit.record("calendar_resource.create", "calendar_resource", r.id, after=data, project_id=g.project.id)
    return data, 201


@group.route("/calendar/resources/<resource_id>", ["PATCH"], permission="crm.edit", body=RESOURCE_UPDATE,
             responses={200: S.ref("CalendarResource"), 409: None},
             summary="Изменить часы работы, длительность приёма или отключить ресурс")
def update_resource(resource_id: str):
    r = _resource(resource_id)
    before = serialize_resource(r)
    _apply_fields(r, g.body)
    _save_unique(r)
    data = serialize_resource(r)
    audit.record("calendar_resource.update", "calendar_resource", r.id, before=before, after=data,
                 project_id=g.project.id)
    return data


def _day_bound(name: str, default: dt.date, tz: ZoneInfo, end: bool) -> dt.datetime:
    raw = request.args.get(name)
    try:
        day = parse_local_date(raw) if raw else default
    except ValueError as exc:
        raise ValidationFailed({name: str(exc)})
    return dt.datetime.combine(day + dt.timedelta(days=1 if end else 0), dt.time(0), tzinfo=tz)


@group.route("/calendar/appointments", ["GET"], permission="crm.read", responses={200: S.list_of("Appointment")},
             query={"date_from": {"type": "string", "format": "date"}, "date_to": {"type": "string", "format": "date"},
                    "resource_id": {"type": "string", "format": "uuid"},
                    "status": {"type": "string", "enum": [s.value for s in AppointmentStatus]},
                    "phone": {"type": "string"}},
             summary="Записи за период (по умолчанию — сегодня и две недели вперёд), по времени начала")
def list_appointments():
    tz = ZoneInfo(g.project.timezone)
    today = utcnow().astimezone(tz).date()
    start = _day_bound("date_from", today, tz, end=False)
    end = _day_bound("date_to", today + dt.timedelta(days=14), tz, end=True)
    if end <= start:
        raise ValidationFailed({"date_to": "Дата окончания раньше даты начала"})
    if (end - start).days > 366:
        raise ValidationFailed({"date_to": "Период — не больше года"})
    q = (Appointment.select(Appointment, CalendarResource)
         .join(CalendarResource, on=(Appointment.resource == CalendarResource.id))
         .where((Appointment.project == g.project.id) & (CalendarResource.project == g.project.id)
                & (Appointment.starts_at >= start) & (Appointment.starts_at < end)))
    args = request.args
    if args.get("resource_id"):
        q = q.where(Appointment.resource == _resource(args["resource_id"]).id)
    if args.get("status"):
        if args["status"] not in {s.value for s in AppointmentStatus}:
            raise ValidationFailed({"status": "Допустимые значения: booked, cancelled"})
        q = q.where(Appointment.status == args["status"])
    if args.get("phone"):
        try:
            q = q.where(Appointment.phone_e164 == normalize_e164(args["phone"]))
        except ValueError as exc:
            raise ValidationFailed({"phone": str(exc)})
    rows = q.order_by(Appointment.starts_at, Appointment.id).limit(1000)
    return {"items": [serialize_appointment(a, a.resource) for a in rows]}


@group.route("/calendar/appointments/<appointment_id>/cancel", ["POST"], permission="crm.edit", body=CANCEL,
             responses={200: S.ref("Appointment"), 409: None, 422: None}, summary="Отменить запись")
def cancel_appointment(appointment_id: str):
    cal = BuiltinCalendar(g.project.id, g.project.timezone)
    principal = g.principal
    ctx = ToolContext(project_id=g.project.id, trace_id=g.trace_id,
                      user_id=principal.id if principal.kind == "user" else None)
    try:
        rec = cal.cancel(ctx, appointment_id, g.body.get("reason", ""), utcnow())
    except ToolError as exc:
        if exc.code == "NOT_FOUND":
            raise NotFound("appointment", appointment_id)
        if exc.code == "CONFLICT":
            raise AppError("CONFLICT", {"reason": exc.message})
        raise ValidationFailed({"appointment_id": exc.message})
    a = Appointment.get_by_id(uuid.UUID(rec.id))
    data = serialize_appointment(a, CalendarResource.get_by_id(a.resource_id))
    audit.record("appointment.cancel", "appointment", a.id, before={"status": AppointmentStatus.BOOKED.value},
                 after={"status": a.status, "cancel_reason": a.cancel_reason}, project_id=g.project.id)
    return data
