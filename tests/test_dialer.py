"""The campaign dialer against the FreeSWITCH simulator and a real esl_app process.

The dialer runs in the test process (``Dialer.step``, the same code the RQ loops run) except where a
test needs a real worker: the crash test kills a real subprocess with SIGKILL mid-claim, and the
end-to-end test starts real ``voiceai-worker`` processes and drives everything through the API.
"""
from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import time
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from core.campaigns.dialer import Dialer
from core.telephony.command_queue import CommandQueue
from models.billing import CostBreakdown, PricingProfile
from models.calls import Call, Transcript
from models.campaigns import Campaign, CampaignContact, CampaignResult, CampaignRun
from models.messaging import Consent, DncEntry
from tests.support.telephony import ROOT, make_telephony_tenant, settings_env, wait_until

ALWAYS = {"always_open": True}


def add_campaign(t: dict, purpose: str = "service", limits: dict | None = None, schedule: dict | None = None,
                 phones: list[str] = (), tz: str | None = None) -> Campaign:
    c = Campaign.create(project=t["project"].id, name="Тест", purpose=purpose, agent=t["agent"].id,
                        sip_connection=t["conn"].id, schedule_json=schedule if schedule is not None else ALWAYS,
                        limits_json={"max_concurrent": 5, "calls_per_minute": 600, "ring_timeout_s": 5,
                                     **(limits or {})}, status="running")
    for i, phone in enumerate(phones):
        CampaignContact.create(project=t["project"].id, campaign=c.id, phone_e164=phone, name=f"Контакт {i}",
                               source_row=i + 2, timezone=tz, variables_json={"order": str(i)})
    return c


