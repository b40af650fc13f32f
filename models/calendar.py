"""Built-in calendar (integration provider ``builtin``): bookable resources and appointments.

A resource is whoever or whatever a caller books: a doctor, a master, a room. Its working hours are a
``schedule_json`` in the same format as phone numbers and campaigns (``core.telephony.schedule``),
read as wall-clock times in the schedule's ``timezone`` or else the project's. Slots are
``slot_minutes`` long, laid out from the start of each working window.

Appointments store UTC ``timestamptz``; a partial unique index on (resource, starts_at) of booked
rows makes a double booking of the same slot impossible at the database level, and booking takes a
row lock on the resource so overlapping (not just identical) slots are refused as well.
"""
from __future__ import annotations

import enum

import peewee as pw

from models.base import JsonField, TimestampField
from models.calls import Call
from models.crm import CrmContact
from models.saas import ProjectScoped


class ResourceKind(str, enum.Enum):
    SPECIALIST = "specialist"  # a doctor, a master, a consultant
    ROOM = "room"
    EQUIPMENT = "equipment"
    OTHER = "other"


class AppointmentStatus(str, enum.Enum):
    BOOKED = "booked"
    CANCELLED = "cancelled"


class CalendarResource(ProjectScoped):
    name = pw.CharField(max_length=200)
    kind = pw.CharField(max_length=16, default=ResourceKind.SPECIALIST.value)
    description = pw.TextField(default="")  # what the agent may say about it ("терапевт, 1 этаж")
    working_hours_json = JsonField(index=False)  # core.telephony.schedule format; {} = around the clock
    slot_minutes = pw.IntegerField(default=30)
    min_notice_minutes = pw.IntegerField(default=0)  # no slot starts sooner than this from now
    enabled = pw.BooleanField(default=True)
    external_ids_json = JsonField()

    class Meta:
        table_name = "calendar_resources"
        indexes = ((("project", "name"), True),)


class Appointment(ProjectScoped):
    resource = pw.ForeignKeyField(CalendarResource, on_delete="CASCADE", backref="appointments",
                                  index=False)
    contact = pw.ForeignKeyField(CrmContact, null=True, on_delete="SET NULL",
                                 backref="appointments", index=True)
    client_name = pw.CharField(max_length=300, default="")
    phone_e164 = pw.CharField(max_length=20, null=True)
    starts_at = TimestampField()
    ends_at = TimestampField()
    status = pw.CharField(max_length=10, default=AppointmentStatus.BOOKED.value)
    comment = pw.TextField(default="")
    call = pw.ForeignKeyField(Call, null=True, on_delete="SET NULL", backref="appointments",
                              index=True)  # call that booked it
    trace_id = pw.CharField(max_length=64, null=True)
    cancelled_at = TimestampField(null=True)
    cancel_reason = pw.TextField(null=True)
    # reschedules: [{"from": iso, "to": iso, "resource_id", "at": iso, "trace_id"}]
    history_json = JsonField(default=list, index=False)
    external_ids_json = JsonField()

    class Meta:
        table_name = "calendar_appointments"
        indexes = (
            (("resource", "starts_at"), False),
            (("project", "starts_at"), False),
            (("project", "phone_e164"), False),
        )
        constraints = [pw.SQL('CHECK ("ends_at" > "starts_at")')]


# One booked appointment per resource and start (the database-level guard against double booking).
Appointment.add_index(Appointment.index(Appointment.resource, Appointment.starts_at, unique=True,
                                        where=pw.SQL("status = 'booked'"),
                                        name="calendar_appointments_booked_slot"))


__all__ = ["ResourceKind", "AppointmentStatus", "CalendarResource", "Appointment"]
