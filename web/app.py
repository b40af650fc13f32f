"""Flask app factory: the request pipeline every API call goes through.

Order per request: trace id -> database connection (+ transaction for mutating methods) ->
route metadata -> authentication -> project resolution -> RBAC -> rate limit -> body validation
-> view -> audit row (same transaction) -> commit or rollback -> ``X-Trace-Id`` header.
Errors of any kind leave as the spec 9.1 envelope (web/errors.py).
"""
from __future__ import annotations

import logging
import time
from typing import Any

import redis
from flask import Flask, g, request
from werkzeug.exceptions import HTTPException

from core.config import Settings, get_settings, set_settings
from core.errors import AppError
from core.logging import configure_logging
from core.tracing import accept_trace_id, set_trace_id
from core.validation import validate
from models.base import bind_database, database
from web import audit as audit_mod
from web.api import register_api
from web.api.registry import AUTHENTICATED, route_meta
from web.errors import register_error_handlers
from web.principal import Principal, authenticate, require, resolve_project
from web.ratelimit import hit

log = logging.getLogger("voiceai.web")
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or get_settings()
    set_settings(settings)
    if not settings.secret_key:
        raise RuntimeError("VOICEAI_SECRET_KEY is not set (scripts/setup writes one to var/voiceai.env)")
    configure_logging(settings.log_level)
    app = Flask(__name__, static_folder="static", template_folder="templates")
    app.config["VOICEAI"] = settings
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024 * 1024
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.json.sort_keys = False  # type: ignore[attr-defined]
    bind_database(settings.database_url)
    app.extensions["redis"] = redis.Redis.from_url(settings.redis_url, decode_responses=True)

    register_error_handlers(app)
    register_api(app)
    from web.cabinet import register_cabinet
    register_cabinet(app)  # its session hook must run before the pipeline's
    app.before_request(_before_request)
    app.after_request(_after_request)
    app.teardown_request(_teardown_request)
    return app


def get_redis() -> redis.Redis:
    from flask import current_app
    return current_app.extensions["redis"]


def settings() -> Settings:
    from flask import current_app
    return current_app.config["VOICEAI"]


def client_ip() -> str | None:
    if settings().trust_proxy and request.headers.get("X-Forwarded-For"):
        return request.headers["X-Forwarded-For"].split(",")[0].strip()
    return request.remote_addr


def _before_request() -> None:
    g.trace_id = accept_trace_id(request.headers.get("X-Trace-Id"))
    g.trace_token = set_trace_id(g.trace_id)
    g.started = time.perf_counter()
    g.principal = None
    g.project = None
    g.audit = None
    g.txn = None
    if request.method in MUTATING:
        g.txn = database.atomic()
        g.txn.__enter__()

    view = app_view()
    if view is None:  # 404/405: Flask raises after this hook
        return
    meta = route_meta(view)
    if meta is None:
        # Fail closed: a route that did not declare a permission is never served.
        log.error("route without declared permission", extra={"endpoint": request.endpoint})
        raise AppError("PERMISSION_DENIED", {"reason": "route has no declared permission"})
    if meta.public:
        if request.blueprint != "api_system" and not (request.endpoint or "").startswith("root_"):
            _rate_limit(f"ip:{client_ip()}")  # login and refresh; probes and docs are not limited
        _validate_body(meta)
        return
    r = get_redis()
    principal = authenticate(request.headers.get("Authorization"), request.headers.get("X-Api-Key"),
                             settings().secret_key, lambda jti: bool(r.exists(f"revoked:jti:{jti}")))
    g.principal = principal
    _rate_limit(f"{principal.kind}:{principal.id}")
    if meta.project_scoped:
        raw = (request.view_args or {}).get("project_id") or request.headers.get("X-Project-Id") \
            or request.args.get("project_id")
        g.project = resolve_project(principal, raw)
    if meta.permission != AUTHENTICATED:
        require(principal, meta.permission, g.project)  # type: ignore[arg-type]
    _validate_body(meta)


def _validate_body(meta: Any) -> None:
    if meta.body is not None and not meta.raw_body:
        g.body = validate(meta.body, json_body())


def commit_now() -> None:
    """Commit what the request wrote so far and continue in a fresh transaction.

    For views that hand work to another process (esl_app) and wait for it: that process must see
    the rows (the call row of a test call) before it acts. The audit row still lands at the end.
    """
    txn = g.get("txn")
    if txn is None:
        return
    txn.__exit__(None, None, None)
    g.txn = database.atomic()
    g.txn.__enter__()


def app_view() -> Any:
    from flask import current_app
    return current_app.view_functions.get(request.endpoint) if request.endpoint else None


def json_body() -> Any:
    data = request.get_json(silent=True)
    if data is None:
        if request.content_length:
            raise AppError("BAD_REQUEST", {"reason": "Тело запроса — не JSON"})
        data = {}
    if not isinstance(data, dict):
        raise AppError("BAD_REQUEST", {"reason": "Ожидается JSON-объект"})
    return data


def _rate_limit(key: str) -> None:
    allowed, retry_after = hit(get_redis(), key, settings().api_rate_limit_per_min, 60)
    if not allowed:
        raise AppError("RATE_LIMITED", {"retry_after_s": retry_after})


def _after_request(response: Any) -> Any:
    response.headers["X-Trace-Id"] = g.get("trace_id", "")
    txn = g.get("txn")
    if request.method in MUTATING and request.endpoint is not None and route_meta(app_view()) is not None:
        ok = response.status_code < 400 or g.get("commit_despite_error", False)
        if ok:
            audit_mod.write(response.status_code)
            txn.__exit__(None, None, None)
        else:
            txn.__exit__(AppError, None, None)  # roll back the failed change, keep the audit row
            with database.atomic():
                audit_mod.write(response.status_code)
        g.txn = None
    elif txn is not None:
        txn.__exit__(AppError, None, None) if response.status_code >= 400 else txn.__exit__(None, None, None)
        g.txn = None
    log.info("request", extra={"method": request.method, "path": request.path,
                               "status": response.status_code,
                               "duration_ms": round((time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 1),
                               "principal": getattr(g.get("principal"), "label", None)})
    return response


def _teardown_request(exc: BaseException | None) -> None:
    txn = g.get("txn")
    if txn is not None:
        try:
            txn.__exit__(type(exc) if exc else AppError, exc, None)
        except Exception:  # pragma: no cover - connection already broken
            log.exception("rollback failed")
        g.txn = None
    if not database.is_closed():
        database.close()
    token = g.pop("trace_token", None)
    if token is not None:
        try:
            from core.tracing import _trace_id
            _trace_id.reset(token)
        except ValueError:  # set in another context (streamed responses)
            pass
