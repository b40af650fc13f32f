"""The browser endpoint of the audio server: "Поговорить с агентом" without a phone line.

The cabinet asks the web API for a one-time talk token (``POST /api/agents/{id}/talk``), opens
``/browser`` on this server and sends ``{"token": ..., "sample_rate": 16000}`` as its first text
frame; then microphone audio as binary L16 mono frames. The conversation runs through the same
voice loop as a phone call (``esl_app.lines.BrowserLine``) and is stored as a test call.
"""
from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from core.calls.browser import TOKEN_TYPE, finish_browser_call, start_browser_call
from core.errors import CATALOG, AppError
from core.security.tokens import decode_scoped_token
from esl_app.lines import BrowserLine
from models.base import database

if TYPE_CHECKING:
    from esl_app.runtime import EslRuntime

log = logging.getLogger("voiceai.esl.browser")
RATES = (8000, 16000)
USED_TOKEN_TTL_S = 3600


def refuse(ws: Any, code: str, detail: str | None = None) -> None:
    """Tell the page why, in the catalog's words, then close."""
    entry = CATALOG[code]
    error = {"code": code, "human_title": entry.human_title, "human_how_to_fix": list(entry.human_how_to_fix),
             "details": {"reason": detail} if detail else {}}
    try:
        ws.send(json.dumps({"type": "error", "error": error}, ensure_ascii=False))
        ws.close()
    except Exception:  # noqa: BLE001 - the page is gone already
        pass


def serve_browser_session(runtime: "EslRuntime", ws: Any) -> None:
    first = ws.receive(timeout=10)
    if not isinstance(first, str):
        refuse(ws, "BAD_REQUEST", "first frame must be JSON with the talk token")
        return
    try:
        hello = json.loads(first)
        token = str(hello["token"])
        rate = int(hello.get("sample_rate", 16000))
    except (ValueError, KeyError, TypeError):
        refuse(ws, "BAD_REQUEST", "first frame must be JSON with the talk token")
        return
    try:
        claims = decode_scoped_token(runtime.settings.secret_key, token, TOKEN_TYPE)
    except AppError as exc:
        refuse(ws, exc.code)
        return
    if not runtime.redis.set(f"voice_talk:used:{claims['jti']}", "1", nx=True, ex=USED_TOKEN_TTL_S):
        refuse(ws, "AUTH_TOKEN_INVALID", "token already used")
        return
    if rate not in RATES:
        refuse(ws, "BAD_REQUEST", f"sample_rate must be one of {RATES}")
        return
    if not runtime.calls.accepting:
        refuse(ws, "SERVICE_UNAVAILABLE", "voice server is draining")
        return
    try:
        with database.connection_context():
            call, recorder = start_browser_call(runtime.redis, claims, runtime.node)
    except Exception:  # noqa: BLE001 - agent deleted since the token was issued, database down
        log.exception("could not start a browser voice session")
        refuse(ws, "NOT_FOUND", "agent or version no longer exists")
        return
    line = BrowserLine(ws, call, rate)
    line.notify({"type": "ready", "call_id": str(call.id), "sample_rate": rate, "trace_id": call.trace_id})
    log.info("browser voice session", extra={"call_id": str(call.id), "trace_id": call.trace_id})
    try:
        runtime.voice.run_line(line)
    finally:
        finish_browser_call(call, recorder, "agent" if line.hangup_reason else "caller")
        if not line.closed:
            line.hangup()
