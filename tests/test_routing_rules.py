"""Inbound routing rules: pure decisions, the API, and calls routed by them through esl_app."""
from __future__ import annotations

import datetime as dt

from core.telephony.routing import Rule, decide, validate_match
from models.agents import Agent, AgentVersion
from models.calls import Call, CallEvent
from tests.support.telephony import make_telephony_tenant, wait_until

NOW = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.timezone.utc)  # 12:00 in Moscow, Wednesday


def test_first_matching_rule_by_priority_wins():
    rules = [Rule("vip", 10, {"caller_prefixes": ["7916"]}, "agent", agent_id="VIP"),
             Rule("block", 5, {"caller_regex": r"^79990000000$"}, "hangup"),
             Rule("night", 1, {"schedule": {"timezone": "Europe/Moscow",
                                            "windows": [{"days": [1, 2, 3, 4, 5, 6, 7], "from": "22:00", "to": "07:00"}]}},
                  "operator", operator_route_id="R"),
             Rule("off", 0, {}, "hangup", enabled=False)]
    assert decide(rules, "+7 916 111-22-33", NOW, "DEFAULT").agent_id == "VIP"
    assert decide(rules, "79990000000", NOW, "DEFAULT").action == "hangup"
    assert decide(rules, "74950000000", NOW, "DEFAULT") .agent_id == "DEFAULT"
    night = NOW.replace(hour=20)  # 23:00 in Moscow
    assert decide(rules, "74950000000", night, "DEFAULT").action == "operator"


def test_match_validation_messages():
    errors = validate_match({"caller_prefixes": ["x"], "caller_regex": "(", "color": "red",
                             "schedule": {"windows": [{"days": [8], "from": "09:00", "to": "18:00"}]}})
    assert set(errors) >= {"match.caller_prefixes", "match.caller_regex", "match.color"}
    assert any(k.startswith("match.schedule") for k in errors)
    assert validate_match({"caller_prefixes": ["7916"]}) == {}


def test_rules_route_calls_to_another_agent_or_away(rig, app_for):
    t = make_telephony_tenant("route", recording=False)
    vip = Agent.create(project=t["project"].id, name="VIP")
    vip_version = AgentVersion.create(project=t["project"].id, agent=vip.id, version=1, state="published")
    vip.published_version = vip_version.id
    vip.save()
    owner = app_for(rig.settings).login_as("owner", t)
    bad = owner.post("/api/routing-rules", json={"action": "agent"})
    assert bad.status_code == 422 and "agent_id" in bad.get_json()["error"]["details"]["fields"]
    r1 = owner.post("/api/routing-rules", json={"name": "VIP", "priority": 10, "phone_number_id": str(t["number"].id),
                                                "match": {"caller_prefixes": ["7916"]}, "action": "agent",
                                                "agent_id": str(vip.id)})
    assert r1.status_code == 201, r1.get_json()
    r2 = owner.post("/api/routing-rules", json={"name": "Спам", "priority": 5, "match": {"caller_regex": "^79990000000$"},
                                                "action": "message", "message_text": "Звонки с этого номера не принимаются."})
    assert r2.status_code == 201 and r2.get_json()["prompt"].endswith(f"routing_{r2.get_json()['id']}.wav")
    assert len(owner.get("/api/routing-rules").get_json()["items"]) == 2
    rig.apply()

    vip_call = rig.sim.inbound_call(caller="79161234567", destination="74951234567")
    row = rig.call_row(vip_call.uuid, state="in_progress")
    assert row.agent_id == vip.id and row.agent_version_id == vip_version.id
    assert row.metadata_json["routing"]["rule_id"] == r1.get_json()["id"]
    vip_call.hangup()

    plain = rig.sim.inbound_call(caller="74957654321", destination="74951234567")
    assert rig.call_row(plain.uuid, state="in_progress").agent_id == t["agent"].id
    plain.hangup()

    spam = rig.sim.inbound_call(caller="79990000000", destination="74951234567")
    spam.wait_hangup(timeout=60)
    assert any(p.path.endswith(f"routing_{r2.get_json()['id']}.wav") and p.done for p in spam.heard)
    row = rig.call_row(spam.uuid, ended=True)
    assert CallEvent.select().where((CallEvent.call == row.id) & (CallEvent.type == "routing_rule")).exists()
    # another tenant cannot see or change the rules
    stranger = app_for(rig.settings).stranger()
    sp = stranger.get("/api/projects").get_json()["items"][0]["id"]
    assert stranger.with_(project_id=sp).request("DELETE", f"/api/routing-rules/{r1.get_json()['id']}").status_code == 404
