"""Booking tools: free slots, book, find the caller's appointments, reschedule, cancel.

The LLM speaks the calendar's wall-clock time ("2026-03-10T14:30" = 14:30 where the clinic is);
answers carry the local ISO time with its offset and a Russian label the agent can read out.
"""
from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from core.tools.base import ToolContext, ToolError
from core.tools.calendar.base import AppointmentRecord, CalendarProvider, FreeSlot, SlotQuery
from core.tools.calendar.slots import (MAX_RANGE_DAYS, label_ru, parse_hhmm, parse_local_date,
                                       parse_local_datetime)
from core.tools.common import PHONE_ARG, UUID_ARG, ProviderTool, phone_of
from core.tools.providers import BUILTIN, resolve_calendar, resolve_crm
from models.base import utcnow

DATE_ARG = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$", "x-message-ru": "Ожидается дата ГГГГ-ММ-ДД"}
TIME_ARG = {"type": "string", "pattern": r"^\d{2}:\d{2}$", "x-message-ru": "Ожидается время ЧЧ:ММ"}
DATETIME_ARG = {"type": "string", "minLength": 16, "maxLength": 40,
                "description": "Начало по местному времени: ГГГГ-ММ-ДДTЧЧ:ММ, как в ответе calendar_free_slots"}


def _obj(required: list[str], props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props, "additionalProperties": False}


def _bad(field: str, exc: ValueError) -> ToolError:
    return ToolError("VALIDATION_FAILED", str(exc), {"field": field})


def _slot_out(s: FreeSlot, tz: ZoneInfo) -> dict[str, Any]:
    return {"resource_id": s.resource_id, "resource_name": s.resource_name,
            "start": s.start.astimezone(tz).isoformat(), "end": s.end.astimezone(tz).isoformat(),
            "label": label_ru(s.start, tz)}


def _appointment_out(cal: CalendarProvider, a: AppointmentRecord) -> dict[str, Any]:
    tz = ZoneInfo(cal.timezone_for(a.resource_id))
    return {"id": a.id, "resource_id": a.resource_id, "resource_name": a.resource_name,
            "start": a.start.astimezone(tz).isoformat(), "end": a.end.astimezone(tz).isoformat(),
            "label": label_ru(a.start, tz), "status": a.status, "client_name": a.client_name,
            "phone": a.phone, "contact_id": a.contact_id}


def _owner_phone(ctx: ToolContext) -> str | None:
    """On a call, the caller may only move or cancel appointments booked for their own number."""
    if ctx.call_id is None or not ctx.caller_phone:
        return None
    try:
        return phone_of(ctx, None)
    except ToolError:
        return None


class CalendarTool(ProviderTool):
    def resolve(self, ctx: ToolContext) -> CalendarProvider:
        return resolve_calendar(ctx.project_id)

    @staticmethod
    def start_arg(cal: CalendarProvider, args: dict[str, Any], key: str) -> dt.datetime:
        tz = ZoneInfo(cal.timezone_for(args.get("resource_id")))
        try:
            return parse_local_datetime(args[key], tz)
        except ValueError as exc:
            raise _bad(key, exc) from None


