"""The cabinet in headless Chromium: login, session cookies, CSRF, project switcher, RBAC per role."""
from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import requests

from core.seed import create_project
from models.billing import BudgetLimit, UsageRecord
from models.calls import Call, Transcript
from models.saas import AuditLog, Org


def _seed_call(project_id) -> Call:
    now = dt.datetime.now(dt.timezone.utc)
    call = Call.create(project=project_id, direction="inbound", from_number="79161112233", to_number="+74950001122",
                       state="ended", started_at=now - dt.timedelta(minutes=5), ended_at=now - dt.timedelta(minutes=4),
                       duration_s=60, outcome="completed", trace_id=uuid.uuid4().hex, cost_total=Decimal("4.20"))
    Transcript.create(project=project_id, call=call.id, speaker="caller", text="Подскажите часы работы",
                      ts_start_ms=500, stt_confidence=0.88)
    return call


def test_login_monitor_and_rbac_per_role(web_process, tenant, cabinet):
    t = tenant("cab", roles=("owner", "operator"))
    pid = uuid.UUID(t["project_id"])
    call = _seed_call(pid)
    UsageRecord.create(project=pid, entity_type="call", entity_id=call.id, component="telephony", unit="minute",
                       cost=Decimal("42.50"), idempotency_key="u1")
    BudgetLimit.create(project=pid, period="day", limit_amount=Decimal("100"))
    web = web_process()

    anon = cabinet(web)
    anon.goto("/cabinet/monitor")
    assert "/cabinet/login" in anon.page.url  # pages need a session
    anon.page.fill("#email", t["users"]["owner"][0])
    anon.page.fill("#password", "wrong-password")
    anon.page.click("#login-btn")
    assert anon.page.inner_text("#login-error") == "Неверный e-mail или пароль"
    anon.shot("login-failed")

    owner = cabinet(web)
    owner.login(*t["users"]["owner"])
    session = owner.cookie("vai_access")
    assert session["httpOnly"] and session["sameSite"] == "Strict" and session["path"] == "/cabinet"
    assert owner.page.inner_text("#spend-today").startswith("42,50")
    assert "100,00" in owner.page.inner_text("#spend-limit")
    nav = owner.page.inner_text("#nav")
    assert all(item in nav for item in ("Живой монитор", "Звонки", "Агенты", "Номера"))
    owner.page.wait_for_selector("#rt-mode[data-mode='ws']")  # realtime stream connected
    owner.shot("monitor-owner")
    owner.goto("/cabinet/calls")
    owner.page.wait_for_selector(f"#calls tr[data-call-id='{call.id}']")
    assert "Стоимость" in owner.page.inner_text("#calls thead")
    owner.shot("inbox-owner")

    operator = cabinet(web)
    operator.login(*t["users"]["operator"])
    nav = operator.page.inner_text("#nav")
    assert "Живой монитор" in nav and "Звонки" in nav and "Номера" not in nav
    assert operator.page.query_selector("#spend-card") is None  # no billing for an operator
    operator.shot("monitor-operator")
    operator.goto("/cabinet/calls")
    operator.page.wait_for_selector(f"#calls tr[data-call-id='{call.id}']")
    assert "Стоимость" not in operator.page.inner_text("#calls thead")
    operator.goto(f"/cabinet/calls/{call.id}")
    operator.page.wait_for_selector("#call[data-loaded='true']")
    assert "Подскажите часы работы" in operator.page.inner_text("#transcript")
    assert operator.page.query_selector("#cost") is None
    operator.shot("call-operator")
    assert not operator.console_errors, operator.console_errors  # the pages ask the API only what the role may
    resp = operator.goto("/cabinet/numbers")  # integration settings: refused by the server, not only hidden
    assert resp.status == 403 and operator.page.inner_text("#error-title") == "Недостаточно прав"
    operator.shot("numbers-denied-operator")
    assert not owner.console_errors, owner.console_errors


def test_session_csrf_logout_and_project_switch(web_process, tenant, cabinet, db):
    t = tenant("sw", roles=("owner",))
    second = create_project(Org.get_by_id(uuid.UUID(t["org_id"])), "Второй проект")
    web = web_process()
    tab = cabinet(web)
    tab.login(*t["users"]["owner"])
    # a form post without the CSRF token is refused (the session cookie alone is not enough)
    cookies = {c["name"]: c["value"] for c in tab.context.cookies()}
    forged = requests.post(web.base + "/cabinet/project", data={"project_id": str(second.id)},
                           cookies={"vai_access": cookies["vai_access"]}, allow_redirects=False)
    assert forged.status_code == 403
    # the API is never authenticated by the cabinet cookie
    assert requests.get(web.base + "/api/auth/me", cookies=cookies).status_code == 401
    with tab.page.expect_navigation():
        tab.page.select_option("#project-select", str(second.id))
    tab.page.wait_for_selector(f"meta[name='vai-project'][content='{second.id}']", state="attached")
    assert tab.page.url == f"{web.base}/cabinet/monitor"
    assert AuditLog.select().where(AuditLog.action == "cabinet.project_switched").count() == 1
    tab.shot("project-switched")
    tab.page.click("#logout-btn")
    tab.page.wait_for_url(f"{web.base}/cabinet/login")
    assert tab.cookie("vai_access") is None
    tab.goto("/cabinet/monitor")
    assert "/cabinet/login" in tab.page.url
    # the logged-out token is refused even if replayed
    replay = requests.get(web.base + "/cabinet/monitor", cookies={"vai_access": cookies["vai_access"]},
                          allow_redirects=False)
    assert replay.status_code == 302 and "/cabinet/login" in replay.headers["Location"]
