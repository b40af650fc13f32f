"""Rules of Russian law per campaign purpose (docs/compliance.md has the sources).

- advertising (38-FZ art. 18): only to numbers with a recorded, unrevoked consent;
- debt collection (230-FZ art. 7): calls only 08:00-22:00 on working days and 09:00-20:00 on
  weekends and non-working holidays, in the debtor's local time; at most 1 interaction a day, 2 a
  week, 8 a month;
- every purpose: numbers in the project's DNC list are never called.

Pure functions; the dialer feeds them the contact's zone, the clock and past calls.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterable
from zoneinfo import ZoneInfo

from models.campaigns import CampaignPurpose

PURPOSES = [p.value for p in CampaignPurpose]

PURPOSE_LABELS_RU = {
    "service": "Сервисное уведомление",
    "reminder": "Напоминание или подтверждение",
    "survey": "Опрос",
    "debt_collection": "Взыскание задолженности",
    "advertising": "Реклама",
}


@dataclass(frozen=True)
class PurposeRules:
    purpose: str
    requires_consent: bool = False
    weekday_hours: tuple[int, int] | None = None   # (from, to) in minutes since local midnight
    rest_day_hours: tuple[int, int] | None = None  # weekends and non-working holidays
    max_per_day: int | None = None                 # answered calls per debtor, rolling windows
    max_per_week: int | None = None
    max_per_month: int | None = None


RULES: dict[str, PurposeRules] = {
    "service": PurposeRules("service"),
    "reminder": PurposeRules("reminder"),
    "survey": PurposeRules("survey"),
    "advertising": PurposeRules("advertising", requires_consent=True),
    "debt_collection": PurposeRules("debt_collection", weekday_hours=(8 * 60, 22 * 60),
                                    rest_day_hours=(9 * 60, 20 * 60), max_per_day=1,
                                    max_per_week=2, max_per_month=8),
}


def rules_for(purpose: str) -> PurposeRules:
    try:
        return RULES[purpose]
    except KeyError:
        raise ValueError(f"unknown campaign purpose {purpose!r}") from None


# Non-working holidays, Labour Code art. 112 part 1: 1-6 and 8 January (New Year holidays),
# 7 January, 23 February, 8 March, 1 May, 9 May, 12 June, 4 November.
_FIXED_HOLIDAYS = {(1, d) for d in range(1, 9)} | {(2, 23), (3, 8), (5, 1), (5, 9), (6, 12), (11, 4)}

# Days off moved by government decree (art. 112 part 5): the January weekends are moved elsewhere.
# Decree No. 1335 of 04.10.2024 (2025) and No. 1466 of 24.09.2025 (2026). Extend yearly; a campaign
# can add dates through schedule_json.holidays meanwhile.
_DECREE_DAYS_OFF = {
    dt.date(2025, 5, 2), dt.date(2025, 12, 31), dt.date(2025, 11, 3),
    dt.date(2026, 1, 9), dt.date(2026, 12, 31),
}


def russian_holidays(year: int) -> set[dt.date]:
    """Non-working days of ``year`` besides ordinary weekends.

    Art. 112 part 2: a holiday falling on a weekend moves the day off to the next working day
    (except the January holidays, which decrees move).
    """
    days = {dt.date(year, m, d) for m, d in _FIXED_HOLIDAYS}
    for m, d in sorted(_FIXED_HOLIDAYS):
        if m == 1:
            continue
        day = dt.date(year, m, d)
        if day.isoweekday() >= 6:
            nxt = day + dt.timedelta(days=1)
            while nxt.isoweekday() >= 6 or nxt in days:
                nxt += dt.timedelta(days=1)
            days.add(nxt)
    days |= {d for d in _DECREE_DAYS_OFF if d.year == year}
    return days


def is_rest_day(day: dt.date, extra_holidays: Iterable[dt.date] = ()) -> bool:
    """Weekend or non-working holiday (working Saturdays count as rest days: the stricter window)."""
    return day.isoweekday() >= 6 or day in russian_holidays(day.year) or day in set(extra_holidays)


def _legal_hours(rules: PurposeRules, day: dt.date, extra: frozenset[dt.date]) -> tuple[int, int] | None:
    if rules.weekday_hours is None:
        return None
    return rules.rest_day_hours if is_rest_day(day, extra) else rules.weekday_hours


def legal_open(purpose: str, at: dt.datetime, tz: str, extra_holidays: Iterable[dt.date] = ()) -> bool:
    """Whether the law lets a call of this purpose ring at ``at`` in the callee's zone ``tz``."""
    rules = rules_for(purpose)
    local = at.astimezone(ZoneInfo(tz))
    hours = _legal_hours(rules, local.date(), frozenset(extra_holidays))
    if hours is None:
        return True
    minute = local.hour * 60 + local.minute
    return hours[0] <= minute < hours[1]


def next_legal_time(purpose: str, at: dt.datetime, tz: str,
                    extra_holidays: Iterable[dt.date] = ()) -> dt.datetime:
    """``at`` when the law allows it, else the start of the next allowed interval (aware, in ``tz``)."""
    rules = rules_for(purpose)
    zone = ZoneInfo(tz)
    local = at.astimezone(zone)
    extra = frozenset(extra_holidays)
    if legal_open(purpose, at, tz, extra):
        return local
    for offset in range(0, 15):
        day = local.date() + dt.timedelta(days=offset)
        hours = _legal_hours(rules, day, extra)
        assert hours is not None
        start = dt.datetime.combine(day, dt.time(hours[0] // 60, hours[0] % 60), zone)
        if start > local:
            return start
    raise AssertionError("no legal window within two weeks")


def frequency_next_allowed(purpose: str, contacts: Iterable[dt.datetime], now: dt.datetime) -> dt.datetime | None:
    """None when another interaction is allowed now; else the earliest moment it will be.

    ``contacts``: when the debtor was actually reached (answered calls, any campaign of the project).
    Rolling windows (24 h, 7 days, 30 days) are never looser than calendar ones, so they keep the
    law's day/week/month caps whichever way a period is counted.
    """
    rules = rules_for(purpose)
    past = sorted(c for c in contacts if c <= now)
    waits: list[dt.datetime] = []
    for cap, span in ((rules.max_per_day, dt.timedelta(days=1)), (rules.max_per_week, dt.timedelta(days=7)),
                      (rules.max_per_month, dt.timedelta(days=30))):
        if cap is None:
            continue
        inside = [c for c in past if c > now - span]
        if len(inside) >= cap:
            waits.append(inside[len(inside) - cap] + span)  # when the oldest counted one drops out
    return max(waits) if waits else None
