"""Working hours (``schedule_json`` of phone numbers, operator routes and campaigns).

Format (stored as JSON; the same shape everywhere)::

    {
      "timezone": "Europe/Moscow",
      "windows": [
        {"days": [1, 2, 3, 4, 5], "from": "09:00", "to": "18:00"},
        {"days": [6], "from": "10:00", "to": "14:00"}
      ],
      "holidays": ["2026-01-01", "2026-01-02"],
      "always_open": false
    }

- ``timezone``: IANA name; optional, defaults to the number's / project's timezone (the caller
  passes it as ``default_timezone``). Times are wall-clock times in that zone.
- ``windows``: when the line is open. ``days`` are ISO weekdays (1 = Monday ... 7 = Sunday);
  ``from``/``to`` are ``HH:MM``, ``from`` inclusive, ``to`` exclusive, ``"24:00"`` allowed as an end.
  A window whose ``to`` is earlier than ``from`` wraps past midnight: ``{"days": [5], "from":
  "22:00", "to": "02:00"}`` is Friday 22:00 to Saturday 02:00. Windows may overlap.
- ``holidays``: local dates (``YYYY-MM-DD``) closed all day, including the after-midnight part of a
  window that started the evening before.
- ``always_open``: true means open around the clock; windows and holidays are then ignored.
- An empty object (or ``null``) means always open. Otherwise at least one window is required.

The same rules run in two places: here (``is_open``/``next_open`` for the app, campaigns, the
cabinet) and inside FreeSWITCH, which routes an inbound call before the app sees it. ``fs_conditions``
and ``fs_holiday_conditions`` translate a schedule into dialplan time conditions that FreeSWITCH
evaluates in the channel's ``timezone`` variable (set inline by the rendered dialplan; the zone
must exist in FreeSWITCH's ``autoload_configs/timezones.conf.xml``). FreeSWITCH semantics, checked
against ``switch_utils.c``: ``wday`` is 1 = Sunday ... 7 = Saturday and accepts ``2-6`` and ``1,6-7``
but no wrapping range; ``time-of-day`` is one ``HH:MM-HH:MM`` range, end exclusive, no wrapping;
``year``/``mon``/``mday`` take one number, one range or a comma list (never mixed).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

__all__ = ["Schedule", "Window", "ScheduleError", "validate_schedule", "parse_schedule",
           "is_open", "next_open", "fs_conditions", "fs_holiday_conditions", "fs_wday",
           "DEFAULT_TIMEZONE", "MAX_WINDOWS", "MAX_HOLIDAYS"]

DEFAULT_TIMEZONE = "Europe/Moscow"
MAX_WINDOWS = 50
MAX_HOLIDAYS = 400

_TIME_RE = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_KEYS = {"timezone", "windows", "holidays", "always_open"}
_WINDOW_KEYS = {"days", "from", "to"}
_TIMEZONES: frozenset[str] | None = None


class ScheduleError(ValueError):
    """An invalid schedule; ``fields`` maps a dotted path to a Russian message (as the API shows)."""

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = dict(fields)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.fields.items()))


@dataclass(frozen=True)
class Window:
    """One open interval: ISO weekdays it starts on, start and end in minutes since midnight.

    ``end_min`` < ``start_min`` means the window wraps past midnight into the next day.
    """

    days: frozenset[int]
    start_min: int
    end_min: int

    @property
    def wraps(self) -> bool:
        return self.end_min < self.start_min


@dataclass(frozen=True)
class Schedule:
    """A validated schedule with its timezone resolved."""

    timezone: str
    windows: tuple[Window, ...] = ()
    holidays: frozenset[date] = frozenset()
    always_open: bool = False

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def _known_timezone(name: str) -> bool:
    global _TIMEZONES
    if _TIMEZONES is None:
        _TIMEZONES = frozenset(available_timezones())
    return name in _TIMEZONES


def _minutes(text: str) -> int:
    m = _TIME_RE.match(text)
    assert m is not None
    return int(m.group(1)) * 60 + int(m.group(2))


def _join(prefix: str, path: str) -> str:
    return f"{prefix}.{path}" if prefix and path else (prefix or path)


def _is_empty(obj: Any) -> bool:
    return obj is None or (isinstance(obj, Mapping) and len(obj) == 0)


def validate_schedule(obj: Any, prefix: str = "") -> dict[str, str]:
    """Field errors of a ``schedule_json`` value: ``{"windows.0.to": "…"}``; empty when valid.

    ``prefix`` is prepended to every path (``schedule_json.windows.0.to``) so the API can pass the
    result straight into ``ValidationFailed``.
    """
    errors: dict[str, str] = {}

    def err(path: str, message: str) -> None:
        errors.setdefault(_join(prefix, path), message)

    if _is_empty(obj):
        return {}
    if not isinstance(obj, Mapping):
        err("", "Расписание должно быть объектом")
        if not prefix:
            errors = {"schedule": errors.pop("")}
        return errors
    for key in obj:
        if key not in _KEYS:
            err(str(key), "Неизвестное поле расписания")

    tz = obj.get("timezone")
    if tz is not None:
        if not isinstance(tz, str) or not tz:
            err("timezone", "Ожидается название часового пояса (пример: Europe/Moscow)")
        elif not _known_timezone(tz):
            err("timezone", "Неизвестный часовой пояс (пример: Europe/Moscow)")

    always_open = obj.get("always_open", False)
    if not isinstance(always_open, bool):
        err("always_open", "Ожидается true или false")
        always_open = False

    windows = obj.get("windows")
    if windows is None:
        if not always_open:
            err("windows", "Добавьте хотя бы один интервал работы или включите «Круглосуточно»")
    elif not isinstance(windows, list):
        err("windows", "Ожидается список интервалов")
    else:
        if not windows and not always_open:
            err("windows", "Добавьте хотя бы один интервал работы или включите «Круглосуточно»")
        if len(windows) > MAX_WINDOWS:
            err("windows", f"Не больше {MAX_WINDOWS} интервалов")
        for i, win in enumerate(windows[:MAX_WINDOWS]):
            _validate_window(win, f"windows.{i}", err)

    holidays = obj.get("holidays")
    if holidays is not None:
        if not isinstance(holidays, list):
            err("holidays", "Ожидается список дат в формате ГГГГ-ММ-ДД")
        elif len(holidays) > MAX_HOLIDAYS:
            err("holidays", f"Не больше {MAX_HOLIDAYS} праздничных дат")
        else:
            for i, day in enumerate(holidays):
                if not isinstance(day, str) or not _DATE_RE.match(day):
                    err(f"holidays.{i}", "Ожидается дата в формате ГГГГ-ММ-ДД (пример: 2026-01-01)")
                    continue
                try:
                    date.fromisoformat(day)
                except ValueError:
                    err(f"holidays.{i}", "Такой даты нет в календаре")
    return errors


def _validate_window(win: Any, path: str, err: Any) -> None:
    if not isinstance(win, Mapping):
        err(path, "Интервал должен быть объектом с полями days, from, to")
        return
    for key in win:
        if key not in _WINDOW_KEYS:
            err(f"{path}.{key}", "Неизвестное поле интервала")
    days = win.get("days")
    if days is None:
        err(f"{path}.days", "Укажите дни недели")
    elif not isinstance(days, list) or not days:
        err(f"{path}.days", "Укажите хотя бы один день недели (1 — понедельник … 7 — воскресенье)")
    else:
        seen: set[int] = set()
        for j, day in enumerate(days):
            if isinstance(day, bool) or not isinstance(day, int) or not 1 <= day <= 7:
                err(f"{path}.days.{j}", "День недели — число от 1 (понедельник) до 7 (воскресенье)")
            elif day in seen:
                err(f"{path}.days.{j}", "День недели указан дважды")
            else:
                seen.add(day)
    times: dict[str, int] = {}
    for key, label in (("from", "начала"), ("to", "окончания")):
        value = win.get(key)
        if value is None:
            err(f"{path}.{key}", f"Укажите время {label} в формате ЧЧ:ММ")
        elif not isinstance(value, str) or not _TIME_RE.match(value):
            err(f"{path}.{key}", "Ожидается время в формате ЧЧ:ММ (пример: 09:00)")
        else:
            minutes = _minutes(value)
            if minutes > 24 * 60:
                err(f"{path}.{key}", "Ожидается время в формате ЧЧ:ММ (пример: 09:00)")
            elif key == "from" and minutes == 24 * 60:
                err(f"{path}.{key}", "Время начала — не позже 23:59")
            else:
                times[key] = minutes
    if len(times) == 2:
        if times["from"] == times["to"]:
            err(f"{path}.to", "Время окончания совпадает со временем начала")


def parse_schedule(obj: Any, default_timezone: str = DEFAULT_TIMEZONE) -> Schedule:
    """Validate and convert ``schedule_json`` into a :class:`Schedule`; raise :class:`ScheduleError`.

    ``None``/``{}`` give an always-open schedule in ``default_timezone``.
    """
    if isinstance(obj, Schedule):
        return obj
    errors = validate_schedule(obj)
    if errors:
        raise ScheduleError(errors)
    if _is_empty(obj):
        return Schedule(timezone=default_timezone, always_open=True)
    tz_name = obj.get("timezone") or default_timezone
    try:
        ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError({"timezone": "Неизвестный часовой пояс (пример: Europe/Moscow)"}) from None
    windows = tuple(Window(frozenset(w["days"]), _minutes(w["from"]), _minutes(w["to"]))
                    for w in obj.get("windows") or [])
    holidays = frozenset(date.fromisoformat(d) for d in obj.get("holidays") or [])
    return Schedule(timezone=tz_name, windows=windows, holidays=holidays,
                    always_open=bool(obj.get("always_open", False)))


def _require_aware(at: datetime) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("datetime must be timezone-aware (e.g. datetime.now(timezone.utc))")


def _open_local(s: Schedule, local: datetime) -> bool:
    if local.date() in s.holidays:
        return False
    weekday = local.isoweekday()
    yesterday = 7 if weekday == 1 else weekday - 1
    sec = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
    for w in s.windows:
        start, end = w.start_min * 60, w.end_min * 60
        if not w.wraps:
            if weekday in w.days and start <= sec < end:
                return True
        else:
            if weekday in w.days and sec >= start:
                return True
            if yesterday in w.days and sec < end:
                return True
    return False


def is_open(schedule: Any, at: datetime, default_timezone: str = DEFAULT_TIMEZONE) -> bool:
    """Whether the line is open at the aware datetime ``at``, judged in the schedule's timezone."""
    _require_aware(at)
    s = parse_schedule(schedule, default_timezone)
    if s.always_open:
        return True
    return _open_local(s, at.astimezone(s.tz))