class FreeSlots(CalendarTool):
    name = "calendar_free_slots"
    title = "Свободное время для записи"
    description = ("Найти свободные окна для записи. Без дат — ближайшая неделя. Называйте клиенту только "
                   "окна из ответа (поле label), не придумывайте время.")
    parameters = _obj([], {
        "date_from": DATE_ARG, "date_to": DATE_ARG, "resource_id": UUID_ARG,
        "time_from": TIME_ARG, "time_to": TIME_ARG,
        "limit": {"type": "integer", "minimum": 1, "maximum": 50},
    })

    def act(self, cal: CalendarProvider, ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
        now = utcnow()
        tz = ZoneInfo(cal.timezone_for(args.get("resource_id")))
        today = now.astimezone(tz).date()
        try:
            date_from = parse_local_date(args["date_from"]) if args.get("date_from") else today
            date_to = parse_local_date(args["date_to"]) if args.get("date_to") else date_from + dt.timedelta(days=6)
            time_from = parse_hhmm(args["time_from"]) if args.get("time_from") else None
            time_to = parse_hhmm(args["time_to"]) if args.get("time_to") else None
        except ValueError as exc:
            raise ToolError("VALIDATION_FAILED", str(exc)) from None
        if date_to < date_from:
            raise ToolError("VALIDATION_FAILED", "Дата окончания раньше даты начала", {"field": "date_to"})
        if (date_to - date_from).days >= MAX_RANGE_DAYS:
            raise ToolError("VALIDATION_FAILED", f"Ищите окна не больше чем на {MAX_RANGE_DAYS} дней вперёд",
                            {"field": "date_to"})
        date_from = max(date_from, today - dt.timedelta(days=1))
        slots = cal.free_slots(SlotQuery(date_from, date_to, args.get("resource_id"), time_from, time_to,
                                         args.get("limit", 10)), now)
        resources = cal.resources()
        zones = {r.id: ZoneInfo(r.timezone) for r in resources}
        return {"timezone": str(tz), "slots": [_slot_out(s, zones.get(s.resource_id, tz)) for s in slots],
                "resources": [{"id": r.id, "name": r.name, "description": r.description} for r in resources]}


class Book(CalendarTool):
    name = "calendar_book"
    title = "Запись на приём"
    description = ("Записать клиента на выбранное время из calendar_free_slots. Перед вызовом подтвердите с "
                   "клиентом дату, время и специалиста. Если время занято, в ответе будут ближайшие свободные окна.")
    parameters = _obj(["start"], {
        "start": DATETIME_ARG, "resource_id": UUID_ARG,
        "client_name": {"type": "string", "minLength": 1, "maxLength": 300},
        "phone": PHONE_ARG,
        "comment": {"type": "string", "maxLength": 2000, "description": "Причина визита, пожелания"},
    })

    def act(self, cal: CalendarProvider, ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
        start = self.start_arg(cal, args, "start")
        phone = phone_of(ctx, args.get("phone"))
        contact_id = None
        crm = resolve_crm(ctx.project_id)
        if crm.name == BUILTIN:  # appointments link to built-in contacts; external CRMs keep their own
            contact_id = crm.find_or_create_contact(ctx, phone, args.get("client_name", "")).id
        appt = cal.book(ctx, args.get("resource_id"), start, args.get("client_name", ""), phone, contact_id,
                        args.get("comment", ""), utcnow())
        return {"appointment": _appointment_out(cal, appt)}


class FindAppointments(CalendarTool):
    name = "calendar_find_appointments"
    title = "Найти записи клиента"
    description = "Найти предстоящие записи звонящего (по его номеру), например чтобы перенести или отменить."
    parameters = _obj([], {"phone": PHONE_ARG})

    def act(self, cal: CalendarProvider, ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
        phone = phone_of(ctx, args.get("phone"))
        owner = _owner_phone(ctx)
        if owner and phone != owner:
            raise ToolError("VALIDATION_FAILED", "Можно посмотреть только записи на номер, с которого вы звоните",
                            {"field": "phone"})
        return {"appointments": [_appointment_out(cal, a) for a in cal.find_appointments(phone, utcnow())]}


class Reschedule(CalendarTool):
    name = "calendar_reschedule"
    title = "Перенос записи"
    description = "Перенести запись клиента на другое свободное время (id записи — из calendar_find_appointments)."
    parameters = _obj(["appointment_id", "new_start"], {
        "appointment_id": UUID_ARG, "new_start": DATETIME_ARG, "resource_id": UUID_ARG})

    def act(self, cal: CalendarProvider, ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
        new_start = self.start_arg(cal, args, "new_start")
        appt = cal.reschedule(ctx, args["appointment_id"], new_start, args.get("resource_id"), utcnow(),
                              owner_phone=_owner_phone(ctx))
        return {"appointment": _appointment_out(cal, appt)}


class Cancel(CalendarTool):
    name = "calendar_cancel"
    title = "Отмена записи"
    description = "Отменить запись клиента (id записи — из calendar_find_appointments). Сначала подтвердите отмену."
    parameters = _obj(["appointment_id"], {
        "appointment_id": UUID_ARG, "reason": {"type": "string", "maxLength": 1000}})

    def act(self, cal: CalendarProvider, ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
        appt = cal.cancel(ctx, args["appointment_id"], args.get("reason", ""), utcnow(),
                          owner_phone=_owner_phone(ctx))
        return {"appointment": _appointment_out(cal, appt)}


TOOLS = [FreeSlots(), Book(), FindAppointments(), Reschedule(), Cancel()]
