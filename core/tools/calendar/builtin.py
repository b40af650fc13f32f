"""The platform's own calendar on ``calendar_resources`` / ``calendar_appointments``.

No double booking, even when two calls book the same slot at the same moment: booking and
rescheduling lock the resource row (``SELECT ... FOR UPDATE``) before checking for overlaps, so
concurrent bookings of one resource are serialized, and the partial unique index on
(resource, starts_at) of booked rows refuses an identical slot at the database level regardless.
"""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Iterable

import peewee as pw

from core.telephony.schedule import Schedule, parse_schedule
from core.tools.base import ToolContext, ToolError
from core.tools.calendar.base import (AppointmentRecord, CalendarProvider, FreeSlot, ResourceInfo,
                                      SlotQuery)
from core.tools.calendar.slots import free_slots, label_ru, slot_starting_at
from models.base import database, utcnow
from models.calendar import Appointment, AppointmentStatus, CalendarResource
from models.saas import Project

_ALTERNATIVES = 3


def _uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


class BuiltinCalendar(CalendarProvider):
    name = "builtin"

    def __init__(self, project_id: uuid.UUID, project_timezone: str | None = None) -> None:
        self.project_id = project_id
        self._tz = project_timezone or Project.get_by_id(project_id).timezone

    @property
    def timezone(self) -> str:
        return self._tz

    # -- resources ----------------------------------------------------------------------------
    def _schedule(self, r: CalendarResource) -> Schedule:
        return parse_schedule(r.working_hours_json or {}, self._tz)

    def _info(self, r: CalendarResource) -> ResourceInfo:
        return ResourceInfo(id=str(r.id), name=r.name, kind=r.kind, description=r.description,
                            slot_minutes=r.slot_minutes, timezone=self._schedule(r).timezone)

    def _enabled(self, resource_id: str | None = None, lock: bool = False) -> list[CalendarResource]:
        q = CalendarResource.for_project(self.project_id).where(CalendarResource.enabled == True)  # noqa: E712
        if resource_id is not None:
            rid = _uuid(resource_id)
            if rid is None:
                raise ToolError("NOT_FOUND", "Специалист или ресурс для записи не найден",
                                {"resource_id": resource_id})
            q = q.where(CalendarResource.id == rid)
        q = q.order_by(CalendarResource.name, CalendarResource.id)
        rows = list(q.for_update() if lock else q)
        if resource_id is not None and not rows:
            raise ToolError("NOT_FOUND", "Специалист или ресурс для записи не найден", {"resource_id": resource_id})
        if not rows:
            raise ToolError("NOT_FOUND", "В календаре нет ни одного специалиста или ресурса для записи")
        return rows

    def timezone_for(self, resource_id: str | None) -> str:
        if resource_id is None:
            return self._tz
        return self._schedule(self._enabled(resource_id)[0]).timezone

    def resources(self) -> list[ResourceInfo]:
        try:
            return [self._info(r) for r in self._enabled()]
        except ToolError:
            return []

    # -- slots --------------------------------------------------------------------------------
    def _busy(self, resource_id: uuid.UUID, start: dt.datetime, end: dt.datetime,
              exclude: uuid.UUID | None = None) -> list[tuple[dt.datetime, dt.datetime]]:
        q = Appointment.select(Appointment.starts_at, Appointment.ends_at).where(
            (Appointment.project == self.project_id) & (Appointment.resource == resource_id)
            & (Appointment.status == AppointmentStatus.BOOKED.value)
            & (Appointment.starts_at < end) & (Appointment.ends_at > start))
        if exclude is not None:
            q = q.where(Appointment.id != exclude)
        return [(a.starts_at, a.ends_at) for a in q]

    def _resource_slots(self, r: CalendarResource, date_from: dt.date, date_to: dt.date, now: dt.datetime,
                        time_from: int | None = None, time_to: int | None = None, limit: int | None = None,
                        exclude: uuid.UUID | None = None) -> list[FreeSlot]:
        schedule = self._schedule(r)
        tz = schedule.tz
        span_start = dt.datetime.combine(date_from, dt.time(0), tzinfo=tz) - dt.timedelta(days=1)
        span_end = dt.datetime.combine(date_to, dt.time(0), tzinfo=tz) + dt.timedelta(days=2)
        busy = self._busy(r.id, span_start, span_end, exclude)
        slots = free_slots(schedule, r.slot_minutes, busy, date_from, date_to, now,
                           min_notice_minutes=r.min_notice_minutes, time_from=time_from, time_to=time_to,
                           limit=limit)
        return [FreeSlot(str(r.id), r.name, s.start, s.end) for s in slots]

    def free_slots(self, query: SlotQuery, now: dt.datetime) -> list[FreeSlot]:
        out: list[FreeSlot] = []
        for r in self._enabled(query.resource_id):
            out.extend(self._resource_slots(r, query.date_from, query.date_to, now, query.time_from,
                                            query.time_to, query.limit))
        out.sort(key=lambda s: (s.start, s.resource_name))
        return out[:query.limit]

    def _alternatives(self, resources: Iterable[CalendarResource], wanted: dt.datetime, now: dt.datetime,
                      exclude: uuid.UUID | None = None) -> list[dict]:
        """The free slots nearest to what the caller wanted (a week either side), in time order."""
        cands: list[FreeSlot] = []
        zones = {}
        for r in resources:
            tz = zones[str(r.id)] = self._schedule(r).tz
            day = wanted.astimezone(tz).date()
            cands.extend(self._resource_slots(r, day - dt.timedelta(days=7), day + dt.timedelta(days=7), now,
                                              exclude=exclude))
        cands.sort(key=lambda s: (abs((s.start - wanted).total_seconds()), s.start))
        best = sorted(cands[:_ALTERNATIVES], key=lambda s: s.start)
        return [{"resource_id": s.resource_id, "resource_name": s.resource_name,
                 "start": s.start.astimezone(zones[s.resource_id]).isoformat(),
                 "label": label_ru(s.start, zones[s.resource_id])} for s in best]

    def _refuse(self, resources: list[CalendarResource], start: dt.datetime, now: dt.datetime,
                exclude: uuid.UUID | None = None) -> ToolError:
        """Why the slot cannot be booked, with the nearest free alternatives."""
        alternatives = self._alternatives(resources, start, now, exclude)
        data = {"requested_start": start.isoformat(), "alternatives": alternatives}
        if start <= now:
            return ToolError("VALIDATION_FAILED", "Это время уже прошло, выберите другое", data)
        for r in resources:
            schedule = self._schedule(r)
            step = dt.timedelta(minutes=r.slot_minutes)
            if self._busy(r.id, start, start + step, exclude) and \
                    slot_starting_at(schedule, r.slot_minutes, [], start, now,
                                     min_notice_minutes=r.min_notice_minutes) is not None:
                return ToolError("CONFLICT", "Это время уже занято", data)
        return ToolError("VALIDATION_FAILED", "В это время запись не ведётся", data)

    def _take(self, resources: list[CalendarResource], start: dt.datetime, now: dt.datetime,
              exclude: uuid.UUID | None = None) -> tuple[CalendarResource, dt.datetime]:
        """The first (locked) resource free at ``start`` and the slot's end; else a ToolError."""
        for r in resources:
            schedule = self._schedule(r)
            step = dt.timedelta(minutes=r.slot_minutes)
            busy = self._busy(r.id, start - dt.timedelta(days=1), start + step + dt.timedelta(days=1), exclude)
            slot = slot_starting_at(schedule, r.slot_minutes, busy, start, now,
                                    min_notice_minutes=r.min_notice_minutes)
            if slot is not None:
                return r, slot.end
        raise self._refuse(resources, start, now, exclude)

    # -- appointments -------------------------------------------------------------------------
    def _record(self, a: Appointment, resource_name: str | None = None) -> AppointmentRecord:
        if resource_name is None:
            resource_name = CalendarResource.get_by_id(a.resource_id).name
        return AppointmentRecord(id=str(a.id), resource_id=str(a.resource_id), resource_name=resource_name,
                                 start=a.starts_at, end=a.ends_at, status=a.status, client_name=a.client_name,
                                 phone=a.phone_e164, contact_id=str(a.contact_id) if a.contact_id else None)

    def book(self, ctx: ToolContext, resource_id: str | None, start: dt.datetime, client_name: str,
             phone_e164: str | None, contact_id: str | None, comment: str, now: dt.datetime
             ) -> AppointmentRecord:
        with database.atomic():
            resources = self._enabled(resource_id, lock=True)
            resource, end = self._take(resources, start, now)
            try:
                with database.atomic():
                    row = Appointment.create(
                        project=self.project_id, resource=resource.id, contact=_uuid(contact_id),
                        client_name=client_name or "", phone_e164=phone_e164, starts_at=start, ends_at=end,
                        status=AppointmentStatus.BOOKED.value, comment=comment or "", call=ctx.call_id,
                        trace_id=ctx.trace_id)
            except pw.IntegrityError:
                raise self._refuse(resources, start, now) from None
            return self._record(row, resource.name)

    def find_appointments(self, phone_e164: str, now: dt.datetime) -> list[AppointmentRecord]:
        q = (Appointment.select(Appointment, CalendarResource)
             .join(CalendarResource, on=(Appointment.resource == CalendarResource.id))
             .where((Appointment.project == self.project_id) & (Appointment.phone_e164 == phone_e164)
                    & (Appointment.status == AppointmentStatus.BOOKED.value) & (Appointment.ends_at > now))
             .order_by(Appointment.starts_at).limit(20))
        return [self._record(a, a.resource.name) for a in q]

    def _locked_appointment(self, appointment_id: str, owner_phone: str | None) -> Appointment:
        aid = _uuid(appointment_id)
        row = None
        if aid is not None:
            row = Appointment.for_project(self.project_id).where(Appointment.id == aid).for_update().first()
        if row is None or (owner_phone and row.phone_e164 and row.phone_e164 != owner_phone):
            # Another caller's appointment is "not found" too: a caller manages only their own.
            raise ToolError("NOT_FOUND", "Запись не найдена", {"appointment_id": appointment_id})
        if row.status != AppointmentStatus.BOOKED.value:
            raise ToolError("CONFLICT", "Эта запись уже отменена", {"appointment_id": appointment_id})
        return row

    def reschedule(self, ctx: ToolContext, appointment_id: str, new_start: dt.datetime,
                   resource_id: str | None, now: dt.datetime, owner_phone: str | None = None
                   ) -> AppointmentRecord:
        with database.atomic():
            appt = self._locked_appointment(appointment_id, owner_phone)
            if appt.ends_at <= now:
                raise ToolError("VALIDATION_FAILED", "Эта запись уже прошла, перенести её нельзя")
            resources = self._enabled(resource_id or str(appt.resource_id), lock=True)
            resource, end = self._take(resources, new_start, now, exclude=appt.id)
            history = list(appt.history_json or [])
            history.append({"from": appt.starts_at.isoformat(), "to": new_start.isoformat(),
                            "resource_id": str(appt.resource_id), "at": now.isoformat(),
                            "trace_id": ctx.trace_id})
            try:
                with database.atomic():
                    Appointment.update(resource=resource.id, starts_at=new_start, ends_at=end,
                                       history_json=history, updated_at=utcnow()).where(
                        Appointment.id == appt.id).execute()
            except pw.IntegrityError:
                raise self._refuse(resources, new_start, now, exclude=appt.id) from None
            return self._record(Appointment.get_by_id(appt.id), resource.name)

    def cancel(self, ctx: ToolContext, appointment_id: str, reason: str, now: dt.datetime,
               owner_phone: str | None = None) -> AppointmentRecord:
        with database.atomic():
            appt = self._locked_appointment(appointment_id, owner_phone)
            if appt.ends_at <= now:
                raise ToolError("VALIDATION_FAILED", "Эта запись уже прошла, отменить её нельзя")
            appt.status = AppointmentStatus.CANCELLED.value
            appt.cancelled_at = now
            appt.cancel_reason = reason or ""
            appt.save()
            return self._record(appt)
