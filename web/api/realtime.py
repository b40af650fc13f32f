"""Realtime API (spec 9.2, 10): a short-lived token, then the event stream over WebSocket or SSE.

``GET /realtime/token`` is an ordinary authenticated, project-scoped route. The stream routes are
declared public because a browser's WebSocket and EventSource cannot send an Authorization
header: they take the token in the query and check it themselves (signature, expiry, and the
holder's ``realtime.subscribe`` on the project, reloaded from the database at connect time).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

from flask import Flask, Response, current_app, g, request

from core.errors import AppError
from models.base import database
from web.api import schemas as S
from web.api.registry import META_ATTR, ApiGroup, public_view, route_meta
from web.app import get_redis, settings
from web.realtime import tokens
from web.realtime.access import authorize
from web.realtime.hub import Hub
from web.realtime.transport import GatewaySocket, run_websocket, sse_stream

group = ApiGroup("realtime", "Realtime")
STREAM_PATH = "/api/realtime/stream"
SSE_PATH = "/api/realtime/sse"

S.COMPONENTS["RealtimeToken"] = S.obj(["token", "expires_at", "expires_in", "stream_url", "sse_url"], {
    "token": {"type": "string"}, "expires_at": S.TS, "expires_in": {"type": "integer"},
    "stream_url": {"type": "string", "description": "WebSocket: путь от адреса сервера (ws:// или wss://)"},
    "sse_url": {"type": "string", "description": "Server-Sent Events: путь от адреса сервера"},
})
_STREAM_QUERY = {
    "token": {"type": "string", "description": "Токен из GET /api/realtime/token (действует минуту)"},
    "last_event_id": {"type": "string", "pattern": r"^\d+(-\d+)?$",
                      "description": "id последнего полученного события: придут пропущенные"},
}


def hub() -> Hub:
    """This process's fan-out hub (created on first use: it needs the gevent server)."""
    h = current_app.extensions.get("realtime_hub")
    if h is None:
        s = settings()
        h = Hub(get_redis(), max_lag=s.realtime_max_lag, block_ms=s.realtime_block_ms,
                batch_interval_s=s.realtime_batch_ms / 1000)
        current_app.extensions["realtime_hub"] = h
    return h


@group.route("/realtime/token", ["GET"], permission="realtime.subscribe", responses={200: S.ref("RealtimeToken")},
             summary="Короткоживущий токен потока событий проекта (WebSocket или SSE)")
def realtime_token():
    p, s = g.principal, settings()
    token, exp = tokens.issue(s.secret_key, p.kind, str(p.id), str(p.org_id), str(g.project.id),
                              s.realtime_token_ttl_s)
    return {"token": token,
            "expires_at": dt.datetime.fromtimestamp(exp, dt.timezone.utc).isoformat(),
            "expires_in": s.realtime_token_ttl_s,
            "stream_url": f"{STREAM_PATH}?token={token}", "sse_url": f"{SSE_PATH}?token={token}"}


def _open() -> tuple[str, str | None]:
    """Check the token and the holder's right now; (project id, resume id). Closes the DB session:
    the stream may last hours and needs no database."""
    try:
        claims = tokens.verify(settings().secret_key, request.args.get("token"))
        project = authorize(claims)
    finally:
        if not database.is_closed():
            database.close()
    last = request.args.get("last_event_id") or request.headers.get("Last-Event-ID") or None
    if last is not None and not _looks_like_id(last):
        raise AppError("VALIDATION_FAILED", {"fields": {"last_event_id": "Ожидается id события вида 1700000000000-0"}})
    return str(project.id), last


def _looks_like_id(value: str) -> bool:
    ms, _, seq = value.partition("-")
    return ms.isdigit() and (seq == "" or seq.isdigit()) and len(value) <= 40


class _Handled(Response):
    """The WebSocket already wrote everything on the socket: send nothing more (as flask-sock)."""

    def __call__(self, environ: Any, start_response: Any) -> Any:
        return []


def realtime_stream():
    """WebSocket: every event of the project as one text frame (spec 10.2 plus "id")."""
    project_id, last = _open()
    state: dict[str, Any] = {}

    def on_overflow() -> None:
        if "ws" in state:
            state["ws"].sock.abort()

    def on_closed() -> None:
        if not sub.closed:
            sub.close("client")
            sub.feed.wake()

    # Subscribe before accepting: a client that sees the 101 misses nothing published after it.
    sub = hub().subscribe(project_id, on_overflow=on_overflow)
    try:
        state["ws"] = ws = GatewaySocket(request.environ, on_closed)
    except BaseException:
        sub.close("handshake failed")
        raise
    run_websocket(ws, sub, last, settings().realtime_heartbeat_s)
    return _Handled()


def realtime_sse():
    """Server-Sent Events fallback: ``id:`` lines, honours Last-Event-ID."""
    project_id, last = _open()
    sub = hub().subscribe(project_id)
    resp = Response(sse_stream(sub, last, settings().realtime_heartbeat_s), mimetype="text/event-stream")
    resp.headers["Cache-Control"] = "no-cache, no-store"
    resp.headers["X-Accel-Buffering"] = "no"
    return resp


for _view, _summary in ((realtime_stream, "Поток событий проекта (WebSocket; token и last_event_id в запросе)"),
                        (realtime_sse, "Поток событий проекта (Server-Sent Events; token, last_event_id или Last-Event-ID)")):
    public_view(_view, _summary, group="Realtime")
    setattr(_view, META_ATTR, replace(route_meta(_view), query=_STREAM_QUERY))
group.blueprint.add_url_rule("/realtime/stream", view_func=realtime_stream, methods=["GET"], websocket=True)
group.blueprint.add_url_rule("/realtime/sse", view_func=realtime_sse, methods=["GET"])
