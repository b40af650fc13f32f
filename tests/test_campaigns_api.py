"""Campaigns API: create with validation, upload report and all-or-nothing import, tenancy, RBAC,
consents, single outbound calls under the campaign rules, and a campaign end to end through real
RQ workers, esl_app and the simulator."""
from __future__ import annotations

import io
import subprocess
import sys

from models.calls import Call
from models.campaigns import Campaign, CampaignContact
from models.saas import AuditLog
from tests.support.telephony import BIN, ROOT, make_telephony_tenant, settings_env, wait_until


def _owner(app_for, test_settings, slug):
    t = make_telephony_tenant(slug, recording=False)
    return t, app_for(test_settings).login_as("owner", t)


def _create(owner, t, **extra):
    body = {"name": "Напоминание о визите", "purpose": "reminder", "agent_id": str(t["agent"].id),
            "schedule_json": {"always_open": True}, "limits_json": {"max_concurrent": 2, "calls_per_minute": 600,
                                                                     "ring_timeout_s": 5}, **extra}
    resp = owner.post("/api/campaigns", json=body)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def _upload(owner, cid, data: bytes, name="list.csv", mapping=None):
    form = {"file": (io.BytesIO(data), name)}
    if mapping is not None:
        form["mapping"] = mapping
    return owner.request("POST", f"/api/campaigns/{cid}/upload-contacts", data=form, content_type="multipart/form-data")


def test_create_validates_and_is_tenant_scoped(app_for, test_settings, db, redis_client):
    t, owner = _owner(app_for, test_settings, "capi")
    resp = owner.post("/api/campaigns", json={"name": "x", "purpose": "advertising", "agent_id": str(t["agent"].id),
                                              "schedule_json": {"windows": [{"days": [8], "from": "9", "to": "18:00"}]},
                                              "limits_json": {"max_concurrent": 0, "retry_delays_min": {"busy": -1}}})
    assert resp.status_code == 422
    fields = resp.get_json()["error"]["details"]["fields"]
    assert "limits_json.max_concurrent" in fields and "limits_json.retry_delays_min.busy" in fields
    assert any(k.startswith("schedule_json.windows.0") for k in fields)
    c = _create(owner, t)
    assert c["status"] == "draft" and c["purpose"] == "reminder"
    assert owner.get(f"/api/campaigns/{c['id']}").get_json()["contacts"]["total"] == 0
    assert [x["id"] for x in owner.get("/api/campaigns").get_json()["items"]] == [c["id"]]
    stranger = app_for(test_settings).stranger()
    assert stranger.get(f"/api/campaigns/{c['id']}", headers={"X-Project-Id": str(t["project"].id)}).status_code == 404
    assert owner.post(f"/api/campaigns/{c['id']}/start").status_code == 409  # no contacts yet
    assert AuditLog.select().where(AuditLog.action == "campaign.create").count() == 1


def test_upload_report_and_rollback_of_a_malformed_file(app_for, test_settings, db, redis_client, monkeypatch):
    t, owner = _owner(app_for, test_settings, "cupl")
    c = _create(owner, t)
    assert owner.post("/api/dnc", json={"phone": "+79031112233"}).status_code == 201
    csv = ("Телефон;ФИО;Дата визита\n8 916 123-45-67;Анна;20.03\n+7 916 1234567;;\n12;Боб;\n"
           "89031112233;Вера;21.03\n").encode()
    resp = _upload(owner, c["id"], csv)
    assert resp.status_code == 200, resp.get_json()
    rep = resp.get_json()
    assert (rep["total_rows"], rep["accepted"], rep["excluded"], rep["rejected"], rep["duplicates"]) == (4, 1, 1, 1, 1)
    assert {(i["row"], i["code"]) for i in rep["issues"]} == {(3, "duplicate"), (4, "invalid_phone"), (5, "dnc")}
    anna = CampaignContact.get(CampaignContact.phone_e164 == "+79161234567")
    assert anna.name == "Анна" and anna.variables_json == {"data_vizita": "20.03"} and anna.state == "pending"
    # the same file again: everything is already there
    again = _upload(owner, c["id"], csv).get_json()
    assert again["accepted"] == 0 and again["counts"]["already_in_campaign"] == 2
    # malformed files: a clear catalog error and nothing half-imported
    before = CampaignContact.select().count()
    bad = _upload(owner, c["id"], b"name,city\nAnna,Moscow\n")
    assert bad.status_code == 422 and "телефон" in bad.get_json()["error"]["details"]["fields"]["file"]
    bad = _upload(owner, c["id"], b"PK\x03\x04not really", name="list.xlsx")
    assert bad.status_code == 422 and "XLSX" in bad.get_json()["error"]["details"]["fields"]["file"]
    bad = _upload(owner, c["id"], csv, mapping="[1,2]")
    assert bad.status_code == 422 and "mapping" in bad.get_json()["error"]["details"]["fields"]
    assert CampaignContact.select().count() == before == 2
    big = "Телефон\n" + "".join(f"+7916{i:07d}\n" for i in range(2000))
    # a database failure after COPY (fault injected at the service seam) rolls the whole upload back
    from core.campaigns import service
    original = service.copy_contacts

    def broken(campaign, report):
        original(campaign, report)
        raise RuntimeError("disk full")
    monkeypatch.setattr(service, "copy_contacts", broken)
    assert _upload(owner, c["id"], big.encode()).status_code == 500
    monkeypatch.setattr(service, "copy_contacts", original)
    assert CampaignContact.select().count() == 2
    resp = _upload(owner, c["id"], big.encode())
    assert resp.get_json()["accepted"] == 2000 and CampaignContact.select().count() == 2002


