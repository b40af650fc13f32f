"""CRM and calendar API: people see what the agent did; resources are managed, audited, tenant-scoped."""
from __future__ import annotations

import datetime as dt
import uuid
from zoneinfo import ZoneInfo

import pytest

from core.tools.base import ToolContext
from core.tools.registry import invoke
from models.base import utcnow
from models.calendar import CalendarResource
from models.calls import Call
from models.saas import AuditLog
from tests.support.api import login

WEEKDAYS = {"windows": [{"days": [1, 2, 3, 4, 5], "from": "09:00", "to": "18:00"}]}


@pytest.fixture()
def world(api, tenant, redis_client):
    from core.tools.journal import set_event_redis
    set_event_redis(redis_client)
    t = tenant("acme", roles=("owner", "analyst"))
    clients = {}
    for role, (email, password) in t["users"].items():
        clients[role] = api.with_(token=login(api, email, password)["access_token"], project_id=t["project_id"])
    yield t, clients
    set_event_redis(None)


def _ctx(project_id: str, call: Call | None = None, phone: str = "+79161234567") -> ToolContext:
    return ToolContext(project_id=uuid.UUID(project_id), trace_id=uuid.uuid4().hex,
                       call_id=call.id if call else None, caller_phone=phone)


def _monday() -> dt.date:
    today = utcnow().astimezone(ZoneInfo("Europe/Moscow")).date()
    return today + dt.timedelta(days=7 + (7 - today.weekday()) % 7)


def test_contact_card_shows_what_the_agent_did(world):
    t, c = world
    call = Call.create(project=uuid.UUID(t["project_id"]), direction="inbound", from_number="+79161234567",
                       to_number="+74950000000", state="in_progress", trace_id=uuid.uuid4().hex)
    ctx = _ctx(t["project_id"], call)
    contact_id = invoke(ctx, "crm_find_or_create_contact", {"full_name": "Ольга"}).data["contact"]["id"]
    deal = invoke(ctx, "crm_create_deal", {"title": "Абонемент", "amount": 12000}).data["deal"]
    invoke(ctx, "crm_create_task", {"title": "Перезвонить", "kind": "callback", "deal_id": deal["id"]})
    invoke(ctx, "crm_add_note", {"body": "Хочет утренние тренировки"})
    assert invoke(ctx, "crm_link_call", {"deal_id": deal["id"]}).ok

    listing = c["analyst"].get("/api/crm/contacts")
    assert listing.status_code == 200
    assert [x["id"] for x in listing.get_json()["items"]] == [contact_id]
    assert c["analyst"].get("/api/crm/contacts?phone=8 916 123 45 67").get_json()["items"][0]["full_name"] == "Ольга"
    assert c["analyst"].get("/api/crm/contacts?q=ольг").get_json()["items"][0]["id"] == contact_id
    assert c["analyst"].get("/api/crm/contacts?q=Пётр").get_json()["items"] == []
    bad = c["analyst"].get("/api/crm/contacts?phone=12")
    assert bad.status_code == 422 and "phone" in bad.get_json()["error"]["details"]["fields"]

    card = c["analyst"].get(f"/api/crm/contacts/{contact_id}")
    assert card.status_code == 200
    body = card.get_json()
    assert body["full_name"] == "Ольга" and body["phone_e164"] == "+79161234567" and body["source"] == "call"
    assert [d["title"] for d in body["deals"]] == ["Абонемент"] and body["deals"][0]["amount"] == "12000.0000"
    assert [x["title"] for x in body["tasks"]] == ["Перезвонить"] and body["tasks"][0]["call_id"] == str(call.id)
    assert [n["body"] for n in body["notes"]] == ["Хочет утренние тренировки"]
    assert body["call_links"][0]["call"]["id"] == str(call.id)
    assert body["call_links"][0]["deal_id"] == deal["id"]
    assert c["analyst"].get(f"/api/crm/contacts/{uuid.uuid4()}").status_code == 404
    assert c["analyst"].get("/api/crm/contacts/not-a-uuid").status_code == 404


