"""Pure slot arithmetic of the built-in calendar (no services)."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from core.telephony.schedule import parse_schedule
from core.tools.calendar.slots import (free_slots, label_ru, parse_hhmm, parse_local_date, parse_local_datetime,
                                       slot_starting_at)

UTC = timezone.utc
MON = date(2030, 3, 4)  # a Monday
WEEKDAYS = {"windows": [{"days": [1, 2, 3, 4, 5], "from": "09:00", "to": "13:00"},
                        {"days": [1, 2, 3, 4, 5], "from": "14:00", "to": "18:00"}]}
LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


def _local_times(slots, tz):
    return [s.start.astimezone(ZoneInfo(tz)).strftime("%a %H:%M") for s in slots]


def test_slots_follow_working_hours_with_a_lunch_break():
    sched = parse_schedule(WEEKDAYS, "Europe/Moscow")
    slots = free_slots(sched, 60, [], MON, MON, LONG_AGO)
    assert _local_times(slots, "Europe/Moscow") == [
        "Mon 09:00", "Mon 10:00", "Mon 11:00", "Mon 12:00", "Mon 14:00", "Mon 15:00", "Mon 16:00", "Mon 17:00"]
    assert all(s.end - s.start == timedelta(hours=1) for s in slots)
    # A 90-minute slot never crosses the window's end: 09:00, 10:30 fit before 13:00, 12:00 does not.
    long = free_slots(sched, 90, [], MON, MON, LONG_AGO)
    assert _local_times(long, "Europe/Moscow") == ["Mon 09:00", "Mon 10:30", "Mon 14:00", "Mon 15:30"]


def test_weekend_and_holiday_have_no_slots():
    sched = parse_schedule({**WEEKDAYS, "holidays": ["2030-03-05"]}, "Europe/Moscow")
    slots = free_slots(sched, 60, [], MON, MON + timedelta(days=6), LONG_AGO)
    days = {s.start.astimezone(ZoneInfo("Europe/Moscow")).date() for s in slots}
    assert days == {MON, MON + timedelta(days=2), MON + timedelta(days=3), MON + timedelta(days=4)}


def test_bookings_block_overlapping_slots_only():
    tz = ZoneInfo("Europe/Moscow")
    sched = parse_schedule(WEEKDAYS, "Europe/Moscow")
    busy = [(datetime(2030, 3, 4, 10, 15, tzinfo=tz), datetime(2030, 3, 4, 11, 15, tzinfo=tz))]
    slots = free_slots(sched, 60, busy, MON, MON, LONG_AGO)
    assert "Mon 10:00" not in _local_times(slots, "Europe/Moscow")
    assert "Mon 11:00" not in _local_times(slots, "Europe/Moscow")
    assert "Mon 09:00" in _local_times(slots, "Europe/Moscow")
    assert "Mon 12:00" in _local_times(slots, "Europe/Moscow")


def test_no_past_slots_and_notice_is_respected():
    tz = ZoneInfo("Europe/Moscow")
    sched = parse_schedule(WEEKDAYS, "Europe/Moscow")
    now = datetime(2030, 3, 4, 10, 20, tzinfo=tz)
    assert _local_times(free_slots(sched, 60, [], MON, MON, now), "Europe/Moscow")[0] == "Mon 11:00"
    with_notice = free_slots(sched, 60, [], MON, MON, now, min_notice_minutes=120)
    assert _local_times(with_notice, "Europe/Moscow")[0] == "Mon 14:00"
    exactly_now = datetime(2030, 3, 4, 11, 0, tzinfo=tz)
    assert _local_times(free_slots(sched, 60, [], MON, MON, exactly_now), "Europe/Moscow")[0] == "Mon 11:00"


def test_time_filter_and_limit():
    sched = parse_schedule(WEEKDAYS, "Europe/Moscow")
    slots = free_slots(sched, 60, [], MON, MON + timedelta(days=1), LONG_AGO, time_from=15 * 60,
                       time_to=17 * 60, limit=3)
    assert _local_times(slots, "Europe/Moscow") == ["Mon 15:00", "Mon 16:00", "Tue 15:00"]


@pytest.mark.parametrize("tz_name,first_utc", [
    ("Asia/Vladivostok", datetime(2030, 3, 3, 23, 0, tzinfo=UTC)),   # UTC+10, no DST
    ("Europe/Kaliningrad", datetime(2030, 3, 4, 7, 0, tzinfo=UTC)),  # UTC+2, no DST
    ("Europe/Moscow", datetime(2030, 3, 4, 6, 0, tzinfo=UTC)),       # UTC+3, no DST
])
def test_working_hours_are_wall_clock_in_the_project_zone(tz_name, first_utc):
    sched = parse_schedule(WEEKDAYS, tz_name)
    slots = free_slots(sched, 60, [], MON, MON, LONG_AGO)
    assert slots[0].start == first_utc
    assert slots[0].start.astimezone(ZoneInfo(tz_name)).hour == 9
    # Six months later (summer) the same wall-clock hour maps to the same UTC hour: no DST in Russia.
    sep = date(2030, 9, 2)
    summer = free_slots(sched, 60, [], sep, sep, LONG_AGO)
    assert summer[0].start.astimezone(UTC).hour == first_utc.hour


def test_dst_zone_keeps_the_wall_clock():
    sched = parse_schedule(WEEKDAYS, "Europe/Berlin")
    winter = free_slots(sched, 60, [], date(2030, 3, 18), date(2030, 3, 18), LONG_AGO)[0]
    summer = free_slots(sched, 60, [], date(2030, 4, 1), date(2030, 4, 1), LONG_AGO)[0]
    assert (winter.start.hour, summer.start.hour) == (8, 7)  # 09:00 CET / 09:00 CEST in UTC


def test_window_wrapping_past_midnight():
    sched = parse_schedule({"windows": [{"days": [5], "from": "22:00", "to": "02:00"}]}, "Europe/Moscow")
    fri = MON + timedelta(days=4)
    slots = free_slots(sched, 60, [], fri, fri, LONG_AGO)
    assert _local_times(slots, "Europe/Moscow") == ["Fri 22:00", "Fri 23:00", "Sat 00:00", "Sat 01:00"]
    sat_one = datetime(2030, 3, 9, 1, 0, tzinfo=ZoneInfo("Europe/Moscow"))
    assert slot_starting_at(sched, 60, [], sat_one, LONG_AGO) is not None


def test_slot_starting_at_checks_grid_hours_and_bookings():
    tz = ZoneInfo("Europe/Moscow")
    sched = parse_schedule(WEEKDAYS, "Europe/Moscow")
    on_grid = datetime(2030, 3, 4, 10, 0, tzinfo=tz)
    slot = slot_starting_at(sched, 30, [], on_grid, LONG_AGO)
    assert slot is not None and slot.end - slot.start == timedelta(minutes=30)
    assert slot_starting_at(sched, 30, [], datetime(2030, 3, 4, 10, 10, tzinfo=tz), LONG_AGO) is None  # off grid
    assert slot_starting_at(sched, 30, [], datetime(2030, 3, 4, 13, 0, tzinfo=tz), LONG_AGO) is None  # lunch
    assert slot_starting_at(sched, 30, [(on_grid, on_grid + timedelta(minutes=30))], on_grid, LONG_AGO) is None
    assert slot_starting_at(sched, 30, [], on_grid, on_grid + timedelta(minutes=1)) is None  # past


def test_always_open_schedule():
    sched = parse_schedule({}, "Asia/Vladivostok")
    slots = free_slots(sched, 120, [], MON, MON, LONG_AGO)
    assert len(slots) == 12


def test_parsing_and_labels():
    vl = ZoneInfo("Asia/Vladivostok")
    assert parse_local_datetime("2030-03-04T09:30", vl) == datetime(2030, 3, 3, 23, 30, tzinfo=UTC)
    assert parse_local_datetime("2030-03-04 09:30", vl) == datetime(2030, 3, 3, 23, 30, tzinfo=UTC)
    assert parse_local_datetime("2030-03-04T09:30+03:00", vl) == datetime(2030, 3, 4, 6, 30, tzinfo=UTC)
    assert parse_local_datetime("2030-03-04T06:30Z", vl) == datetime(2030, 3, 4, 6, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="не распознаны"):
        parse_local_datetime("завтра в три", vl)
    assert parse_local_date("2030-03-04") == MON
    with pytest.raises(ValueError, match="ГГГГ-ММ-ДД"):
        parse_local_date("04.03.2030")
    assert parse_hhmm("14:30") == 870
    with pytest.raises(ValueError):
        parse_hhmm("25:00")
    assert label_ru(datetime(2030, 3, 3, 23, 30, tzinfo=UTC), vl) == "понедельник, 4 марта, 09:30"
    assert label_ru(datetime(2030, 3, 3, 23, 30, tzinfo=UTC), ZoneInfo("Europe/Kaliningrad")) == \
        "понедельник, 4 марта, 01:30"
