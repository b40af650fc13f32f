"""Calls API: Inbox filters, transcript search, keyset pages, the call card, "report a problem", RBAC."""
from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest

from core.errors import ValidationFailed
from models.agents import Agent
from models.billing import CostBreakdown
from models.calls import Call, CallIssue, HandoffPacket, ToolInvocation, Transcript
from models.saas import AuditLog
from tests.support.api import login
from web.api.calls import number_variants, parse_call_filters

T0 = dt.datetime(2026, 2, 10, 9, 0, tzinfo=dt.timezone.utc)


def _call(project_id, minutes: int, **kw) -> Call:
    defaults = dict(project=project_id, direction="inbound", from_number="79161234567", to_number="+74951234567",
                    state="ended", started_at=T0 + dt.timedelta(minutes=minutes),
                    ended_at=T0 + dt.timedelta(minutes=minutes, seconds=40), duration_s=40, outcome="completed",
                    trace_id=uuid.uuid4().hex, cost_total=Decimal("3.5000"))
    defaults.update(kw)
    return Call.create(**defaults)


@pytest.fixture()
def inbox(api, tenant):
    t = tenant("inbox", roles=("owner", "operator", "billing_manager"))
    pid = uuid.UUID(t["project_id"])
    agent = Agent.create(project=pid, name="Администратор клиники")
    calls = [_call(pid, i, direction="outbound" if i % 3 == 0 else "inbound",
                   outcome="busy" if i % 4 == 0 else "completed", has_errors=(i == 5),
                   agent=agent.id if i % 2 == 0 else None,
                   from_number=f"7916000{i:04d}") for i in range(12)]
    live = _call(pid, 100, state="in_progress", ended_at=None, outcome=None, human_status="Агент отвечает")
    Transcript.create(project=pid, call=calls[7].id, speaker="caller", text="Хочу записаться к стоматологу на завтра",
                      ts_start_ms=1200, ts_end_ms=3400, stt_confidence=0.91)
    Transcript.create(project=pid, call=calls[7].id, speaker="agent", text="Конечно, на какое время вам удобно?",
                      heard_text="Конечно, на какое", interrupted=True, ts_start_ms=3600)
    Transcript.create(project=pid, call=calls[3].id, speaker="caller", text="Перенесите доставку", ts_start_ms=0)
    ToolInvocation.create(project=pid, call=calls[7].id, tool_name="calendar.book", status="failed",
                          duration_ms=5012, error_code="INTEGRATION_TIMEOUT", trace_id="tr-tool")
    CallIssue.create(project=pid, call=calls[7].id, code="STT_LOW_CONFIDENCE", trace_id="tr-issue")
    HandoffPacket.create(project=pid, call=calls[7].id, reason="caller_request", reason_text="Клиент попросил оператора",
                         summary="Запись к стоматологу", status="accepted")
    CostBreakdown.create(project=pid, entity_type="call", entity_id=calls[7].id, telephony_cost=Decimal("1.2"),
                         stt_cost=Decimal("0.5"), llm_cost=Decimal("0.3"), tts_cost=Decimal("0.4"),
                         platform_fee=Decimal("0.1"), total_cost=Decimal("2.5"))
    clients = {role: api.with_(token=login(api, *t["users"][role])["access_token"], project_id=t["project_id"])
               for role in t["users"]}
    return {"t": t, "pid": pid, "calls": calls, "live": live, "agent": agent, **clients}


def _ids(resp) -> list[str]:
    assert resp.status_code == 200, resp.get_json()
    return [c["id"] for c in resp.get_json()["items"]]