def drive(dialer: Dialer, cid, until, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dialer.step(cid)
        if until():
            return
        time.sleep(0.05)
    raise AssertionError("dialer did not reach the expected state")


def contact(cid, phone) -> CampaignContact:
    return CampaignContact.get((CampaignContact.campaign == cid) & (CampaignContact.phone_e164 == phone))


def finished(cid) -> bool:
    return Campaign.get_by_id(cid).status == "finished"


def test_retries_per_outcome_and_results(rig):
    t = make_telephony_tenant("dial1", recording=False)
    rig.apply()
    rig.sim.set_behavior("79990000001", outcome="answer", ring_ms=100, hangup_after_ms=300)
    rig.sim.set_behavior("79990000002", outcome="busy", ring_ms=100)
    rig.sim.set_behavior("79990000003", outcome="no_answer", ring_ms=100)
    rig.sim.set_behavior("79990000004", outcome="unallocated", ring_ms=50)
    c = add_campaign(t, limits={"max_attempts": 2, "retry_delays_min": {"busy": 0, "no_answer": 0.02},
                                "ring_timeout_s": 5},
                     phones=["+79990000001", "+79990000002", "+79990000003", "+79990000004"])
    dialer = Dialer(rig.redis)
    drive(dialer, c.id, lambda: finished(c.id), timeout=60)
    states = {p: (x.state, x.attempts, x.last_outcome) for p in ("+79990000001", "+79990000002", "+79990000003",
                                                                  "+79990000004") for x in [contact(c.id, p)]}
    assert states == {"+79990000001": ("done", 1, "completed"), "+79990000002": ("failed", 2, "busy"),
                      "+79990000003": ("failed", 2, "no_answer"), "+79990000004": ("failed", 1, "unallocated")}
    # the no-answer retry waited for its delay (1.2 s), measured on the rows
    runs = list(CampaignRun.select().where(CampaignRun.contact == contact(c.id, "+79990000003").id)
                .order_by(CampaignRun.attempt_no))
    assert [r.attempt_no for r in runs] == [1, 2] and runs[1].claimed_at - runs[0].ended_at >= dt.timedelta(seconds=1.1)
    assert all(r.state == "ended" and r.call_id and str(r.originate_command_id) == str(r.call_id) for r in runs)
    results = {r.contact.phone_e164: r for r in CampaignResult.select().where(CampaignResult.campaign == c.id)}
    assert set(results) == set(states) and results["+79990000001"].outcome == "completed"
    assert results["+79990000002"].attempts == 2
    # every attempt is a priced call with a breakdown; answered calls cost money
    answered = Call.get((Call.campaign == c.id) & (Call.to_number == "+79990000001"))
    assert CostBreakdown.get(CostBreakdown.entity_id == answered.id).total_cost == answered.cost_total
    events = [e["type"] for e in rig.events(t["project"].id) if e["entity"]["type"] == "campaign"]
    assert "campaign.progress" in events and events[-1] == "campaign.finished"
    assert CampaignRun.select().where(CampaignRun.campaign == c.id).count() == 6
    assert Call.select().where(Call.campaign == c.id).count() == 6


def test_dnc_added_mid_campaign_is_never_dialled(rig, app_for):
    t = make_telephony_tenant("dial2", recording=False)
    rig.apply()
    rig.sim.set_behavior("7999000001*", outcome="answer", ring_ms=100, hangup_after_ms=1500)
    phones = ["+79990000011", "+79990000012", "+79990000013"]
    c = add_campaign(t, limits={"max_concurrent": 1}, phones=phones)
    dialer = Dialer(rig.redis)
    drive(dialer, c.id, lambda: contact(c.id, phones[0]).state == "in_progress")
    owner = app_for(rig.settings).login_as("owner", t)
    resp = owner.post("/api/dnc", json={"phone": "8 999 000-00-13", "reason": "просил не звонить"})
    assert resp.status_code == 201 and resp.get_json()["phone_e164"] == phones[2]
    drive(dialer, c.id, lambda: finished(c.id), timeout=60)
    assert contact(c.id, phones[2]).state == "excluded" and contact(c.id, phones[2]).exclusion_reason == "dnc"
    assert not Call.select().where(Call.to_number == phones[2]).exists()
    assert {contact(c.id, p).state for p in phones[:2]} == {"done"}
    assert owner.get("/api/dnc").get_json()["items"][0]["phone_e164"] == phones[2]


def test_pause_and_resume_through_the_api(rig, app_for):
    t = make_telephony_tenant("dial3", recording=False)
    rig.apply()
    rig.sim.set_behavior("7999000002*", outcome="answer", ring_ms=100, hangup_after_ms=200)
    phones = [f"+7999000002{i}" for i in range(4)]
    c = add_campaign(t, limits={"max_concurrent": 1}, phones=phones)
    owner = app_for(rig.settings).login_as("owner", t)
    dialer = Dialer(rig.redis)
    drive(dialer, c.id, lambda: Call.select().where(Call.campaign == c.id).count() >= 1)
    resp = owner.post(f"/api/campaigns/{c.id}/pause")
    assert resp.status_code == 200 and resp.get_json()["status"] == "paused"
    drive(dialer, c.id, lambda: CampaignRun.select().where((CampaignRun.campaign == c.id)
                                                           & (CampaignRun.state != "ended")).count() == 0)
    paused_calls = Call.select().where(Call.campaign == c.id).count()
    for _ in range(10):
        dialer.step(c.id)
    assert Call.select().where(Call.campaign == c.id).count() == paused_calls < 4
    assert owner.post(f"/api/campaigns/{c.id}/pause").status_code == 409
    resp = owner.post(f"/api/campaigns/{c.id}/resume")
    assert resp.status_code == 200 and resp.get_json()["status"] == "running"
    drive(dialer, c.id, lambda: finished(c.id), timeout=60)
    assert {contact(c.id, p).state for p in phones} == {"done"}
    stats = owner.get(f"/api/campaigns/{c.id}/stats").get_json()
    assert stats["contacts"]["done"] == 4 and stats["reached_rate"] == 1.0 and stats["attempts"] == 4
    audit = [a.action for a in __import__("models.saas", fromlist=["AuditLog"]).AuditLog.select()]
    assert "campaign.pause" in audit and "campaign.resume" in audit


def test_budget_limit_pauses_campaign_and_emits_event(rig, app_for):
    t = make_telephony_tenant("dial4", recording=False)
    rig.apply()
    PricingProfile.create(project=t["project"].id, name="Дорогой", rates_json={"telephony_per_min": "600"})
    rig.sim.set_behavior("7999000003*", outcome="answer", ring_ms=50, hangup_after_ms=1200)
    phones = [f"+7999000003{i}" for i in range(6)]
    c = add_campaign(t, limits={"max_concurrent": 1, "budget": "15"}, phones=phones)
    dialer = Dialer(rig.redis)
    drive(dialer, c.id, lambda: Campaign.get_by_id(c.id).status == "paused", timeout=60)
    camp = Campaign.get_by_id(c.id)
    assert camp.pause_reason == "BUDGET_LIMIT_REACHED"
    spent = sum(x.cost_total for x in Call.select().where(Call.campaign == c.id))
    assert spent >= Decimal("15") and Call.select().where(Call.campaign == c.id).count() < 6
    budget_events = [e for e in rig.events(t["project"].id) if e["type"] == "budget.threshold_reached"]
    assert len(budget_events) == 1 and budget_events[0]["payload"]["error_code"] == "BUDGET_LIMIT_REACHED"
    owner = app_for(rig.settings).login_as("owner", t)
    resp = owner.post(f"/api/campaigns/{c.id}/resume")
    assert resp.status_code == 402 and resp.get_json()["error"]["code"] == "BUDGET_LIMIT_REACHED"
    stats = owner.get(f"/api/campaigns/{c.id}/stats").get_json()
    assert Decimal(stats["cost_total"]) >= Decimal("15") and stats["pause_reason"] == "BUDGET_LIMIT_REACHED"


_KILLER = textwrap.dedent("""
    import os, signal, sys, uuid
    from core.config import Settings, set_settings
    from models.base import bind_database
    import redis
    settings = Settings.from_env()
    set_settings(settings)
    db = bind_database(settings.database_url)
    from core.campaigns.dialer import Dialer
    r = redis.Redis.from_url(settings.redis_url)
    mode = sys.argv[2]
    dialer = Dialer(r, wid="doomed")
    if mode == "after_commit":
        dialer.step(uuid.UUID(sys.argv[1]), on_committed=lambda: os.kill(os.getpid(), signal.SIGKILL))
    else:  # queued but not yet marked originating
        original = dialer.submit
        def submit_then_die(commands):
            from core.telephony.command_queue import CommandQueue
            for cmd in commands:
                CommandQueue(r, dialer.node).submit(cmd)
            os.kill(os.getpid(), signal.SIGKILL)
        dialer.submit = submit_then_die
        dialer.step(uuid.UUID(sys.argv[1]))
""")


@pytest.mark.parametrize("mode", ["after_commit", "after_submit"])
def test_worker_killed_mid_claim_neither_loses_nor_double_dials(rig, mode):
    t = make_telephony_tenant("dialk" + mode[6:9], recording=False)
    rig.apply()
    rig.sim.set_behavior("7999000004*", outcome="answer", ring_ms=100, hangup_after_ms=300)
    phones = ["+79990000041", "+79990000042"]
    c = add_campaign(t, limits={"max_concurrent": 5}, phones=phones)
    proc = subprocess.run([sys.executable, "-c", _KILLER, str(c.id), mode], env=settings_env(rig.settings), cwd=ROOT,
                          capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    runs = list(CampaignRun.select().where(CampaignRun.campaign == c.id))
    # the first step of a campaign has one token: one attempt recorded, then the process died
    (run,) = runs
    assert run.state == "claimed" and run.claimed_by == "doomed"
    assert contact(c.id, Call.get_by_id(run.call_id).to_number).state == "in_progress"
    seen = rig.redis.get(f"tel:cmd:originate-{run.call_id}:seen")
    assert bool(seen) == (mode == "after_submit")
    # a healthy dialer: a fresh claim is left alone, a stale one (older than STALE_CLAIM_S) is re-queued once
    later = lambda: dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=20)  # noqa: E731
    healthy = Dialer(rig.redis, clock=later)
    drive(healthy, c.id, lambda: finished(c.id), timeout=60)
    assert {contact(c.id, p).state for p in phones} == {"done"}
    for p in phones:
        calls = Call.select().where(Call.to_number == p)
        assert calls.count() == 1
        sim_calls = [x for x in rig.sim.calls if x.uuid == calls[0].fs_uuid]
        assert len(sim_calls) == 1
    assert len(rig.sim.calls) == 2, "each contact dialled exactly once"
    assert CampaignRun.get_by_id(run.id).state == "ended"


def _zone_with_local_hour(lo: int = 10, hi: int = 18) -> str:
    now = dt.datetime.now(dt.timezone.utc)
    for offset in range(-12, 13):
        name = f"Etc/GMT{'+' if offset <= 0 else '-'}{abs(offset)}" if offset else "UTC"
        if lo <= now.astimezone(ZoneInfo(name)).hour < hi:
            return name
    raise AssertionError("no zone")


def test_debt_collection_cap_one_interaction_a_day_across_campaigns(rig):
    t = make_telephony_tenant("debt", recording=False)
    rig.apply()
    rig.sim.set_behavior("79990000051", outcome="answer", ring_ms=50, hangup_after_ms=300)
    zone = _zone_with_local_hour()
    first = add_campaign(t, purpose="debt_collection", phones=["+79990000051"], tz=zone)
    dialer = Dialer(rig.redis)
    drive(dialer, first.id, lambda: finished(first.id))
    answered = Call.get(Call.campaign == first.id).answered_at
    assert answered is not None
    second = add_campaign(t, purpose="debt_collection", phones=["+79990000051"], tz=zone)
    for _ in range(5):
        dialer.step(second.id)
    row = contact(second.id, "+79990000051")
    assert row.state == "pending" and row.attempts == 0
    assert row.next_attempt_at >= answered + dt.timedelta(days=1) - dt.timedelta(seconds=1)
    assert Call.select().where(Call.campaign == second.id).count() == 0
    # a service campaign to the same person is not capped
    third = add_campaign(t, purpose="service", phones=["+79990000051"])
    drive(dialer, third.id, lambda: finished(third.id))


def test_advertising_only_with_consent_and_revocation_applies_at_claim(rig):
    t = make_telephony_tenant("adv", recording=False)
    rig.apply()
    rig.sim.set_behavior("7999000006*", outcome="answer", ring_ms=50, hangup_after_ms=200)
    pid = t["project"].id
    Consent.create(project=pid, phone_e164="+79990000061", purpose="advertising", channel="any")
    revoked = Consent.create(project=pid, phone_e164="+79990000062", purpose="advertising", channel="call")
    c = add_campaign(t, purpose="advertising", phones=["+79990000061", "+79990000062", "+79990000063"])
    revoked.revoked_at = dt.datetime.now(dt.timezone.utc)
    revoked.save()
    drive(Dialer(rig.redis), c.id, lambda: finished(c.id))
    assert contact(c.id, "+79990000061").state == "done"
    for p in ("+79990000062", "+79990000063"):
        assert (contact(c.id, p).state, contact(c.id, p).exclusion_reason) == ("excluded", "no_consent")
        assert not Call.select().where(Call.to_number == p).exists()


def test_opt_out_said_during_the_call_goes_to_dnc(rig):
    t = make_telephony_tenant("optout", recording=False)
    rig.apply()
    rig.sim.set_behavior("79990000071", outcome="answer", ring_ms=50, hangup_after_ms=1500)
    c = add_campaign(t, phones=["+79990000071"])
    dialer = Dialer(rig.redis)
    drive(dialer, c.id, lambda: Call.select().where((Call.campaign == c.id) & Call.answered_at.is_null(False)).exists())
    call = Call.get(Call.campaign == c.id)
    Transcript.create(project=t["project"].id, call=call.id, speaker="caller", text="Не звоните мне больше, пожалуйста",
                      ts_start_ms=500)
    drive(dialer, c.id, lambda: finished(c.id))
    entry = DncEntry.get((DncEntry.project == t["project"].id) & (DncEntry.phone_e164 == "+79990000071"))
    assert entry.source == "call_opt_out" and entry.call_id == call.id
    assert contact(c.id, "+79990000071").exclusion_reason == "opt_out"


def test_concurrency_and_rate_limits_hold(rig):
    t = make_telephony_tenant("pace", recording=False)
    rig.apply()
    rig.sim.set_behavior("799900008*", outcome="answer", ring_ms=50, hangup_after_ms=800)
    phones = [f"+799900008{i:02d}" for i in range(30)]
    c = add_campaign(t, limits={"max_concurrent": 3, "calls_per_minute": 600}, phones=phones)
    drive(Dialer(rig.redis), c.id, lambda: finished(c.id), timeout=90)
    calls = list(Call.select().where(Call.campaign == c.id))
    assert len(calls) == 30
    points = sorted([(x.created_at, 1) for x in calls] + [(x.ended_at, -1) for x in calls])
    live = peak = 0
    for _, d in points:
        live += d
        peak = max(peak, live)
    assert peak == 3
    starts = sorted(x.created_at for x in calls)
    for i in range(len(starts) - 11):  # 600/min = 10/s with a burst of 10: never 12 within one second
        assert starts[i + 11] - starts[i] >= dt.timedelta(seconds=1)
