"""The audio WebSocket server inside esl_app (flask-sock on gevent).

``/audio``: mod_audio_fork connects here for each call (subprotocol ``audio.drachtio.org``): one text
frame of metadata (``{"callId": "<channel uuid>", ...}``), then binary frames of L16 mono PCM at the
fork's rate (8 kHz: 320-byte frames every 20 ms). The app answers with JSON text frames
(``playAudio``/``killAudio``) or, with the bidirectional module, binary L16 back on the socket.

``/browser``: the cabinet's "Поговорить с агентом" page (see ``esl_app.browser``).

``/listen``: live listen-in on a running call from the cabinet (see ``esl_app.listen``).

``/metrics``: Prometheus text of the engine latency histograms.
"""
from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, request
from flask_sock import Sock

from core.engines.metrics import REGISTRY

if TYPE_CHECKING:
    from esl_app.runtime import EslRuntime

log = logging.getLogger("voiceai.esl.audio")
SUBPROTOCOL = "audio.drachtio.org"


class ForkSocket:
    """The app's side of one mod_audio_fork connection (what VoiceCall talks to)."""

    def __init__(self, ws: Any, rate: int) -> None:
        self.ws = ws
        self.rate = rate
        self.closed = False

    def receive(self, timeout: float | None = None) -> bytes | str | None:
        try:
            return self.ws.receive(timeout=timeout)
        except Exception:  # noqa: BLE001 - ConnectionClosed and friends
            self.closed = True
            return None

    def send_json(self, payload: dict[str, Any]) -> bool:
        try:
            self.ws.send(json.dumps(payload, ensure_ascii=False))
            return True
        except Exception:  # noqa: BLE001
            self.closed = True
            return False

    def send_audio(self, pcm16: bytes) -> bool:
        try:
            self.ws.send(pcm16)
            return True
        except Exception:  # noqa: BLE001
            self.closed = True
            return False

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001 - already gone
            pass
        self.closed = True


def create_audio_app(runtime: "EslRuntime") -> Flask:
    app = Flask("voiceai-audio")
    app.config["SOCK_SERVER_OPTIONS"] = {"subprotocols": [SUBPROTOCOL], "ping_interval": None,
                                         "max_message_size": 1 << 20}
    sock = Sock(app)

    @sock.route("/audio")
    def audio(ws: Any) -> None:
        first = ws.receive(timeout=5)
        if not isinstance(first, str):
            log.warning("audio fork without a metadata frame")
            return
        try:
            meta = json.loads(first)
        except ValueError:
            log.warning("audio fork metadata is not JSON", extra={"frame": first[:200]})
            return
        call_uuid = str(meta.get("callId", ""))
        rate = int(request.args.get("rate", 8000))
        worker = _wait_for_worker(runtime, call_uuid)
        if worker is None:
            log.warning("audio fork for an unknown call", extra={"fs_uuid": call_uuid})
            return
        fork = ForkSocket(ws, rate)
        runtime.voice.run_call(worker, fork, meta)

    @sock.route("/browser")
    def browser(ws: Any) -> None:
        from esl_app.browser import serve_browser_session
        serve_browser_session(runtime, ws)

    @sock.route("/listen")
    def listen(ws: Any) -> None:
        from esl_app.listen import serve_listener
        serve_listener(runtime, ws)

    @app.get("/metrics")
    def metrics() -> Response:
        from prometheus_client import generate_latest
        return Response(generate_latest(REGISTRY), mimetype="text/plain; version=0.0.4")

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "calls": len(runtime.calls), "voice_calls": runtime.voice.active}

    return app


def _wait_for_worker(runtime: "EslRuntime", call_uuid: str, timeout_s: float = 5.0):  # type: ignore[no-untyped-def]
    """The fork can connect before the call's worker exists (CHANNEL_ANSWER still in flight)."""
    import gevent
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        worker = runtime.calls.workers.get(call_uuid)
        if worker is not None:
            return worker
        gevent.sleep(0.02)
    return None


def serve_audio(runtime: "EslRuntime", host: str, port: int):  # type: ignore[no-untyped-def]
    """Start the audio server on the gevent loop; returns the server (``.stop()`` to close)."""
    from gevent.pywsgi import WSGIServer
    server = WSGIServer((host, port), create_audio_app(runtime), log=None, error_log=log)
    server.start()
    log.info("audio server listening", extra={"host": host, "port": server.server_port})
    return server