def test_filters_and_search(inbox):
    owner, calls = inbox["owner"], inbox["calls"]
    all_ids = _ids(owner.get("/api/calls?limit=200"))
    assert all_ids[0] == str(inbox["live"].id) and len(all_ids) == 13  # newest first
    assert _ids(owner.get("/api/calls?live=true")) == [str(inbox["live"].id)]
    assert set(_ids(owner.get("/api/calls?direction=outbound"))) == {str(c.id) for c in calls if c.direction == "outbound"}
    assert set(_ids(owner.get("/api/calls?outcome=busy"))) == {str(c.id) for c in calls if c.outcome == "busy"}
    assert _ids(owner.get("/api/calls?has_errors=true")) == [str(calls[5].id)]
    assert set(_ids(owner.get(f"/api/calls?agent_id={inbox['agent'].id}"))) == {str(c.id) for c in calls[::2]}
    names = {c["id"]: c["agent_name"] for c in owner.get("/api/calls?limit=200").get_json()["items"]}
    assert names[str(calls[0].id)] == "Администратор клиники" and names[str(calls[1].id)] is None
    assert _ids(owner.get("/api/calls?number=+7 916 000-00-04")) == [str(calls[4].id)]
    assert len(_ids(owner.get("/api/calls?number=84951234567&limit=200"))) == 13  # our number, 8 -> 7
    window = owner.get("/api/calls?from=2026-02-10T09:03:00Z&to=2026-02-10T09:06:00Z")
    assert _ids(window) == [str(calls[5].id), str(calls[4].id), str(calls[3].id)]
    assert len(_ids(owner.get("/api/calls?from=2026-02-10&to=2026-02-10&limit=200"))) == 13  # the whole day
    assert _ids(owner.get("/api/calls?from=2026-02-11")) == [] and _ids(owner.get("/api/calls?to=2026-02-09")) == []
    # transcript search is full-text with Russian word forms: "стоматолог" finds "стоматологу"
    assert _ids(owner.get("/api/calls?q=стоматолог")) == [str(calls[7].id)]
    assert _ids(owner.get("/api/calls?q=доставка")) == [str(calls[3].id)]
    assert _ids(owner.get("/api/calls?q=доставка&direction=inbound")) == []  # calls[3] is outbound
    item = owner.get("/api/calls?q=стоматолог").get_json()["items"][0]
    assert item["outcome_label"] == "Разговор состоялся" and item["cost_total"] == "3.5000"


def test_cursor_pages_cover_everything_once(inbox):
    owner = inbox["owner"]
    seen, cursor = [], None
    for _ in range(10):
        resp = owner.get("/api/calls?limit=5" + (f"&cursor={cursor}" if cursor else ""))
        seen += _ids(resp)
        cursor = resp.get_json()["next_cursor"]
        if cursor is None:
            break
    assert seen == _ids(owner.get("/api/calls?limit=200")) and len(seen) == len(set(seen)) == 13
    # ties on started_at are broken by id, so equal timestamps never repeat or vanish across pages
    pid = inbox["pid"]
    for _ in range(4):
        _call(pid, 200)
    first = owner.get("/api/calls?limit=2")
    second = owner.get(f"/api/calls?limit=2&cursor={first.get_json()['next_cursor']}")
    assert set(_ids(first)).isdisjoint(_ids(second)) and len(_ids(second)) == 2


def test_bad_filters_are_reported_per_field(inbox):
    resp = inbox["owner"].get("/api/calls?direction=sideways&outcome=nope&from=yesterday&agent_id=1&cursor=zzz")
    assert resp.status_code == 422
    fields = resp.get_json()["error"]["details"]["fields"]
    assert {"direction", "outcome", "from", "agent_id"} <= set(fields)
    assert "inbound" in fields["direction"]
    assert inbox["owner"].get("/api/calls?cursor=zzz").status_code == 422
    assert inbox["owner"].get("/api/calls?from=2026-02-11&to=2026-02-10").status_code == 422


