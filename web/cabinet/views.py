"""Cabinet pages: login/logout, project switcher, Live Monitor, Inbox, call card, numbers, Agent Studio."""
from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlparse

from flask import g, redirect, render_template, request, url_for

from core.errors import AppError
from web import audit
from web.api.registry import AUTHENTICATED
from web.cabinet import session
from web.cabinet.nav import visible_nav
from web.cabinet.pages import bp, page
from web.principal import resolve_project

_LOGIN_CODES = {"AUTH_REQUIRED", "AUTH_TOKEN_EXPIRED", "AUTH_TOKEN_INVALID", "AUTH_USER_DISABLED",
                "AUTH_REFRESH_REUSED"}


def _safe_next(raw: str | None) -> str:
    """Only same-site cabinet paths (no open redirect)."""
    if raw and raw.startswith("/cabinet") and not urlparse(raw).netloc and not raw.startswith("//"):
        return raw
    return url_for("cabinet.home")


def _me() -> dict[str, Any]:
    from web.api.auth import me
    return me()


def render_page(template: str, **ctx: Any) -> str:
    """Render a page with what the layout needs: user, projects, nav, permissions, tokens."""
    me = _me()
    project = g.get("project")
    perms = set(g.principal.permissions(project.id)) if project is not None else set()
    return render_template(template, me=me, project=project, perms=perms, nav=visible_nav(perms),
                           access_token=request.cookies.get(session.ACCESS_COOKIE, ""),
                           csrf_token=session.csrf_token(), **ctx)


@bp.before_request
def _csrf_guard() -> None:
    # Runs after the pipeline authenticated the request; form posts must repeat the CSRF cookie.
    if request.method == "POST" and request.endpoint != "cabinet.login" and not session.csrf_ok():
        raise AppError("PERMISSION_DENIED", {"reason": "Форма устарела: обновите страницу и повторите"})


@bp.after_request
def _finish(resp):
    return session.finish(resp)


@bp.errorhandler(AppError)
def _app_error(exc: AppError):
    """Pages answer errors with a page or a redirect, never with the API's JSON envelope."""
    if exc.code == "AUTH_TOKEN_EXPIRED" and request.cookies.get(session.REFRESH_COOKIE) and request.method == "GET":
        return redirect(url_for("cabinet.session_refresh", next=request.full_path.rstrip("?")))
    if exc.code in _LOGIN_CODES:
        resp = redirect(url_for("cabinet.login", next=request.full_path.rstrip("?") if request.method == "GET" else None))
        session.clear_session(resp)
        return resp
    fields = exc.details.get("fields") or {}
    if (exc.code == "VALIDATION_FAILED" and "X-Project-Id" in fields) or \
            (exc.code == "NOT_FOUND" and exc.details.get("entity") == "project"):
        resp = redirect(url_for("cabinet.home"))
        resp.delete_cookie(session.PROJECT_COOKIE, path=session.COOKIE_PATH)
        return resp
    status = exc.http_status
    try:
        body = render_page("cabinet/error.html", error=exc) if g.get("principal") else \
            render_template("cabinet/error.html", error=exc, me=None, project=None, perms=set(), nav=[],
                            access_token="", csrf_token=session.csrf_token())
    except AppError:
        body = render_template("cabinet/error.html", error=exc, me=None, project=None, perms=set(), nav=[],
                               access_token="", csrf_token=session.csrf_token())
    return body, status


# ---- session -------------------------------------------------------------------------------------------

@page("/login", ["GET", "POST"], public=True, summary="Вход в кабинет")
def login():
    error = None
    status = 200
    email = ""
    if request.method == "POST":
        from web.api import auth as auth_api
        email = (request.form.get("email") or "").strip()
        if not session.csrf_ok():
            error, status = "Форма устарела: обновите страницу и войдите снова", 403
        else:
            g.body = {"email": email, "password": request.form.get("password") or ""}
            try:
                if "@" not in email:
                    raise AppError("AUTH_INVALID_CREDENTIALS")
                pair = auth_api.login()
            except AppError as exc:
                error, status = exc.entry.human_title, exc.http_status
            else:
                resp = redirect(_safe_next(request.args.get("next")))
                session.set_session(resp, pair)
                return resp
    return render_template("cabinet/login.html", error=error, email=email, me=None, project=None, perms=set(),
                           nav=[], access_token="", csrf_token=session.csrf_token(),
                           next=request.args.get("next", "")), status


@page("/session/refresh", ["GET", "POST"], public=True, summary="Продление сессии кабинета")
def session_refresh():
    """Rotate the refresh token: GET redirects back to the page, POST (JS) returns a fresh access token."""
    from flask import jsonify
    from web.api import auth as auth_api
    refresh_token = request.cookies.get(session.REFRESH_COOKIE)
    if request.method == "POST" and not session.csrf_ok():
        raise AppError("PERMISSION_DENIED", {"reason": "Нет CSRF-токена"})
    try:
        if not refresh_token:
            raise AppError("AUTH_REQUIRED")
        g.body = {"refresh_token": refresh_token}
        pair = auth_api.refresh()
    except AppError as exc:
        if request.method == "POST":
            raise
        resp = redirect(url_for("cabinet.login", next=request.args.get("next")))
        session.clear_session(resp)
        return resp
    resp = jsonify({"access_token": pair["access_token"], "expires_in": pair["expires_in"]}) \
        if request.method == "POST" else redirect(_safe_next(request.args.get("next")))
    session.set_session(resp, pair)
    if request.method == "GET":
        # A GET is not audited by the pipeline; the rotation is, as in /api/auth/refresh.
        from models.base import database
        from web import audit as audit_mod
        with database.atomic():
            audit_mod.write(200)
    return resp


