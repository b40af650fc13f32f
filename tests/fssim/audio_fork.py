"""mod_audio_fork client: streams call audio to the app's WebSocket and turns its replies into events.

Behaviour follows the drachtio/jambonz module (lws_glue.cpp, mod_audio_fork.c):
- subprotocol `audio.drachtio.org`; the metadata is the first text frame, sent after connecting;
- then binary L16 little-endian frames of exactly 20 ms (320 bytes at 8k mono), paced in real time
  against a monotonic clock (no sleep-drift accumulation);
- text frames from the app: playAudio (writes `<tmp>/<uuid>_<n>.tmp.r8|.r16|.wav` and fires
  `mod_audio_fork::play_audio` with the data minus audioContent plus "file"), killAudio (event and
  CF_BREAK of the current playback), transcription/transfer/error/disconnect/json (events);
- `mod_audio_fork::disconnect` is fired only when the far end closes the socket (as in the
  capture: a hangup or `stop` closes it without that event);
- bidirectional (jambonz): binary frames from the app are what the caller hears; `stop_play`
  clears what has not been played yet.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from array import array
from typing import TYPE_CHECKING, Any, Optional

from .audio import INTERNAL_RATE

if TYPE_CHECKING:  # pragma: no cover
    from .channel import Channel
    from .server import FsSim

log = logging.getLogger("fssim.audio_fork")

SUBPROTOCOL = "audio.drachtio.org"
FRAME_MS = 20


def cjson_dumps(value: Any) -> str:
    """cJSON_PrintUnformatted: compact, UTF-8 kept, integral doubles printed as integers."""
    def norm(v: Any) -> Any:
        if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
            return int(v)
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items()}
        if isinstance(v, list):
            return [norm(x) for x in v]
        return v
    return json.dumps(norm(value), ensure_ascii=False, separators=(",", ":"))


class StreamPlayout:
    """Bidirectional audio the app streams back, played to the caller in real time (20 ms frames)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.pending = bytearray()
        self.heard = bytearray()
        self.last = time.monotonic()
        self.lock = threading.Lock()

    def _drain(self) -> None:
        now = time.monotonic()
        n = int((now - self.last) * self.rate) * 2
        self.last = now
        if n > 0 and self.pending:
            take = self.pending[:n]
            del self.pending[:n]
            self.heard += take

    def append(self, data: bytes) -> None:
        with self.lock:
            self._drain()
            if not self.pending:
                self.last = time.monotonic()
            self.pending += data

    def clear(self) -> int:
        with self.lock:
            self._drain()
            dropped = len(self.pending)
            self.pending.clear()
            return dropped

    def heard_bytes(self) -> bytes:
        with self.lock:
            self._drain()
            return bytes(self.heard)


