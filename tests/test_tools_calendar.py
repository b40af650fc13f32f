"""Built-in calendar tools through the registry: slots, booking, races, time zones, isolation."""
from __future__ import annotations

import datetime as dt
import threading
import uuid
from zoneinfo import ZoneInfo

import peewee as pw
import pytest

from core.tools.registry import invoke
from models.base import database, utcnow
from models.calendar import Appointment, CalendarResource
from models.calls import ToolInvocation
from models.crm import CrmContact

WEEKDAYS = {"windows": [{"days": [1, 2, 3, 4, 5], "from": "09:00", "to": "13:00"},
                        {"days": [1, 2, 3, 4, 5], "from": "14:00", "to": "18:00"}]}


def next_monday(tz: str) -> dt.date:
    """A Monday at least a week ahead in the zone (never in the past, whatever the time of day)."""
    today = utcnow().astimezone(ZoneInfo(tz)).date()
    return today + dt.timedelta(days=7 + (7 - today.weekday()) % 7)


def resource(project, name: str = "Терапевт Иванова", hours=None, slot: int = 30, **kw) -> CalendarResource:
    return CalendarResource.create(project=project.id, name=name,
                                   working_hours_json=WEEKDAYS if hours is None else hours,
                                   slot_minutes=slot, **kw)


def at(day: dt.date, hhmm: str) -> str:
    return f"{day.isoformat()}T{hhmm}"


@pytest.mark.parametrize("tz,offset", [("Asia/Vladivostok", "+10:00"), ("Europe/Kaliningrad", "+02:00")])
def test_free_slots_in_the_project_time_zone(tool_world, tz, offset):
    p = tool_world.project(timezone=tz)
    r = resource(p)
    monday = next_monday(tz)
    res = invoke(tool_world.ctx(p), "calendar_free_slots",
                 {"date_from": monday.isoformat(), "date_to": monday.isoformat(), "limit": 50})
    assert res.ok, res
    slots = res.data["slots"]
    assert res.data["timezone"] == tz
    assert len(slots) == 16  # 8 working hours, 30 minutes each
    assert slots[0]["start"] == f"{monday.isoformat()}T09:00:00{offset}"
    assert slots[0]["end"] == f"{monday.isoformat()}T09:30:00{offset}"
    assert slots[0]["label"].startswith("понедельник, ") and slots[0]["label"].endswith(", 09:00")
    assert slots[8]["start"] == f"{monday.isoformat()}T14:00:00{offset}"  # after the lunch break
    assert {s["resource_id"] for s in slots} == {str(r.id)}
    assert res.data["resources"] == [{"id": str(r.id), "name": r.name, "description": ""}]


def test_the_same_wall_clock_is_a_different_instant_in_vladivostok_and_kaliningrad(tool_world):
    vl, kgd = tool_world.project(timezone="Asia/Vladivostok"), tool_world.project(timezone="Europe/Kaliningrad")
    resource(vl), resource(kgd)
    day = max(next_monday("Asia/Vladivostok"), next_monday("Europe/Kaliningrad"))
    a = invoke(tool_world.ctx(vl, caller_phone="+79990000001"), "calendar_book", {"start": at(day, "09:00")})
    b = invoke(tool_world.ctx(kgd, caller_phone="+79990000001"), "calendar_book", {"start": at(day, "09:00")})
    assert a.ok and b.ok, (a, b)
    row_a = Appointment.get_by_id(uuid.UUID(a.data["appointment"]["id"]))
    row_b = Appointment.get_by_id(uuid.UUID(b.data["appointment"]["id"]))
    assert row_b.starts_at - row_a.starts_at == dt.timedelta(hours=8)
    assert row_a.starts_at.astimezone(dt.timezone.utc).hour == 23  # 09:00 UTC+10 is 23:00 UTC the day before


def test_no_past_slots_today(tool_world):
    p = tool_world.project(timezone="Asia/Vladivostok")
    resource(p, hours={}, slot=60)  # around the clock
    before = utcnow()
    res = invoke(tool_world.ctx(p), "calendar_free_slots", {"limit": 30})
    assert res.ok and len(res.data["slots"]) == 30
    starts = [dt.datetime.fromisoformat(s["start"]) for s in res.data["slots"]]
    assert all(s >= before for s in starts)
    assert starts[0] - before < dt.timedelta(hours=1)  # the next whole hour is offered
    assert starts == sorted(starts)