@page("/logout", ["POST"], permission=AUTHENTICATED, summary="Выход из кабинета")
def logout():
    from web.api import auth as auth_api
    g.body = {"refresh_token": request.cookies.get(session.REFRESH_COOKIE) or ""}
    if not g.body["refresh_token"]:
        g.body = {}
    auth_api.logout()
    resp = redirect(url_for("cabinet.login"))
    session.clear_session(resp)
    return resp


@page("/project", ["POST"], permission=AUTHENTICATED, summary="Переключить проект")
def switch_project():
    project = resolve_project(g.principal, request.form.get("project_id"))
    audit.record("cabinet.project_switched", "project", project.id, project_id=project.id)
    resp = redirect(url_for("cabinet.home"))
    session.set_cookie(resp, session.PROJECT_COOKIE, str(project.id), None)
    return resp


@page("/", permission=AUTHENTICATED, summary="Кабинет: первая доступная страница проекта")
def home():
    me = _me()
    if not me["projects"]:
        raise AppError("NOT_FOUND", {"entity": "project", "reason": "Нет доступных проектов"})
    current = request.cookies.get(session.PROJECT_COOKIE)
    chosen = next((p for p in me["projects"] if p["id"] == current), me["projects"][0])
    items = visible_nav(set(chosen["permissions"]))
    if not items:
        raise AppError("PERMISSION_DENIED", {"reason": "В проекте нет доступных страниц"})
    resp = redirect(url_for(items[0].endpoint))
    if chosen["id"] != current:
        session.set_cookie(resp, session.PROJECT_COOKIE, chosen["id"], None)
    return resp


# ---- pages ---------------------------------------------------------------------------------------------

def spend_today(project) -> dict[str, Any]:
    """Today's spend (usage rows, in the project's time zone) against the daily project limit."""
    import datetime as dt
    from decimal import Decimal
    from zoneinfo import ZoneInfo

    import peewee as pw

    from models.billing import BudgetLimit, BudgetPeriod, BudgetScope, UsageRecord
    try:
        tz = ZoneInfo(project.timezone or "UTC")
    except Exception:  # unknown zone name: count the UTC day
        tz = dt.timezone.utc
    start = dt.datetime.now(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    spent = (UsageRecord.select(pw.fn.COALESCE(pw.fn.SUM(UsageRecord.cost), 0))
             .where((UsageRecord.project == project.id) & (UsageRecord.occurred_at >= start)).scalar())
    spent = Decimal(spent or 0)
    limit = (BudgetLimit.select().where((BudgetLimit.project == project.id) & BudgetLimit.enabled
                                        & (BudgetLimit.scope == BudgetScope.PROJECT.value)
                                        & (BudgetLimit.period == BudgetPeriod.DAY.value)).first())

    def money(v: Decimal) -> str:
        return f"{v:,.2f}".replace(",", " ").replace(".", ",") + " ₽"
    return {"today": str(spent), "today_text": money(spent),
            "limit": str(limit.limit_amount) if limit else None,
            "limit_text": money(Decimal(limit.limit_amount)) if limit else None,
            "ratio": float(spent / Decimal(limit.limit_amount)) if limit and limit.limit_amount else 0.0}


@page("/monitor", permission="realtime.subscribe", summary="Живой монитор")
def monitor():
    can_bill = g.principal.can("billing.read", g.project.id)
    return render_page("cabinet/monitor.html", active="cabinet.monitor",
                       spend=spend_today(g.project) if can_bill else None)


@page("/calls", permission="calls.read", summary="Звонки (Inbox)")
def inbox():
    from core.telephony.causes import outcome_label
    from models.calls import CallOutcome
    outcomes = [(o.value, outcome_label(o)) for o in CallOutcome]
    return render_page("cabinet/inbox.html", active="cabinet.inbox", outcomes=outcomes)


@page("/calls/<call_id>", permission="calls.read", summary="Карточка звонка")
def call_page(call_id: str):
    try:
        uuid.UUID(call_id)
    except ValueError:
        raise AppError("NOT_FOUND", {"entity": "call", "id": call_id})
    return render_page("cabinet/call.html", active="cabinet.inbox", call_id=call_id)


@page("/numbers", permission="numbers.read", summary="Номера и SIP-подключения")
def numbers():
    return render_page("cabinet/numbers.html", active="cabinet.numbers")


@page("/agents", permission="agents.read", summary="Агенты (Agent Studio)")
def agents():
    return render_page("cabinet/agents.html", active="cabinet.agents")


@page("/agents/<agent_id>", permission="agents.read", summary="Агент: конфигурация, версии, песочница")
def agent_page(agent_id: str):
    try:
        uuid.UUID(agent_id)
    except ValueError:
        raise AppError("NOT_FOUND", {"entity": "agent", "id": agent_id})
    return render_page("cabinet/agent.html", active="cabinet.agents", agent_id=agent_id)