class ForkSession:
    """One media bug (`bugname`) on a channel with its WebSocket connection."""

    def __init__(self, sim: "FsSim", ch: "Channel", url: str, mix: str, rate: int, bugname: str,
                 metadata: Optional[str], bidirectional: bool, bidir_rate: int) -> None:
        self.sim = sim
        self.ch = ch
        self.url = url
        self.mix = mix
        self.rate = rate
        self.bugname = bugname
        self.metadata = metadata
        self.bidirectional = bidirectional
        self.playout = StreamPlayout(bidir_rate or rate)
        self.ws: Any = None
        self.connected = False
        self.closing = False
        self.closed = False
        self.paused = False
        self.bug_stopped = False
        self.connect_error: Optional[str] = None
        self.frames_sent = 0
        self.bytes_sent = 0
        self.late_frames = 0
        self.max_late_ms = 0.0
        self.first_frame_mono: Optional[float] = None
        self.last_frame_mono: Optional[float] = None
        self.texts_sent: list[str] = []
        self.texts_received: list[str] = []
        self.files: list[str] = []
        self.lock = threading.Lock()
        self.frame_bytes = rate * FRAME_MS // 1000 * 2 * (2 if mix == "stereo" else 1)

    # ---- lifecycle ----
    def start(self) -> None:
        self.ch.media_bugs.append(self.bugname)
        self.ch.fire("MEDIA_BUG_START", pre=[("Media-Bug-Function", self.bugname), ("Media-Bug-Target", "N/A")])
        threading.Thread(target=self._connect_and_run, name=f"fssim-fork-{self.ch.uuid[:8]}", daemon=True).start()

    def _connect_and_run(self) -> None:
        import websocket  # websocket-client
        headers = []
        user = self.ch.get_var("MOD_AUDIO_BASIC_AUTH_USERNAME")
        if user:
            pw = self.ch.get_var("MOD_AUDIO_BASIC_AUTH_PASSWORD") or ""
            headers.append("Authorization: Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode())
        try:
            ws = websocket.create_connection(self.url, subprotocols=[SUBPROTOCOL], timeout=5,
                                             header=headers, enable_multithread=True)
            ws.settimeout(None)
        except Exception as exc:  # refused, 404, bad handshake...
            reason = str(exc) or exc.__class__.__name__
            self.connect_error = reason
            if self.ch.alive:
                self.fire("connect_failed", cjson_dumps({"reason": reason}))
            return
        with self.lock:
            if self.closing or not self.ch.alive:
                try:
                    ws.close()
                except Exception:
                    pass
                return
            self.ws = ws
            self.connected = True
        self.fire("connect", None)
        if self.metadata:
            self._send_text(self.metadata)
        threading.Thread(target=self._reader, name=f"fssim-fork-rx-{self.ch.uuid[:8]}", daemon=True).start()
        self._sender()

    def fire(self, what: str, body: Optional[str]) -> None:
        self.ch.fire("CUSTOM", subclass=f"mod_audio_fork::{what}", body=body, calling="CUSTOM_AUDIO_FORK")

    # ---- sending ----
    def _send_text(self, text: str) -> bool:
        ws = self.ws
        if ws is None:
            return False
        try:
            ws.send(text)
            self.texts_sent.append(text)
            return True
        except Exception:
            return False

    def _frame(self, index: int) -> bytes:
        n = self.rate * FRAME_MS // 1000
        caller = self.ch.caller_audio.read(index * n, n, self.rate)
        if self.mix == "mono":
            out = caller
        else:
            played = self.ch.played_audio.read(index * n, n, self.rate)
            if self.mix == "mixed":
                out = array("h", (max(-32768, min(32767, a + b)) for a, b in zip(caller, played)))
            else:
                out = array("h", bytes(4 * n))
                out[0::2] = caller
                out[1::2] = played
        return out.tobytes()

    def _sender(self) -> None:
        """Real-time pacing: frame k is due at t0 + (k+1)*20ms, computed from a monotonic clock."""
        period = FRAME_MS / 1000.0
        t0 = time.monotonic()
        base = int((t0 - self.ch.created_mono) / period)
        k = 0
        while True:
            with self.lock:
                if self.closing or self.ws is None:
                    return
            if not self.ch.alive:
                return
            due = t0 + (k + 1) * period
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if self.closing or not self.ch.alive:
                return
            late = (time.monotonic() - due) * 1000.0
            if not self.paused:
                data = self._frame(base + k)
                try:
                    self.ws.send_binary(data)
                except Exception:
                    return
                now = time.monotonic()
                if self.first_frame_mono is None:
                    self.first_frame_mono = now
                self.last_frame_mono = now
                self.frames_sent += 1
                self.bytes_sent += len(data)
                if late > FRAME_MS:
                    self.late_frames += 1
                self.max_late_ms = max(self.max_late_ms, late)
            k += 1

    # ---- receiving ----
    def _reader(self) -> None:
        import websocket
        ws = self.ws
        while True:
            try:
                opcode, data = ws.recv_data(control_frame=False)
            except Exception:
                opcode, data = websocket.ABNF.OPCODE_CLOSE, b""
            if opcode == websocket.ABNF.OPCODE_CLOSE or (opcode == 0 and not data):
                self._far_end_closed()
                return
            if opcode == websocket.ABNF.OPCODE_TEXT:
                text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
                self.texts_received.append(text)
                try:
                    self.on_text(text)
                except Exception:
                    log.exception("fork message handling failed")
            elif opcode == websocket.ABNF.OPCODE_BINARY:
                self.on_binary(bytes(data))

    def _far_end_closed(self) -> None:
        with self.lock:
            mine = self.closing
            self.connected = False
            self.ws = None
            self.closed = True
        if not mine and self.ch.alive:
            self.fire("disconnect", None)  # CONNECTION_DROPPED

    def on_text(self, text: str) -> None:
        try:
            msg = json.loads(text)
        except ValueError:
            log.debug("fork: unparseable message %r", text)
            return
        if not isinstance(msg, dict):
            return
        kind = msg.get("type")
        data = msg.get("data")
        if kind == "playAudio":
            if self.bidirectional and self.sim.bidirectional_stream_only:
                return
            if not isinstance(data, dict):
                return
            audio = data.pop("audioContent", None)
            ctype = data.get("audioContentType")
            ext = None
            if ctype == "raw":
                ext = {8000: ".r8", 16000: ".r16", 24000: ".r24", 32000: ".r32", 48000: ".r48",
                       64000: ".r64"}.get(int(data.get("sampleRate") or 0), ".r16")
            elif ctype in ("wave", "wav"):
                ext = ".wav"
            if ext and isinstance(audio, str):
                path = os.path.join(self.sim.temp_dir, f"{self.ch.uuid}_{self.sim.next_play_count()}.tmp{ext}")
                with open(path, "wb") as f:
                    f.write(base64.b64decode(audio))
                self.files.append(path)
                data["file"] = path
            self.fire("play_audio", cjson_dumps(data))
        elif kind == "killAudio":
            self.fire("kill_audio", None)
            self.ch.break_playback()
            if self.ch.loopback_peer is not None:
                self.ch.loopback_peer.break_playback()
        elif kind in ("transcription", "transfer", "disconnect", "error"):
            self.fire(kind, cjson_dumps(data) if data is not None else None)
        elif kind == "json":
            self.fire("json", cjson_dumps(msg))
        else:
            log.info("fork: unsupported msg type %s", kind)

    def on_binary(self, data: bytes) -> None:
        if not self.bidirectional:
            return  # the drachtio module ignores binary frames from the app
        self.ch.received_stream_audio += data
        self.playout.append(data)
        self.ch.notify()

    # ---- API subcommands ----
    def stop(self, text: Optional[str] = None) -> None:
        """`uuid_audio_fork <uuid> stop [text]`: optional final text, close, MEDIA_BUG_STOP."""
        if text:
            self._send_text(text)
        self._close()
        self._bug_stop()
        self._remove_files()

    def stop_play(self) -> None:
        self.playout.clear()

    def send_text(self, text: str) -> bool:
        return self._send_text(text)

    def _close(self) -> None:
        with self.lock:
            self.closing = True
            ws, self.ws = self.ws, None
            self.connected = False
        if ws is not None:
            # send the close frame, then drop the socket; the reader thread is still in recv()
            try:
                ws.send_close()
            except Exception:
                pass
            try:
                ws.shutdown()
            except Exception:
                pass

    def _bug_stop(self) -> None:
        if self.bug_stopped:
            return
        self.bug_stopped = True
        self.ch.forks.pop(self.bugname, None)
        self.ch.fire("MEDIA_BUG_STOP", pre=[("Media-Bug-Function", self.bugname), ("Media-Bug-Target", "N/A")])

    def _remove_files(self) -> None:
        if self.sim.keep_fork_files:
            return
        for path in self.files:
            try:
                os.remove(path)
            except OSError:
                pass

    def on_channel_hangup(self) -> None:
        """SWITCH_ABC_TYPE_CLOSE: the bug goes away with the channel (MEDIA_BUG_STOP in CS_HANGUP)."""
        self._bug_stop()
        self._close()
        self._remove_files()

    # ---- statistics for benchmarks ----
    def stats(self) -> dict[str, Any]:
        elapsed = (self.last_frame_mono - self.first_frame_mono) if self.first_frame_mono and self.last_frame_mono else 0.0
        return {
            "url": self.url, "bugname": self.bugname, "connected": self.connected,
            "connect_error": self.connect_error, "frames_sent": self.frames_sent,
            "bytes_sent": self.bytes_sent, "frame_bytes": self.frame_bytes,
            "late_frames": self.late_frames, "max_late_ms": round(self.max_late_ms, 3),
            "elapsed_s": elapsed, "texts_sent": list(self.texts_sent),
            "texts_received": list(self.texts_received), "files": list(self.files),
            "stream_heard_bytes": len(self.playout.heard_bytes()),
        }

    def stream_heard(self) -> bytes:
        """The part of the bidirectional audio the caller actually heard so far."""
        return self.playout.heard_bytes()