def test_book_links_the_contact_and_takes_the_slot(tool_world):
    p = tool_world.project()
    r = resource(p)
    call = tool_world.call(p, caller="+79161234567")
    monday = next_monday("Europe/Moscow")
    res = invoke(tool_world.ctx(p, call, trace_id="trace-book-1"), "calendar_book",
                 {"start": at(monday, "10:30"), "client_name": "Мария", "comment": "Первичный приём"})
    assert res.ok, res
    out = res.data["appointment"]
    assert out["start"] == f"{monday.isoformat()}T10:30:00+03:00" and out["end"].endswith("T11:00:00+03:00")
    assert out["resource_name"] == r.name and out["status"] == "booked" and out["phone"] == "+79161234567"
    appt = Appointment.get_by_id(uuid.UUID(out["id"]))
    assert (appt.call_id, appt.trace_id, appt.client_name, appt.comment) == \
        (call.id, "trace-book-1", "Мария", "Первичный приём")
    contact = CrmContact.get_by_id(appt.contact_id)
    assert (contact.phone_e164, contact.full_name) == ("+79161234567", "Мария")
    assert ToolInvocation.get_by_id(res.invocation_id).external_id == out["id"]

    slots = invoke(tool_world.ctx(p), "calendar_free_slots",
                   {"date_from": monday.isoformat(), "date_to": monday.isoformat(), "limit": 50}).data["slots"]
    assert f"{monday.isoformat()}T10:30:00+03:00" not in [s["start"] for s in slots] and len(slots) == 15


def test_book_refusals_offer_the_nearest_free_slots(tool_world):
    p = tool_world.project()
    resource(p)
    monday = next_monday("Europe/Moscow")
    ctx = tool_world.ctx(p, caller_phone="+79161234567")
    assert invoke(ctx, "calendar_book", {"start": at(monday, "10:30")}).ok

    taken = invoke(tool_world.ctx(p, caller_phone="+79035550000"), "calendar_book", {"start": at(monday, "10:30")})
    assert not taken.ok and (taken.error_code, taken.error_message) == ("CONFLICT", "Это время уже занято")
    alts = [a["start"] for a in taken.data["alternatives"]]
    # The three nearest (30, 30 and 60 minutes away; earlier wins a tie), said in time order.
    assert alts == [f"{monday.isoformat()}T09:30:00+03:00", f"{monday.isoformat()}T10:00:00+03:00",
                    f"{monday.isoformat()}T11:00:00+03:00"]
    assert all(a["label"] for a in taken.data["alternatives"])

    lunch = invoke(ctx, "calendar_book", {"start": at(monday, "13:30")})
    assert (lunch.error_code, lunch.error_message) == ("VALIDATION_FAILED", "В это время запись не ведётся")
    off_grid = invoke(ctx, "calendar_book", {"start": at(monday, "10:10")})
    assert off_grid.error_code == "VALIDATION_FAILED"
    past = invoke(ctx, "calendar_book", {"start": "2020-03-02T10:00"})
    assert (past.error_code, past.error_message) == ("VALIDATION_FAILED", "Это время уже прошло, выберите другое")
    garbage = invoke(ctx, "calendar_book", {"start": "в понедельник утром"})
    assert garbage.error_code == "VALIDATION_FAILED" and "не распознаны" in garbage.error_message
    assert Appointment.select().count() == 1


def test_without_resource_id_the_first_free_resource_is_booked(tool_world):
    p = tool_world.project()
    a, b = resource(p, "А. Смирнов"), resource(p, "Б. Кузнецова")
    monday = next_monday("Europe/Moscow")
    first = invoke(tool_world.ctx(p, caller_phone="+79990000001"), "calendar_book", {"start": at(monday, "09:00")})
    second = invoke(tool_world.ctx(p, caller_phone="+79990000002"), "calendar_book", {"start": at(monday, "09:00")})
    third = invoke(tool_world.ctx(p, caller_phone="+79990000003"), "calendar_book", {"start": at(monday, "09:00")})
    assert first.data["appointment"]["resource_id"] == str(a.id)
    assert second.data["appointment"]["resource_id"] == str(b.id)
    assert third.error_code == "CONFLICT"
    named = invoke(tool_world.ctx(p, caller_phone="+79990000004"), "calendar_book",
                   {"start": at(monday, "09:30"), "resource_id": str(b.id)})
    assert named.ok and named.data["appointment"]["resource_name"] == "Б. Кузнецова"


