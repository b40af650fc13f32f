"""Numbers API: SIP connections, phone numbers, operator routes, the check and the test call.

The check runs against a fake SIP registrar over real UDP and asks the simulator (through a real
esl_app) for the gateway state; the test call goes through esl_app to the simulator.
"""
from __future__ import annotations

import stat
from pathlib import Path

import pytest

from core.seed import create_org, create_project
from models.saas import AuditLog
from models.telephony import SipConnection
from tests.fake_sip import FakeSipServer

TRUNK = {"name": "Мой провайдер", "provider_host": "127.0.0.1", "port": 5060, "auth_mode": "register",
         "login": "100", "password": "s3cret-pw", "allowed_ips": ["127.0.0.1"]}


@pytest.fixture()
def owner(api_on_rig):
    return api_on_rig


@pytest.fixture()
def api_on_rig(rig, app_for):
    org = create_org("Numbers", "numbers")
    project = create_project(org, "Телефония")
    clients = app_for(rig.settings)
    client = clients.login_as("owner", {"org": org, "project": project})
    client.rig = rig  # type: ignore[attr-defined]
    client.clients = clients  # type: ignore[attr-defined]
    client.tenant = {"org": org, "project": project}  # type: ignore[attr-defined]
    return client


def test_sip_connection_lifecycle_secrets_and_files(owner):
    rig = owner.rig
    bad = owner.post("/api/sip-connections", json={"name": "x", "provider_host": "http://sip.example.ru/",
                                                   "auth_mode": "register"})
    assert bad.status_code == 422
    fields = bad.get_json()["error"]["details"]["fields"]
    assert "provider_host" in fields
    bad = owner.post("/api/sip-connections", json={"name": "x", "provider_host": "sip.example.ru"})
    fields = bad.get_json()["error"]["details"]["fields"]
    assert fields == {"login": "Для регистрации у провайдера нужен логин",
                      "password": "Для регистрации у провайдера нужен пароль"}
    bad_ips = owner.post("/api/sip-connections", json={**TRUNK, "allowed_ips": ["999.1.1.1"]})
    assert "allowed_ips.0" in bad_ips.get_json()["error"]["details"]["fields"]

    created = owner.post("/api/sip-connections", json=TRUNK)
    assert created.status_code == 201, created.get_json()
    conn = created.get_json()
    assert conn["has_password"] is True and "password" not in conn and "s3cret" not in created.get_data(as_text=True)
    row = SipConnection.get_by_id(conn["id"])
    assert row.password_encrypted.startswith("v1:") and "s3cret" not in row.password_encrypted
    gw_file = Path(rig.settings.freeswitch_conf_dir) / "sip_profiles/external/voiceai_generated" / f"{conn['gateway_name']}.xml"
    assert gw_file.exists() and "s3cret-pw" in gw_file.read_text()  # FreeSWITCH needs it in clear
    assert stat.S_IMODE(gw_file.stat().st_mode) == 0o640
    assert conn["applied"].get("changed_gateways") == [conn["gateway_name"]], conn["applied"]
    # esl_app applied it: the simulator knows the gateway now
    from tests.support.telephony import wait_until
    wait_until(lambda: conn["gateway_name"] in rig.sim.gateways, message="gateway rescanned")

    upd = owner.patch(f"/api/sip-connections/{conn['id']}", json={"password": "n3w-secret"})
    assert upd.status_code == 200
    assert "n3w-secret" in gw_file.read_text()
    audit_rows = AuditLog.select().where(AuditLog.entity_id == conn["id"])
    assert all("s3cret" not in str(a.changes_json) and "n3w-secret" not in str(a.changes_json) for a in audit_rows)
    listed = owner.get("/api/sip-connections").get_json()["items"]
    assert [c["id"] for c in listed] == [conn["id"]]
    assert owner.delete(f"/api/sip-connections/{conn['id']}").status_code == 200
    assert not gw_file.exists()


