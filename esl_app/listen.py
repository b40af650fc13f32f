"""Live listen-in: a supervisor hears a running call (caller and agent) in the browser.

The cabinet asks ``POST /api/calls/{id}/listen`` for a one-time token (permission calls.listen) and
opens ``/listen`` on this audio server. The call's ``VoiceCall`` copies what the caller says (each
fork frame) and what the agent says (each played sentence) to its listeners: binary frames of one
channel byte (0 caller, 1 agent) followed by L16 mono PCM at the call's rate. A listener that cannot
keep up loses frames, never the call. Listening is one-way: nothing from the page reaches the call.
"""
from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from gevent.queue import Full, Queue

from core.errors import AppError
from core.security.tokens import decode_scoped_token
from esl_app.audio_server import ForkSocket
from esl_app.browser import refuse

if TYPE_CHECKING:
    from esl_app.runtime import EslRuntime

log = logging.getLogger("voiceai.esl.listen")
TOKEN_TYPE = "voice_listen"  # web.api.talk.LISTEN_TOKEN_TYPE
CALLER, AGENT = 0, 1
QUEUE_FRAMES = 500  # ~10 s of 20 ms frames: a stalled page drops audio beyond that


class Listener:
    """One listening page: a bounded queue the call fills and the socket greenlet drains."""

    def __init__(self) -> None:
        self.queue: Queue = Queue(maxsize=QUEUE_FRAMES)
        self.dropped = 0

    def put(self, channel: int, pcm16: bytes) -> None:
        try:
            self.queue.put_nowait(bytes([channel]) + pcm16)
        except Full:
            self.dropped += 1

    def close(self) -> None:
        try:
            self.queue.put_nowait(None)
        except Full:
            self.queue.get_nowait()
            self.queue.put_nowait(None)


def serve_listener(runtime: "EslRuntime", ws: Any) -> None:
    first = ws.receive(timeout=10)
    try:
        token = str(json.loads(first)["token"]) if isinstance(first, str) else ""
    except (ValueError, KeyError, TypeError):
        token = ""
    if not token:
        refuse(ws, "BAD_REQUEST", "first frame must be JSON with the listen token")
        return
    try:
        claims = decode_scoped_token(runtime.settings.secret_key, token, TOKEN_TYPE)
    except AppError as exc:
        refuse(ws, exc.code)
        return
    if not runtime.redis.set(f"voice_listen:used:{claims['jti']}", "1", nx=True, ex=3600):
        refuse(ws, "AUTH_TOKEN_INVALID", "token already used")
        return
    call = runtime.voice.live.get(str(claims["call_id"]))
    if call is None or str(call.call.project_id) != str(claims["project_id"]):
        refuse(ws, "NOT_FOUND", "the call is not running on this voice server")
        return
    sock = ForkSocket(ws, call.rate)
    listener = Listener()
    call.listeners.append(listener)
    log.info("listen-in started", extra={"call_id": str(call.call.id), "user_id": claims.get("user_id")})
    try:
        sock.send_json({"type": "ready", "call_id": str(call.call.id), "sample_rate": call.rate})
        while not sock.closed:
            item = listener.queue.get()
            if item is None:
                break
            if not sock.send_audio(item):
                break
        sock.send_json({"type": "ended", "dropped_frames": listener.dropped})
    finally:
        if listener in call.listeners:
            call.listeners.remove(listener)
        sock.close()