def test_consents_and_single_outbound_call_rules(app_for, test_settings, db, redis_client):
    t, owner = _owner(app_for, test_settings, "cone")
    body = {"to": "+79161234567", "agent_id": str(t["agent"].id), "purpose": "advertising",
            "schedule_json": {"always_open": True}}
    resp = owner.post("/api/calls/outbound", json=body)
    assert resp.status_code == 409 and resp.get_json()["error"]["details"]["rule"] == "no_consent"
    consent = owner.post("/api/consents", json={"phone": "8 916 123 45 67", "purpose": "advertising",
                                                "source": "web_form", "evidence": {"form": "promo-2026"}})
    assert consent.status_code == 201
    resp = owner.post("/api/calls/outbound", json={**body, "variables": {"name": "Анна"}})
    assert resp.status_code == 202, resp.get_json()
    call = Call.get_by_id(resp.get_json()["call_id"])
    assert call.direction == "outbound" and call.variables_json == {"name": "Анна"} and call.agent_id == t["agent"].id
    assert redis_client.get(f"tel:cmd:originate-{call.id}:seen")
    revoked = owner.post(f"/api/consents/{consent.get_json()['id']}/revoke")
    assert revoked.status_code == 200 and revoked.get_json()["revoked_at"]
    assert owner.post("/api/calls/outbound", json=body).status_code == 409
    owner.post("/api/dnc", json={"phone": "+79031112233"})
    resp = owner.post("/api/calls/outbound", json={**body, "to": "+79031112233", "purpose": "service"})
    assert resp.get_json()["error"]["details"]["rule"] == "dnc"
    closed = {"windows": [{"days": [1], "from": "00:00", "to": "00:01"}]}
    resp = owner.post("/api/calls/outbound", json={**body, "to": "+79051112233", "purpose": "service",
                                                   "schedule_json": closed})
    assert resp.status_code == 409 and resp.get_json()["error"]["details"]["rule"] == "outside_hours"
    assert resp.get_json()["error"]["details"]["next_allowed_at"]
    dnc_id = owner.get("/api/dnc").get_json()["items"][0]["id"]
    assert owner.delete(f"/api/dnc/{dnc_id}").status_code == 200
    assert owner.post("/api/calls/outbound", json={**body, "to": "+79031112233", "purpose": "service"}).status_code == 202
    actions = {a.action for a in AuditLog.select()}
    assert {"consent.grant", "consent.revoke", "call.outbound", "dnc.add", "dnc.remove"} <= actions


def test_campaign_end_to_end_through_real_workers(rig, app_for):
    t = make_telephony_tenant("ce2e", recording=False)
    rig.apply()
    rig.sim.set_behavior("7999111000*", outcome="answer", ring_ms=100, hangup_after_ms=400)
    rig.sim.set_behavior("79991110009", outcome="busy", ring_ms=100)
    owner = app_for(rig.settings).login_as("owner", t)
    c = _create(owner, t, limits_json={"max_concurrent": 3, "calls_per_minute": 600, "max_attempts": 2,
                                       "retry_delays_min": {"busy": 0}, "ring_timeout_s": 5})
    csv = "phone,name\n" + "".join(f"+7999111000{i},Клиент {i}\n" for i in range(10))
    assert _upload(owner, c["id"], csv.encode()).get_json()["accepted"] == 10
    env = settings_env(rig.settings)
    workers = [subprocess.Popen([str(BIN / "voiceai-worker")], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL) for _ in range(2)]
    try:
        resp = owner.post(f"/api/campaigns/{c['id']}/start")
        assert resp.status_code == 200 and resp.get_json()["status"] == "running"
        wait_until(lambda: Campaign.get_by_id(c["id"]).status == "finished", timeout=90, message="campaign finished")
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            try:
                w.wait(15)
            except subprocess.TimeoutExpired:
                w.kill()
    stats = owner.get(f"/api/campaigns/{c['id']}/stats").get_json()
    assert stats["contacts"]["done"] == 9 and stats["contacts"]["failed"] == 1 and stats["attempts"] == 11
    assert stats["reached"] == 9 and stats["reached_rate"] == 0.9 and stats["eta_seconds"] is None
    assert Call.select().where(Call.campaign == c["id"]).count() == 11
    types = [e["type"] for e in rig.events(t["project"].id) if e["entity"]["type"] == "campaign"]
    assert types[-1] == "campaign.finished"
