"""When a contact may be called: the campaign's windows in the callee's local time, its start and
end dates, and the legal hours of the campaign's purpose.

``schedule_json`` of a campaign is the working-hours format of ``core.telephony.schedule`` (days
and hours windows, holidays) plus ``start_date``/``end_date`` (``YYYY-MM-DD``, the callee's local
dates, inclusive). Its ``timezone`` is ignored: windows are evaluated in each contact's zone.
Without windows a campaign calls 09:00-21:00 every day.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Any
from zoneinfo import ZoneInfo

from core.campaigns import compliance
from core.telephony.schedule import next_open, validate_schedule

DEFAULT_WINDOWS = [{"days": [1, 2, 3, 4, 5, 6, 7], "from": "09:00", "to": "21:00"}]
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _hours_part(obj: dict[str, Any], tz: str) -> dict[str, Any]:
    part = {k: v for k, v in obj.items() if k in ("windows", "holidays", "always_open")}
    if not part.get("windows") and not part.get("always_open"):
        part["windows"] = DEFAULT_WINDOWS
    part["timezone"] = tz
    return part


def validate_campaign_schedule(obj: Any, prefix: str = "schedule_json") -> dict[str, str]:
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        return {prefix: "Ожидается объект: окна, праздники, даты начала и окончания"}
    errors: dict[str, str] = {}
    dates: dict[str, dt.date] = {}
    for key in ("start_date", "end_date"):
        value = obj.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not _DATE.match(value):
            errors[f"{prefix}.{key}"] = "Дата в формате ГГГГ-ММ-ДД"
            continue
        try:
            dates[key] = dt.date.fromisoformat(value)
        except ValueError:
            errors[f"{prefix}.{key}"] = "Такой даты нет"
    if len(dates) == 2 and dates["end_date"] < dates["start_date"]:
        errors[f"{prefix}.end_date"] = "Дата окончания раньше даты начала"
    rest = {k: v for k, v in obj.items() if k not in ("start_date", "end_date", "timezone")}
    if rest.get("windows") == []:
        rest.pop("windows")
    if rest:
        errors.update(validate_schedule({**_hours_part(rest, "Europe/Moscow")}, prefix))
    return errors


def _holidays(obj: dict[str, Any]) -> list[dt.date]:
    return [dt.date.fromisoformat(d) for d in obj.get("holidays") or []]


def next_call_time(schedule_json: dict[str, Any] | None, purpose: str, tz: str,
                   now: dt.datetime) -> dt.datetime | None:
    """The first moment at or after ``now`` when this contact may be called; None: never again
    (the campaign's end date passed)."""
    obj = dict(schedule_json or {})
    zone = ZoneInfo(tz)
    hours = _hours_part(obj, tz)
    extra = _holidays(obj)
    start = dt.date.fromisoformat(obj["start_date"]) if obj.get("start_date") else None
    end = dt.date.fromisoformat(obj["end_date"]) if obj.get("end_date") else None
    t = now.astimezone(zone)
    if start and t.date() < start:
        t = dt.datetime.combine(start, dt.time(0, 0), zone)
    for _ in range(64):  # each step moves forward to the next opening of one constraint
        if end and t.date() > end:
            return None
        opened = next_open(hours, t, tz)
        if opened is None:
            return None
        legal = compliance.next_legal_time(purpose, opened, tz, extra)
        if legal == opened:
            if end and legal.astimezone(zone).date() > end:
                return None
            return legal.astimezone(zone)
        t = legal
    return None


def callable_now(schedule_json: dict[str, Any] | None, purpose: str, tz: str, now: dt.datetime) -> bool:
    nxt = next_call_time(schedule_json, purpose, tz, now)
    return nxt is not None and nxt <= now
