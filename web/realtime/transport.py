"""The two ways a subscription reaches a client: a WebSocket and Server-Sent Events.

Both run in the request's greenlet on gevent's WSGI server: they replay what the client missed,
then write every new chunk of the feed as it comes, with a heartbeat when idle. A slow client
only ever blocks its own greenlet.
"""
from __future__ import annotations

import logging
import socket
import time
from typing import Any, Callable, Iterator

from gevent.lock import Semaphore
from simple_websocket import Server

from web.realtime.frames import PING, SSE_HEARTBEAT, SSE_PREAMBLE
from web.realtime.hub import Subscription

log = logging.getLogger("voiceai.realtime")
SEND_BUFFER = 256 * 1024


class _LockedSocket:
    """The connection's socket with every write whole and serialized.

    Event chunks are written here directly (pre-built frames); simple-websocket's own writes
    (the handshake, pongs, the close frame) go through the same lock so frames never interleave.
    """

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._lock = Semaphore()

    def send(self, data: bytes) -> int:
        with self._lock:
            self._sock.sendall(data)
        return len(data)

    sendall = send

    def recv(self, n: int) -> bytes:
        return self._sock.recv(n)

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    def abort(self) -> None:
        """Cut the connection now (a blocked write fails, the reader sees EOF)."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class GatewaySocket(Server):
    """simple-websocket's server side (as flask-sock uses it) with pre-built frame writes."""

    def __init__(self, environ: dict, on_closed: Callable[[], None]) -> None:
        self._on_closed = on_closed
        super().__init__(environ, ping_interval=None, max_message_size=64 * 1024)

    def handshake(self) -> None:
        try:  # bound what the kernel holds for a client that stops reading (autotuning goes to MBs)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        except OSError:
            pass
        self.sock = _LockedSocket(self.sock)
        super().handshake()

    def _thread(self) -> None:
        try:
            super()._thread()
        finally:
            self._on_closed()


def run_websocket(ws: GatewaySocket, sub: Subscription, last_event_id: str | None, heartbeat_s: float) -> None:
    """Replay, then live frames until the client leaves or falls too far behind."""
    send = ws.sock.sendall
    try:
        for page in sub.replay(last_event_id):
            send(b"".join(f.ws for f in page))
        next_ping = time.monotonic() + heartbeat_s
        while ws.connected and not sub.closed:
            data = sub.take("ws")
            if data:
                send(data)
                continue
            now = time.monotonic()
            if now >= next_ping:
                send(PING)
                next_ping = now + heartbeat_s
                continue
            sub.wait(next_ping - now)
    except OSError:
        pass
    finally:
        sub.close(sub.reason or "closed")
        if ws.connected and sub.reason != "overflow":
            try:
                ws.close()
            except Exception:  # noqa: BLE001 - the peer is gone already
                pass


def sse_stream(sub: Subscription, last_event_id: str | None, heartbeat_s: float) -> Iterator[bytes]:
    """The body of an SSE response (``id:`` lines carry the stream ids)."""
    try:
        yield SSE_PREAMBLE
        for page in sub.replay(last_event_id):
            yield b"".join(f.sse for f in page)
        next_beat = time.monotonic() + heartbeat_s
        while not sub.closed:
            data = sub.take("sse")
            if data:
                yield data
                continue
            now = time.monotonic()
            if now >= next_beat:
                yield SSE_HEARTBEAT
                next_beat = now + heartbeat_s
                continue
            sub.wait(next_beat - now)
    finally:
        sub.close(sub.reason or "closed")