def test_phone_number_validation_and_dialplan(owner):
    conn = owner.post("/api/sip-connections", json=TRUNK).get_json()
    bad = owner.post("/api/phone-numbers", json={"e164_number": "12345", "sip_connection_id": conn["id"]})
    assert bad.status_code == 422 and "e164_number" in bad.get_json()["error"]["details"]["fields"]
    bad_sched = owner.post("/api/phone-numbers", json={
        "e164_number": "8 (495) 123-45-67", "sip_connection_id": conn["id"],
        "schedule": {"timezone": "Europe/Moscow", "windows": [{"days": [9], "from": "25:00", "to": "18:00"}]}})
    assert bad_sched.status_code == 422
    assert any(k.startswith("schedule.windows.0") for k in bad_sched.get_json()["error"]["details"]["fields"])
    need_route = owner.post("/api/phone-numbers", json={
        "e164_number": "8 (495) 123-45-67", "sip_connection_id": conn["id"], "after_hours_action": "operator",
        "schedule": {"windows": [{"days": [1, 2, 3, 4, 5], "from": "09:00", "to": "18:00"}]}})
    assert "operator_route_id" in need_route.get_json()["error"]["details"]["fields"]

    ok = owner.post("/api/phone-numbers", json={"e164_number": "8 (495) 123-45-67", "sip_connection_id": conn["id"],
                                                "recording_enabled": True})
    assert ok.status_code == 201, ok.get_json()
    number = ok.get_json()
    assert number["e164_number"] == "+74951234567"
    dup = owner.post("/api/phone-numbers", json={"e164_number": "+7 495 123 45 67", "sip_connection_id": conn["id"]})
    assert dup.status_code == 409
    dp = Path(owner.rig.settings.freeswitch_conf_dir) / "dialplan/public/voiceai_generated" / f"number_{number['id']}.xml"
    assert dp.exists() and "74951234567" in dp.read_text() and "voiceai_recording=true" in dp.read_text()
    # the number answers through the simulator once esl_app reloaded the dialplan
    from tests.support.telephony import wait_until
    wait_until(lambda: any("74951234567" in str(ext.__dict__) for exts in owner.rig.sim.dialplan.contexts.values()
                           for ext in exts), message="dialplan reloaded")
    upd = owner.patch(f"/api/phone-numbers/{number['id']}", json={"recording_enabled": False})
    assert upd.status_code == 200 and "voiceai_recording=false" in dp.read_text()
    assert owner.delete(f"/api/phone-numbers/{number['id']}").status_code == 200 and not dp.exists()


def test_operator_routes(owner):
    conn = owner.post("/api/sip-connections", json=TRUNK).get_json()
    no_trunk = owner.post("/api/operator-routes", json={"name": "Мобильный", "kind": "external_number",
                                                        "target": "89161234567"})
    assert "sip_connection_id" in no_trunk.get_json()["error"]["details"]["fields"]
    ext = owner.post("/api/operator-routes", json={"name": "Мобильный", "kind": "external_number",
                                                   "target": "89161234567", "sip_connection_id": conn["id"]})
    assert ext.status_code == 201 and ext.get_json()["target"] == "+79161234567"
    group = owner.post("/api/operator-routes", json={"name": "Ресепшн", "kind": "ring_group", "target": "1001,1002",
                                                     "fallback_route_id": ext.get_json()["id"],
                                                     "whisper_enabled": True})
    assert group.status_code == 201
    routes_file = Path(owner.rig.settings.freeswitch_conf_dir) / "dialplan/voiceai_operators/voiceai_generated/operator_routes.xml"
    text = routes_file.read_text()
    assert "user/1001" in text and "+79161234567" in text
    self_ref = owner.patch(f"/api/operator-routes/{group.get_json()['id']}",
                           json={"fallback_route_id": group.get_json()["id"]})
    assert self_ref.status_code == 422
    assert len(owner.get("/api/operator-routes").get_json()["items"]) == 2


def test_check_success_wrong_password_unreachable_wrong_host(owner):
    rig = owner.rig
    with FakeSipServer(users={"100": "s3cret-pw"}) as sip:
        conn = owner.post("/api/sip-connections", json={**TRUNK, "port": sip.port}).get_json()
        ok = owner.post(f"/api/sip-connections/{conn['id']}/check")
        assert ok.status_code == 200, ok.get_json()
        body = ok.get_json()
        assert body["ok"] is True and [s["name"] for s in body["steps"]][:3] == ["dns", "options", "register"]
        assert SipConnection.get_by_id(conn["id"]).status == "ok"

        owner.patch(f"/api/sip-connections/{conn['id']}", json={"password": "wrong-pass"})
        rig.sim.set_gateway_behavior(conn["gateway_name"], state="FAIL_WAIT", status="DOWN", code=403)
        bad = owner.post(f"/api/sip-connections/{conn['id']}/check")
        assert bad.status_code == 502
        err = bad.get_json()["error"]
        assert err["code"] == "SIP_CONNECT_FAILED" and err["human_title"] == "Не удалось подключить номер"
        assert "парол" in err["details"]["reason"].lower()
        saved = SipConnection.get_by_id(conn["id"])
        assert saved.status == "failed" and saved.last_error_code == "SIP_CONNECT_FAILED"  # kept despite the error

    with FakeSipServer(users={"100": "s3cret-pw"}, silent=True) as silent:
        conn2 = owner.post("/api/sip-connections", json={**TRUNK, "name": "Молчит", "port": silent.port}).get_json()
        resp = owner.post(f"/api/sip-connections/{conn2['id']}/check")
        assert resp.status_code == 502
        assert "не ответил" in resp.get_json()["error"]["details"]["reason"]

    conn3 = owner.post("/api/sip-connections", json={**TRUNK, "name": "Опечатка",
                                                     "provider_host": "sip.no-such-provider.invalid"}).get_json()
    resp = owner.post(f"/api/sip-connections/{conn3['id']}/check")
    assert resp.status_code == 502 and "DNS" in resp.get_json()["error"]["details"]["reason"]


