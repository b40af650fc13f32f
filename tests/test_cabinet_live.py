"""The cabinet against a live (simulated) call: FreeSWITCH simulator + real voiceai-esl + real voiceai-web.

Watch the Live Monitor change as the call starts and ends (realtime WebSocket), hang it up from the
monitor, then open it in the Inbox: transcript, cost, recording player, "report a problem"; and
check a SIP connection on the Numbers page.
"""
from __future__ import annotations

import uuid
from decimal import ROUND_HALF_UP, Decimal

from core.seed import create_user
from models.billing import CostBreakdown
from models.calls import Call, CallIssue, Transcript
from models.saas import AuditLog
from tests.support.telephony import make_telephony_tenant, tone_wav, wait_until


def test_live_monitor_follows_a_call_then_inbox_shows_it(rig, web_process, cabinet):
    t = make_telephony_tenant("cablive", recording=True)
    rig.apply()
    create_user(t["org"], "owner@cablive.test", "Passw0rd-owner", "owner")
    web = web_process(rig.settings, VOICEAI_STORAGE_DIR=rig.settings.storage_dir,
                      VOICEAI_FS_NODE=rig.settings.fs_node)
    tab = cabinet(web)
    tab.page.on("dialog", lambda d: d.accept())
    tab.login("owner@cablive.test", "Passw0rd-owner")
    tab.page.wait_for_selector("#rt-mode[data-mode='ws']")
    assert tab.page.is_visible("#live-empty")
    tab.shot("1-monitor-idle")

    # the call starts: a row appears without reloading, with the agent, a status and a ticking duration
    sim_call = rig.sim.inbound_call(caller="79161234567", destination="74951234567",
                                    audio=[tone_wav(rig.tmp / "caller.wav", seconds=30)])
    row = rig.call_row(sim_call.uuid, state="in_progress")
    selector = f"#live-calls tr[data-call-id='{row.id}']"
    tab.page.wait_for_selector(selector)
    tab.page.wait_for_function("sel => document.querySelector(sel).textContent.includes('Администратор клиники')",
                               arg=selector)
    text = tab.page.inner_text(selector)
    assert "Входящий" in text and "79161234567" in text and "Администратор клиники" in text
    assert tab.page.inner_text(f"{selector} .status").strip()
    assert tab.page.inner_text("#live-count") == "1" and not tab.page.is_visible("#live-empty")
    first = tab.page.inner_text(f"{selector} .duration")
    tab.page.wait_for_function("([sel, first]) => document.querySelector(sel + ' .duration').textContent !== first",
                               arg=[selector, first])
    assert tab.page.query_selector(f"{selector} [data-action='hangup']")  # owner may hang up
    tab.shot("2-monitor-live-call")

    # hang up from the monitor: esl_app ends the call, the row goes away
    tab.page.click(f"{selector} [data-action='hangup']")
    tab.page.wait_for_selector(selector, state="detached", timeout=20_000)
    assert tab.page.is_visible("#live-empty")
    tab.shot("3-monitor-call-ended")
    row = rig.call_row(sim_call.uuid, ended=True)
    assert AuditLog.select().where(AuditLog.action == "call.hangup").count() == 1

    # what the voice loop writes for the call (this rig runs without it); the billing engine priced it at the end
    Transcript.create(project=row.project_id, call=row.id, speaker="caller", text="Хочу записаться на приём к терапевту",
                      ts_start_ms=1500, ts_end_ms=3900, stt_confidence=0.91)
    Transcript.create(project=row.project_id, call=row.id, speaker="agent", text="Записываю вас на завтра на десять утра",
                      ts_start_ms=4300)
    cost = wait_until(lambda: CostBreakdown.get_or_none((CostBreakdown.entity_type == "call")
                                                        & (CostBreakdown.entity_id == row.id)),
                      timeout=20, message="cost breakdown written by billing")
    wait_until(lambda: Call.get_by_id(row.id).recording_path, timeout=20, message="recording stored")

    tab.page.click("#nav a[data-nav='cabinet.inbox']")
    tab.page.wait_for_selector(f"#calls tr[data-call-id='{row.id}']")
    tab.page.fill("#f-q", "записаться терапевт")
    tab.page.click("#apply-filters")
    tab.page.wait_for_function("() => location.search.includes('q=')")
    tab.page.wait_for_selector(f"#calls tr[data-call-id='{row.id}']")
    assert len(tab.page.query_selector_all("#calls tbody tr")) == 1
    tab.shot("4-inbox-search")

    tab.page.click(f"#calls tr[data-call-id='{row.id}'] a")
    tab.page.wait_for_selector("#call[data-loaded='true']")
    transcript = tab.page.inner_text("#transcript")
    assert "Хочу записаться на приём к терапевту" in transcript and "уверенность 91%" in transcript
    assert "Клиент" in transcript and "Агент" in transcript and "0:01" in transcript
    assert tab.page.inner_text("#call-outcome") == "Разговор состоялся"
    total = Decimal(CostBreakdown.get_by_id(cost.id).total_cost).quantize(Decimal("0.01"), ROUND_HALF_UP)
    assert f"Итого: {total}".replace(".", ",") in tab.page.inner_text("#cost-total")
    assert "Телефония" in tab.page.inner_text("#cost-lines")
    tab.page.click("#recording-load")  # the authorised /api/calls/{id}/recording, played from a blob
    tab.page.wait_for_function("() => document.getElementById('recording-player').readyState >= 1")
    assert tab.page.eval_on_selector("#recording-player", "a => a.duration") > 0.5
    tab.page.click("#report-btn")
    tab.page.fill("#report-comment", "Агент не уточнил фамилию")
    tab.page.click("#report-send")
    tab.page.wait_for_selector("#issues li.issue")
    assert "Сообщение о проблеме" in tab.page.inner_text("#issues")
    issue = CallIssue.get(CallIssue.call == row.id)
    assert issue.source == "user" and issue.comment == "Агент не уточнил фамилию"
    tab.shot("5-call-card")

    # Numbers: the check gives a human verdict (the test provider's host does not exist)
    tab.page.click("#nav a[data-nav='cabinet.numbers']")
    conn_row = f"#connections tr[data-conn-id='{t['conn'].id}']"
    tab.page.wait_for_selector(conn_row)
    tab.page.wait_for_selector(f"#numbers tr[data-number-id='{t['number'].id}']")
    assert "+74951234567" in tab.page.inner_text("#numbers") and "Основной транк" in tab.page.inner_text("#numbers")
    tab.page.click(f"{conn_row} [data-action='check']")
    result = f"tr[data-result-for='{t['conn'].id}'] .check-result"
    tab.page.wait_for_selector(result, timeout=60_000)
    verdict = tab.page.inner_text(result)
    assert "Не удалось подключить номер" in verdict or "Подключение работает" in verdict
    tab.shot("6-numbers-check")
    # the only failed request is the check's own verdict (502 SIP_CONNECT_FAILED)
    assert all("/check" in r for r in tab.failed_requests), tab.failed_requests