def test_concurrent_bookings_of_one_slot_never_double_book(tool_world):
    p = tool_world.project()
    r = resource(p)
    monday = next_monday("Europe/Moscow")
    rounds = [at(monday, "09:00"), at(monday, "09:30"), at(monday, "10:00")]
    threads_per_slot = 4
    results: list[tuple[str, object]] = []
    lock = threading.Lock()

    def book(start: str, n: int, barrier: threading.Barrier) -> None:
        try:
            ctx = tool_world.ctx(p, caller_phone=f"+7999000{n:04d}")
            barrier.wait(timeout=10)
            res = invoke(ctx, "calendar_book", {"start": start, "resource_id": str(r.id)})
            with lock:
                results.append((start, res))
        finally:
            database.close()

    for start in rounds:
        barrier = threading.Barrier(threads_per_slot)
        threads = [threading.Thread(target=book, args=(start, i, barrier)) for i in range(threads_per_slot)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    assert len(results) == len(rounds) * threads_per_slot
    for start in rounds:
        outcomes = [res for s, res in results if s == start]
        assert sum(1 for res in outcomes if res.ok) == 1, [(x.ok, x.error_code) for x in outcomes]
        assert all(res.error_code == "CONFLICT" for res in outcomes if not res.ok)
    assert Appointment.select().where(Appointment.status == "booked").count() == len(rounds)


def test_database_refuses_a_double_booking_that_bypasses_the_tool(tool_world):
    p = tool_world.project()
    r = resource(p)
    start = dt.datetime.combine(next_monday("Europe/Moscow"), dt.time(9), tzinfo=ZoneInfo("Europe/Moscow"))
    end = start + dt.timedelta(minutes=30)
    Appointment.create(project=p.id, resource=r.id, starts_at=start, ends_at=end)
    with pytest.raises(pw.IntegrityError):
        with database.atomic():
            Appointment.create(project=p.id, resource=r.id, starts_at=start, ends_at=end)
    Appointment.create(project=p.id, resource=r.id, starts_at=start, ends_at=end, status="cancelled")  # allowed
    with pytest.raises(pw.IntegrityError):
        with database.atomic():
            Appointment.create(project=p.id, resource=r.id, starts_at=end, ends_at=start)  # ends before it starts


def test_find_reschedule_and_cancel_own_appointment(tool_world):
    p = tool_world.project()
    r = resource(p)
    monday = next_monday("Europe/Moscow")
    call = tool_world.call(p, caller="+79161234567")
    booked = invoke(tool_world.ctx(p, call), "calendar_book", {"start": at(monday, "11:00")}).data["appointment"]
    other = invoke(tool_world.ctx(p, caller_phone="+79035550000"), "calendar_book",
                   {"start": at(monday, "12:00")}).data["appointment"]

    found = invoke(tool_world.ctx(p, call), "calendar_find_appointments", {})
    assert found.ok and [a["id"] for a in found.data["appointments"]] == [booked["id"]]
    snoop = invoke(tool_world.ctx(p, call), "calendar_find_appointments", {"phone": "+79035550000"})
    assert not snoop.ok and snoop.error_code == "VALIDATION_FAILED"

    moved = invoke(tool_world.ctx(p, call, trace_id="trace-move-1"), "calendar_reschedule",
                   {"appointment_id": booked["id"], "new_start": at(monday, "15:30")})
    assert moved.ok, moved
    assert moved.data["appointment"]["start"] == f"{monday.isoformat()}T15:30:00+03:00"
    row = Appointment.get_by_id(uuid.UUID(booked["id"]))
    assert row.history_json[0]["from"].startswith(f"{monday.isoformat()}T08:00:00")  # 11:00 MSK in UTC
    assert row.history_json[0]["trace_id"] == "trace-move-1"
    # The old slot is free again, the new one is taken.
    starts = [s["start"] for s in invoke(tool_world.ctx(p), "calendar_free_slots", {
        "date_from": monday.isoformat(), "date_to": monday.isoformat(), "limit": 50}).data["slots"]]
    assert f"{monday.isoformat()}T11:00:00+03:00" in starts
    assert f"{monday.isoformat()}T15:30:00+03:00" not in starts

    onto_taken = invoke(tool_world.ctx(p, call), "calendar_reschedule",
                        {"appointment_id": booked["id"], "new_start": at(monday, "12:00")})
    assert onto_taken.error_code == "CONFLICT" and onto_taken.data["alternatives"]
    # Rescheduling onto its own current slot succeeds: it does not conflict with itself.
    same = invoke(tool_world.ctx(p, call), "calendar_reschedule",
                  {"appointment_id": booked["id"], "new_start": at(monday, "15:30")})
    assert same.ok

    not_mine = invoke(tool_world.ctx(p, call), "calendar_cancel", {"appointment_id": other["id"]})
    assert (not_mine.error_code, not_mine.error_message) == ("NOT_FOUND", "Запись не найдена")
    assert Appointment.get_by_id(uuid.UUID(other["id"])).status == "booked"

    cancelled = invoke(tool_world.ctx(p, call), "calendar_cancel",
                       {"appointment_id": booked["id"], "reason": "Заболел"})
    assert cancelled.ok and cancelled.data["appointment"]["status"] == "cancelled"
    row = Appointment.get_by_id(uuid.UUID(booked["id"]))
    assert (row.status, row.cancel_reason) == ("cancelled", "Заболел") and row.cancelled_at is not None
    twice = invoke(tool_world.ctx(p, call), "calendar_cancel", {"appointment_id": booked["id"]})
    assert twice.error_code == "CONFLICT"
    move_cancelled = invoke(tool_world.ctx(p, call), "calendar_reschedule",
                            {"appointment_id": booked["id"], "new_start": at(monday, "16:00")})
    assert move_cancelled.error_code == "CONFLICT"
    # After cancelling, the slot can be booked again (the unique index covers booked rows only).
    again = invoke(tool_world.ctx(p, caller_phone="+79990000009"), "calendar_book", {"start": at(monday, "15:30")})
    assert again.ok
    assert invoke(tool_world.ctx(p, call), "calendar_find_appointments", {}).data["appointments"] == []
    bad_id = invoke(tool_world.ctx(p, call), "calendar_cancel", {"appointment_id": "nope"})
    assert bad_id.error_code == "VALIDATION_FAILED"
    assert r.id  # resource unchanged


def test_sandbox_booking_persists_nothing(tool_world):
    p = tool_world.project()
    resource(p)
    monday = next_monday("Europe/Moscow")
    res = invoke(tool_world.ctx(p, caller_phone="+79161234567", sandbox=True), "calendar_book",
                 {"start": at(monday, "09:00"), "client_name": "Тест"})
    assert res.ok and res.data["appointment"]["start"].startswith(f"{monday.isoformat()}T09:00")
    assert Appointment.select().count() == 0 and CrmContact.select().count() == 0
    assert ToolInvocation.get_by_id(res.invocation_id).request_json["sandbox"] is True


def test_calendar_tools_never_see_another_project(tool_world):
    mine, theirs = tool_world.project(), tool_world.project()
    their_resource = resource(theirs)
    monday = next_monday("Europe/Moscow")
    their_appt = invoke(tool_world.ctx(theirs, caller_phone="+79161234567"), "calendar_book",
                        {"start": at(monday, "09:00")}).data["appointment"]

    empty = invoke(tool_world.ctx(mine), "calendar_free_slots", {})
    assert (empty.error_code, empty.error_message) == \
        ("NOT_FOUND", "В календаре нет ни одного специалиста или ресурса для записи")
    resource(mine)
    ctx = tool_world.ctx(mine, caller_phone="+79161234567")  # the same person, another company
    for name, args in [("calendar_free_slots", {"resource_id": str(their_resource.id)}),
                       ("calendar_book", {"start": at(monday, "09:30"), "resource_id": str(their_resource.id)}),
                       ("calendar_reschedule", {"appointment_id": their_appt["id"], "new_start": at(monday, "10:00")}),
                       ("calendar_cancel", {"appointment_id": their_appt["id"]})]:
        res = invoke(ctx, name, args)
        assert not res.ok and res.error_code == "NOT_FOUND", (name, res)
    assert invoke(ctx, "calendar_find_appointments", {}).data["appointments"] == []
    assert Appointment.get_by_id(uuid.UUID(their_appt["id"])).status == "booked"
    # My own calendar is independent: the slot taken over there is free here.
    assert invoke(ctx, "calendar_book", {"start": at(monday, "09:00")}).ok