def test_resources_are_validated_audited_and_need_crm_edit(world):
    t, c = world
    body = {"name": "Мастер Анна", "kind": "specialist", "working_hours": WEEKDAYS, "slot_minutes": 60,
            "description": "Стрижки и окрашивание"}
    denied = c["analyst"].post("/api/calendar/resources", json=body)
    assert denied.status_code == 403
    created = c["owner"].post("/api/calendar/resources", json=body)
    assert created.status_code == 201, created.get_json()
    res = created.get_json()
    assert (res["name"], res["slot_minutes"], res["timezone"], res["enabled"]) == \
        ("Мастер Анна", 60, "Europe/Moscow", True)
    audit = AuditLog.get(AuditLog.action == "calendar_resource.create")
    assert audit.entity_id == res["id"] and audit.status_code == 201

    dup = c["owner"].post("/api/calendar/resources", json=body)
    assert dup.status_code == 409 and "уже есть" in dup.get_json()["error"]["details"]["reason"]
    broken = c["owner"].post("/api/calendar/resources", json={
        "name": "Кабинет 2", "working_hours": {"windows": [{"days": [8], "from": "25:00", "to": "18:00"}]}})
    assert broken.status_code == 422
    fields = broken.get_json()["error"]["details"]["fields"]
    assert "working_hours.windows.0.days.0" in fields and "working_hours.windows.0.from" in fields
    too_short = c["owner"].post("/api/calendar/resources", json={**body, "name": "x", "slot_minutes": 1})
    assert too_short.status_code == 422

    patched = c["owner"].patch(f"/api/calendar/resources/{res['id']}",
                               json={"slot_minutes": 45, "working_hours": {**WEEKDAYS, "timezone": "Asia/Omsk"}})
    assert patched.status_code == 200 and patched.get_json()["slot_minutes"] == 45
    assert patched.get_json()["timezone"] == "Asia/Omsk"
    update_audit = AuditLog.get(AuditLog.action == "calendar_resource.update")
    assert update_audit.changes_json["before"]["slot_minutes"] == 60
    assert update_audit.changes_json["after"]["slot_minutes"] == 45
    assert c["analyst"].patch(f"/api/calendar/resources/{res['id']}", json={"enabled": False}).status_code == 403

    listed = c["analyst"].get("/api/calendar/resources")
    assert [r["name"] for r in listed.get_json()["items"]] == ["Мастер Анна"]


def test_appointments_listing_and_cancel(world):
    t, c = world
    r = c["owner"].post("/api/calendar/resources", json={"name": "Врач", "working_hours": WEEKDAYS}).get_json()
    monday = _monday()
    a = invoke(_ctx(t["project_id"]), "calendar_book", {"start": f"{monday}T10:00", "client_name": "Пётр"})
    b = invoke(_ctx(t["project_id"], phone="+79035550000"), "calendar_book", {"start": f"{monday}T11:00"})
    assert a.ok and b.ok

    listed = c["analyst"].get(f"/api/calendar/appointments?date_from={monday}&date_to={monday}")
    assert listed.status_code == 200
    items = listed.get_json()["items"]
    assert [i["start_local"] for i in items] == [f"{monday}T10:00:00+03:00", f"{monday}T11:00:00+03:00"]
    assert items[0]["resource_name"] == "Врач" and items[0]["client_name"] == "Пётр"
    assert items[0]["label"].endswith("10:00") and items[0]["resource_id"] == r["id"]
    by_phone = c["analyst"].get(f"/api/calendar/appointments?date_from={monday}&phone=+79035550000")
    assert [i["id"] for i in by_phone.get_json()["items"]] == [b.data["appointment"]["id"]]
    default_window = c["analyst"].get("/api/calendar/appointments")  # today and two weeks ahead
    assert len(default_window.get_json()["items"]) == 2
    assert c["analyst"].get("/api/calendar/appointments?date_from=03.03.2030").status_code == 422

    appt_id = a.data["appointment"]["id"]
    assert c["analyst"].post(f"/api/calendar/appointments/{appt_id}/cancel", json={}).status_code == 403
    cancelled = c["owner"].post(f"/api/calendar/appointments/{appt_id}/cancel", json={"reason": "Клиент попросил"})
    assert cancelled.status_code == 200 and cancelled.get_json()["status"] == "cancelled"
    assert AuditLog.get(AuditLog.action == "appointment.cancel").entity_id == appt_id
    again = c["owner"].post(f"/api/calendar/appointments/{appt_id}/cancel", json={})
    assert again.status_code == 409
    booked_only = c["analyst"].get(f"/api/calendar/appointments?date_from={monday}&status=booked")
    assert [i["id"] for i in booked_only.get_json()["items"]] == [b.data["appointment"]["id"]]


def test_crm_and_calendar_are_tenant_isolated(world, tenant, api):
    t, c = world
    other = tenant("globex", roles=("owner",))
    email, password = other["users"]["owner"]
    stranger = api.with_(token=login(api, email, password)["access_token"], project_id=other["project_id"])
    contact_id = invoke(_ctx(t["project_id"]), "crm_find_or_create_contact", {}).data["contact"]["id"]
    r = c["owner"].post("/api/calendar/resources", json={"name": "Врач", "working_hours": WEEKDAYS}).get_json()
    appt = invoke(_ctx(t["project_id"]), "calendar_book", {"start": f"{_monday()}T10:00"}).data["appointment"]

    assert stranger.get("/api/crm/contacts").get_json()["items"] == []
    assert stranger.get(f"/api/crm/contacts/{contact_id}").status_code == 404
    assert stranger.get("/api/calendar/resources").get_json()["items"] == []
    assert stranger.get(f"/api/calendar/appointments?date_from={_monday()}").get_json()["items"] == []
    assert stranger.patch(f"/api/calendar/resources/{r['id']}", json={"enabled": False}).status_code == 404
    assert stranger.post(f"/api/calendar/appointments/{appt['id']}/cancel", json={}).status_code == 404
    assert CalendarResource.get_by_id(uuid.UUID(r["id"])).enabled is True
    # Naming the other tenant's project outright is refused as well.
    assert stranger.with_(project_id=t["project_id"]).get("/api/crm/contacts").status_code == 404
