"""The calendar provider interface the booking tools speak (built-in now, Google Calendar later).

Times cross this interface as aware UTC datetimes; the provider says which time zone its
calendar lives in (``timezone``), and the tools use it to read what the caller said ("в 14:00") and
to say slots back. Expected failures are ``ToolError`` (``CONFLICT`` for a taken slot with
alternatives in ``data``, ``NOT_FOUND``, ``VALIDATION_FAILED``).
"""
from __future__ import annotations

import datetime as dt
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass

from core.tools.base import ToolContext


@dataclass(frozen=True)
class ResourceInfo:
    id: str
    name: str
    kind: str
    description: str
    slot_minutes: int
    timezone: str


@dataclass(frozen=True)
class FreeSlot:
    resource_id: str
    resource_name: str
    start: dt.datetime  # UTC
    end: dt.datetime


@dataclass(frozen=True)
class AppointmentRecord:
    id: str
    resource_id: str
    resource_name: str
    start: dt.datetime
    end: dt.datetime
    status: str
    client_name: str
    phone: str | None
    contact_id: str | None


@dataclass(frozen=True)
class SlotQuery:
    """What free slots the caller asks for; dates and times are the calendar's local ones."""

    date_from: dt.date
    date_to: dt.date
    resource_id: str | None = None
    time_from: int | None = None   # minutes since local midnight
    time_to: int | None = None
    limit: int = 10


class CalendarProvider(ABC):
    name: str = ""
    integration_id: uuid.UUID | None = None

    @property
    @abstractmethod
    def timezone(self) -> str:
        """IANA zone the calendar's wall-clock times are in (the project's, unless overridden)."""

    def timezone_for(self, resource_id: str | None) -> str:
        """The zone of one resource's wall clock (a branch in another city may differ)."""
        return self.timezone

    @abstractmethod
    def resources(self) -> list[ResourceInfo]:
        """Bookable resources (enabled only)."""

    @abstractmethod
    def free_slots(self, query: SlotQuery, now: dt.datetime) -> list[FreeSlot]:
        """Free slots across the query's resources, earliest first."""

    @abstractmethod
    def book(self, ctx: ToolContext, resource_id: str | None, start: dt.datetime, client_name: str,
             phone_e164: str | None, contact_id: str | None, comment: str, now: dt.datetime
             ) -> AppointmentRecord:
        """Book the slot starting at ``start``; CONFLICT when taken, never a double booking."""

    @abstractmethod
    def find_appointments(self, phone_e164: str, now: dt.datetime) -> list[AppointmentRecord]:
        """Upcoming booked appointments of this phone."""

    @abstractmethod
    def reschedule(self, ctx: ToolContext, appointment_id: str, new_start: dt.datetime,
                   resource_id: str | None, now: dt.datetime, owner_phone: str | None = None
                   ) -> AppointmentRecord:
        """Move a booked appointment to a free slot (same resource unless another is given)."""

    @abstractmethod
    def cancel(self, ctx: ToolContext, appointment_id: str, reason: str, now: dt.datetime,
               owner_phone: str | None = None) -> AppointmentRecord:
        """Cancel a booked appointment. ``owner_phone``: when set, only that phone's appointments."""
