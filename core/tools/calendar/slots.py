"""Pure slot arithmetic of the calendar: working hours + bookings + "now" -> free slots.

No I/O here: providers load the resource and its bookings, this module decides. Working hours are a
``core.telephony.schedule`` schedule read as wall-clock time in its timezone; slots of
``slot_minutes`` are laid out from the start of each working window (a window of 09:00-13:00 with
30-minute slots gives 09:00, 09:30, ... 12:30), never cross the window's end, never start in the
past or sooner than the notice, and never overlap a booking.

Russian zones have no DST; for zones that do, local times are built per day with ``zoneinfo`` and
compared in UTC, so a DST change shifts slots in UTC but not on the wall clock.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Iterable
from zoneinfo import ZoneInfo

from core.telephony.schedule import Schedule

__all__ = ["Slot", "free_slots", "slot_starting_at", "parse_local_datetime", "parse_local_date",
           "parse_hhmm", "label_ru", "MAX_RANGE_DAYS"]

MAX_RANGE_DAYS = 62

_WEEKDAYS_RU = ("понедельник", "вторник", "среда", "четверг", "пятница", "суббота", "воскресенье")
_MONTHS_GEN_RU = ("января", "февраля", "марта", "апреля", "мая", "июня", "июля", "августа",
                  "сентября", "октября", "ноября", "декабря")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True, order=True)
class Slot:
    """A bookable interval in UTC."""

    start: datetime
    end: datetime


def _local(day: date, minute: int, tz: ZoneInfo) -> datetime:
    """Wall-clock ``minute`` (0..1440) of ``day`` in ``tz``, as an aware UTC datetime."""
    return (datetime.combine(day, time(0, 0), tzinfo=tz) + timedelta(minutes=minute)).astimezone(timezone.utc)


def _windows_of_day(schedule: Schedule, day: date) -> list[tuple[datetime, datetime]]:
    """Working intervals (UTC) that start on local ``day``."""
    tz = schedule.tz
    if day in schedule.holidays:
        return []
    if schedule.always_open:
        return [(_local(day, 0, tz), _local(day, 24 * 60, tz))]
    out = []
    for w in schedule.windows:
        if day.isoweekday() not in w.days:
            continue
        start = _local(day, w.start_min, tz)
        end = _local(day + timedelta(days=1), w.end_min, tz) if w.wraps else _local(day, w.end_min, tz)
        out.append((start, end))
    return sorted(out)


def _overlaps(a_start: datetime, a_end: datetime, busy: list[tuple[datetime, datetime]]) -> bool:
    return any(b_start < a_end and a_start < b_end for b_start, b_end in busy)


def free_slots(schedule: Schedule, slot_minutes: int, busy: Iterable[tuple[datetime, datetime]],
               date_from: date, date_to: date, now: datetime, *, min_notice_minutes: int = 0,
               time_from: int | None = None, time_to: int | None = None,
               limit: int | None = None) -> list[Slot]:
    """Free slots whose local start date is within [date_from, date_to], in time order.

    ``busy``: aware (start, end) of existing bookings. ``time_from``/``time_to``: minutes since
    local midnight narrowing the start time (a caller who wants "after six").
    """
    if slot_minutes <= 0:
        raise ValueError("slot_minutes must be positive")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    busy_list = sorted((s.astimezone(timezone.utc), e.astimezone(timezone.utc)) for s, e in busy)
    earliest = now.astimezone(timezone.utc) + timedelta(minutes=max(0, min_notice_minutes))
    step = timedelta(minutes=slot_minutes)
    seen: set[datetime] = set()
    out: list[Slot] = []
    day = date_from
    while day <= date_to:
        for win_start, win_end in _windows_of_day(schedule, day):
            s_utc = win_start
            while s_utc + step <= win_end:
                e_utc = s_utc + step
                local_start = s_utc.astimezone(schedule.tz)
                minute = local_start.hour * 60 + local_start.minute
                if (s_utc >= earliest and s_utc not in seen
                        and (time_from is None or minute >= time_from)
                        and (time_to is None or minute < time_to)
                        and local_start.date() not in schedule.holidays
                        and not _overlaps(s_utc, e_utc, busy_list)):
                    seen.add(s_utc)
                    out.append(Slot(s_utc, e_utc))
                s_utc = e_utc
        day += timedelta(days=1)
    out.sort()
    return out[:limit] if limit is not None else out


def slot_starting_at(schedule: Schedule, slot_minutes: int, busy: Iterable[tuple[datetime, datetime]],
                     start: datetime, now: datetime, *, min_notice_minutes: int = 0) -> Slot | None:
    """The free slot that starts exactly at ``start``, or None (off-grid, closed, past or taken)."""
    local_day = start.astimezone(schedule.tz).date()
    # A window that wraps past midnight starts the day before.
    for slot in free_slots(schedule, slot_minutes, busy, local_day - timedelta(days=1), local_day, now,
                           min_notice_minutes=min_notice_minutes):
        if slot.start == start.astimezone(timezone.utc):
            return slot
    return None


def parse_local_date(text: str) -> date:
    """``YYYY-MM-DD`` -> date; ValueError with a Russian message otherwise."""
    try:
        return date.fromisoformat(text.strip())
    except (ValueError, AttributeError):
        raise ValueError(f"Дата «{text}» не распознана: ожидается ГГГГ-ММ-ДД, например 2026-03-10") from None


def parse_hhmm(text: str) -> int:
    """``HH:MM`` -> minutes since midnight."""
    m = _HHMM.match((text or "").strip())
    if not m:
        raise ValueError(f"Время «{text}» не распознано: ожидается ЧЧ:ММ, например 14:30")
    return int(m.group(1)) * 60 + int(m.group(2))


def parse_local_datetime(text: str, tz: ZoneInfo) -> datetime:
    """An ISO date-time from the LLM: with an offset it is taken as is, without one it is wall-clock
    time in ``tz`` (what a caller means by "в 14:00"). Returns an aware datetime in UTC."""
    raw = (text or "").strip().replace(" ", "T", 1)
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"Дата и время «{text}» не распознаны: ожидается ГГГГ-ММ-ДДTЧЧ:ММ, "
                         "например 2026-03-10T14:30") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return value.astimezone(timezone.utc)


def label_ru(start: datetime, tz: ZoneInfo) -> str:
    """How the agent says a slot: «вторник, 10 марта, 14:30»."""
    local = start.astimezone(tz)
    return (f"{_WEEKDAYS_RU[local.weekday()]}, {local.day} {_MONTHS_GEN_RU[local.month - 1]}, "
            f"{local.hour:02d}:{local.minute:02d}")