def test_pure_filter_parsing():
    f = parse_call_filters({"from": "2026-02-01", "to": "2026-02-01", "outcome": "busy, no_answer",
                            "has_errors": "false", "q": "  запись  "})
    assert f.started_to - f.started_from == dt.timedelta(days=1)
    assert f.outcomes == ("busy", "no_answer") and f.has_errors is False and f.q == "запись"
    assert number_variants("8 (916) 123-45-67") == ("79161234567", "+79161234567")
    with pytest.raises(ValidationFailed):
        parse_call_filters({"number": "12"})


def test_call_card_details(inbox):
    owner, call = inbox["owner"], inbox["calls"][7]
    card = owner.get(f"/api/calls/{call.id}").get_json()
    assert [t["speaker"] for t in card["transcript"]] == ["caller", "agent"]
    assert card["transcript"][0]["confidence"] == pytest.approx(0.91) and card["transcript"][0]["ts_start_ms"] == 1200
    assert card["transcript"][1]["interrupted"] and card["transcript"][1]["heard_text"] == "Конечно, на какое"
    tool = card["tool_invocations"][0]
    assert tool["status"] == "failed" and tool["duration_ms"] == 5012 and tool["error_title"] == "Интеграция недоступна"
    issue = card["issues"][0]
    assert issue["title"] == "Система плохо слышит" and issue["how_to_fix"][0].startswith("Попросите повторить")
    assert card["cost"]["total"] == "2.5000"
    assert {l["component"]: l["amount"] for l in card["cost"]["lines"]}["telephony"] == "1.2000"
    assert card["handoff_packets"][0]["reason_text"] == "Клиент попросил оператора"
    assert card["recording_url"] is None  # no recording stored
    Call.update(recording_path="recordings/x.wav").where(Call.id == call.id).execute()
    assert owner.get(f"/api/calls/{call.id}").get_json()["recording_url"] == f"/api/calls/{call.id}/recording"


def test_operator_sees_calls_but_no_costs_billing_manager_no_calls(inbox):
    call = inbox["calls"][7]
    card = inbox["operator"].get(f"/api/calls/{call.id}").get_json()
    assert card["transcript"] and card["cost"] is None and "cost_total" not in card
    assert all("cost_total" not in c for c in inbox["operator"].get("/api/calls").get_json()["items"])
    assert inbox["billing_manager"].get("/api/calls").status_code == 403
    assert inbox["billing_manager"].get(f"/api/calls/{call.id}").status_code == 403


def test_report_issue_is_audited_and_flags_the_call(inbox):
    op, call = inbox["operator"], inbox["calls"][1]
    resp = op.post(f"/api/calls/{call.id}/issue", json={"comment": "Агент перепутал адрес клиники"})
    assert resp.status_code == 201
    body = resp.get_json()
    assert body["source"] == "user" and body["title"] == "Сообщение о проблеме" and body["how_to_fix"]
    assert Call.get_by_id(call.id).has_errors
    assert str(call.id) in _ids(op.get("/api/calls?has_errors=true"))
    row = AuditLog.get(AuditLog.action == "call.issue_reported")
    assert row.entity_id == str(call.id) and row.status_code == 201
    assert op.post(f"/api/calls/{call.id}/issue", json={"comment": ""}).status_code == 422
    coded = op.post(f"/api/calls/{call.id}/issue", json={"comment": "тишина", "code": "STT_LOW_CONFIDENCE"}).get_json()
    assert coded["title"] == "Система плохо слышит"


def test_other_tenant_gets_404(inbox, api, tenant):
    other = tenant("other")
    stranger = api.with_(token=login(api, *other["users"]["owner"])["access_token"], project_id=other["project_id"])
    call = inbox["calls"][0]
    assert stranger.get(f"/api/calls/{call.id}").status_code == 404
    assert stranger.post(f"/api/calls/{call.id}/issue", json={"comment": "x"}).status_code == 404
    assert _ids(stranger.get("/api/calls")) == []
    foreign = stranger.get("/api/calls", headers={"X-Project-Id": inbox["t"]["project_id"]})
    assert foreign.status_code == 404