def next_open(schedule: Any, at: datetime,
              default_timezone: str = DEFAULT_TIMEZONE) -> datetime | None:
    """The first moment at or after ``at`` when the line is open (``at`` itself if open now).

    Returned in the schedule's timezone. None only when the schedule can never open. Used to tell
    a caller when to call back and to postpone campaign calls.
    """
    _require_aware(at)
    s = parse_schedule(schedule, default_timezone)
    tz = s.tz
    local = at.astimezone(tz)
    if s.always_open or _open_local(s, local):
        return local
    if not s.windows:
        return None
    # Openings can only happen at a window start or at midnight (the after-midnight part of a
    # wrapping window that started on a holiday). Every closed stretch ends within
    # len(holidays) + 8 days, so that horizon is enough.
    horizon = len(s.holidays) + 9
    day0 = local.date()
    for offset in range(horizon):
        day = day0 + timedelta(days=offset)
        starts = {0} | {w.start_min for w in s.windows if day.isoweekday() in w.days}
        for minute in sorted(starts):
            naive = datetime.combine(day, time(minute // 60, minute % 60))
            candidate = naive.replace(tzinfo=tz)
            # A wall time in a DST gap does not exist; zoneinfo resolves it, re-check on the result.
            candidate = candidate.astimezone(tz)
            if candidate <= local:
                continue
            if _open_local(s, candidate):
                return candidate
    return None


def fs_wday(iso_days: Any) -> str:
    """ISO weekdays (1 = Monday) as a FreeSWITCH ``wday`` value (1 = Sunday): {1..5} -> ``"2-6"``."""
    fs_days = sorted({(int(d) % 7) + 1 for d in iso_days})
    if not fs_days:
        raise ValueError("no days")
    parts: list[str] = []
    run_start = prev = fs_days[0]
    for d in fs_days[1:] + [None]:  # type: ignore[list-item]
        if d is not None and d == prev + 1:
            prev = d
            continue
        parts.append(str(run_start) if run_start == prev else f"{run_start}-{prev}")
        if d is not None:
            run_start = prev = d
    return ",".join(parts)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def fs_conditions(schedule: Any, default_timezone: str = DEFAULT_TIMEZONE) -> list[dict[str, str]]:
    """The open windows as FreeSWITCH condition attributes, one dict per window.

    ``[{"wday": "2-6", "time-of-day": "09:00-18:00"}, ...]``; a wrapping window becomes two
    dicts (evening part on its days, ``00:00-<to>`` on the following days). Empty for an
    always-open schedule (no time condition at all). Holidays are not here: see
    :func:`fs_holiday_conditions`, which the dialplan checks before these windows.
    """
    s = parse_schedule(schedule, default_timezone)
    if s.always_open:
        return []
    out: list[dict[str, str]] = []
    for w in s.windows:
        if not w.wraps:
            out.append({"wday": fs_wday(w.days),
                        "time-of-day": f"{_hhmm(w.start_min)}-{_hhmm(w.end_min)}"})
            continue
        out.append({"wday": fs_wday(w.days), "time-of-day": f"{_hhmm(w.start_min)}-24:00"})
        if w.end_min > 0:
            next_days = {1 if d == 7 else d + 1 for d in w.days}
            out.append({"wday": fs_wday(next_days), "time-of-day": f"00:00-{_hhmm(w.end_min)}"})
    return out


def fs_holiday_conditions(schedule: Any,
                          default_timezone: str = DEFAULT_TIMEZONE) -> list[dict[str, str]]:
    """Holidays as FreeSWITCH ``year``/``mon``/``mday`` condition attributes.

    Consecutive dates of one month are merged: 2026-01-01..2026-01-08 gives
    ``{"year": "2026", "mon": "1", "mday": "1-8"}``. Empty for always-open schedules.
    """
    s = parse_schedule(schedule, default_timezone)
    if s.always_open or not s.holidays:
        return []
    out: list[dict[str, str]] = []
    days = sorted(s.holidays)
    run_start = prev = days[0]
    for d in days[1:] + [None]:  # type: ignore[list-item]
        if d is not None and d == prev + timedelta(days=1) and d.month == prev.month:
            prev = d
            continue
        mday = str(run_start.day) if run_start == prev else f"{run_start.day}-{prev.day}"
        out.append({"year": str(run_start.year), "mon": str(run_start.month), "mday": mday})
        if d is not None:
            run_start = prev = d
    return out