def test_test_call_success_and_failure(owner):
    rig = owner.rig
    conn = owner.post("/api/sip-connections", json=TRUNK).get_json()
    from tests.support.telephony import wait_until
    wait_until(lambda: conn["gateway_name"] in rig.sim.gateways, message="gateway loaded")
    rig.sim.set_behavior("79161234567", outcome="answer", ring_ms=200, hangup_after_ms=800)
    ok = owner.post(f"/api/sip-connections/{conn['id']}/test-call", json={"to": "8 916 123-45-67", "timeout_s": 10})
    assert ok.status_code == 200, ok.get_json()
    call_id = ok.get_json()["call_id"]
    sim_call = wait_until(lambda: next((c for c in rig.sim.calls if c.variables.get("voiceai_call_id") == call_id), None),
                          message="sim call")
    wait_until(lambda: any("test_call_ru.wav" in p.path for p in sim_call.heard), message="phrase played")
    rig.sim.set_behavior("79161230000", outcome="busy")
    busy = owner.post(f"/api/sip-connections/{conn['id']}/test-call", json={"to": "+79161230000", "timeout_s": 5})
    assert busy.status_code == 502
    err = busy.get_json()["error"]
    assert err["code"] == "TEST_CALL_FAILED" and err["human_title"] == "Тест-звонок не прошёл"
    assert err["details"]["outcome"] == "busy" and "занят" in err["details"]["reason"].lower()
    card = owner.get(f"/api/calls/{err['details']['call_id']}").get_json()
    assert card["is_test"] and card["outcome"] == "busy", {k: card.get(k) for k in ("state", "outcome", "ended_at", "hangup_cause")}


def test_numbers_are_tenant_isolated(owner):
    conn = owner.post("/api/sip-connections", json=TRUNK).get_json()
    number = owner.post("/api/phone-numbers", json={"e164_number": "+74957654321",
                                                    "sip_connection_id": conn["id"]}).get_json()
    route = owner.post("/api/operator-routes", json={"name": "Ext", "kind": "sip_extension",
                                                     "target": "1001"}).get_json()
    other = owner.clients.stranger()
    other_project = other.get("/api/projects").get_json()["items"][0]["id"]
    other = other.with_(project_id=other_project)
    for method, path, body in [
        ("GET", f"/api/sip-connections/{conn['id']}", None),
        ("PATCH", f"/api/sip-connections/{conn['id']}", {"name": "x"}),
        ("DELETE", f"/api/sip-connections/{conn['id']}", None),
        ("POST", f"/api/sip-connections/{conn['id']}/check", None),
        ("POST", f"/api/sip-connections/{conn['id']}/test-call", {"to": "+79161234567"}),
        ("GET", f"/api/phone-numbers/{number['id']}", None),
        ("PATCH", f"/api/phone-numbers/{number['id']}", {"label": "x"}),
        ("DELETE", f"/api/phone-numbers/{number['id']}", None),
        ("PATCH", f"/api/operator-routes/{route['id']}", {"name": "x"}),
        ("DELETE", f"/api/operator-routes/{route['id']}", None),
    ]:
        assert other.request(method, path, json=body).status_code == 404, (method, path)
    # and another tenant's trunk cannot be referenced from a number
    other_conn = other.post("/api/sip-connections", json={**TRUNK, "name": "Свой"}).get_json()
    sneaky = owner.post("/api/phone-numbers", json={"e164_number": "+74950001122",
                                                    "sip_connection_id": other_conn["id"]})
    assert sneaky.status_code == 422
    assert other.get("/api/sip-connections").get_json()["items"][0]["id"] == other_conn["id"]
