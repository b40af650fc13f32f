"""Where a voice conversation's audio comes from and goes to: a phone call or a browser tab.

``VoiceCall`` talks to a line, never to FreeSWITCH or a socket directly, so the same loop (VAD,
turns, STT, dialog, TTS, barge-in) serves a FreeSWITCH channel with mod_audio_fork and the
cabinet's "Поговорить с агентом" page, which streams the microphone over a WebSocket.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from esl_app.audio_server import ForkSocket
    from esl_app.calls import CallWorker
    from esl_app.esl import FsEvent
    from esl_app.runtime import EslRuntime

log = logging.getLogger("voiceai.esl.lines")


class PhoneLine:
    """A FreeSWITCH channel: caller audio from mod_audio_fork; agent audio as files
    (``uuid_broadcast``-style playback) or streamed back on the fork socket."""

    kind = "phone"

    def __init__(self, runtime: "EslRuntime", worker: "CallWorker", fork: "ForkSocket", playback_mode: str) -> None:
        self.runtime = runtime
        self.worker = worker
        self.fork = fork
        self.call = worker.call
        self.rate = fork.rate
        self.streaming = playback_mode == "stream"
        self.fs_uuid = worker.fs_uuid

    @property
    def closed(self) -> bool:
        return self.fork.closed

    def receive(self, timeout: float | None = None) -> bytes | str | None:
        return self.fork.receive(timeout=timeout)

    def attach(self, listener: Callable[["FsEvent"], None]) -> None:
        self.worker.listeners.append(listener)

    def detach(self, listener: Callable[["FsEvent"], None]) -> None:
        try:
            self.worker.listeners.remove(listener)
        except ValueError:
            pass

    def play_file(self, path: str) -> None:
        self.runtime.fs.sendmsg(self.fs_uuid, "playback", path)

    def send_audio(self, pcm16: bytes) -> bool:
        return self.fork.send_audio(pcm16)

    def stop_audio(self) -> None:
        if self.streaming:
            self.runtime.fs.api(f"uuid_audio_fork {self.fs_uuid} stop_play")
        else:
            self.runtime.fs.api(f"uuid_break {self.fs_uuid} all")

    def hangup(self, cause: str = "NORMAL_CLEARING") -> None:
        self.runtime.fs.api(f"uuid_kill {self.fs_uuid} {cause}")

    def can_transfer(self) -> bool:
        return True

    def transfer(self, args: dict[str, Any]) -> dict[str, Any]:
        """Hand the caller to an operator (``esl_app.transfer``); blocks until bridged or fallen back."""
        return self.runtime.transfers.transfer({"call_id": str(self.call.id), **args})

    def notify(self, payload: dict[str, Any]) -> None:
        """Phone callers see nothing; the browser line shows transcripts."""


class BrowserLine:
    """A cabinet browser tab: microphone PCM (L16 mono) in, agent speech PCM and JSON notices out.

    Outgoing text frames: ``{"type": "transcript", "speaker", "text", "confidence"}``,
    ``{"type": "clear"}`` (barge-in: drop buffered agent audio), ``{"type": "hangup", "reason"}``,
    ``{"type": "ready", "call_id", "sample_rate"}``. Incoming text frames: ``{"type": "dtmf",
    "digit"}`` and ``{"type": "hangup"}``; binary frames are microphone audio at ``rate``.
    """

    kind = "browser"
    streaming = True
    fs_uuid = None

    def __init__(self, ws: Any, call: Any, rate: int) -> None:
        from esl_app.audio_server import ForkSocket
        self.sock = ForkSocket(ws, rate)  # the same guarded socket I/O as a mod_audio_fork connection
        self.call = call
        self.rate = rate
        self.hangup_reason: str | None = None

    @property
    def closed(self) -> bool:
        return self.sock.closed

    def receive(self, timeout: float | None = None) -> bytes | str | None:
        return None if self.sock.closed else self.sock.receive(timeout=timeout)

    def attach(self, listener: Callable[..., None]) -> None:
        """No telephony events on a browser line."""

    def detach(self, listener: Callable[..., None]) -> None:
        """No telephony events on a browser line."""

    def play_file(self, path: str) -> None:  # pragma: no cover - streaming is always on
        raise RuntimeError("a browser line only streams audio")

    def send_audio(self, pcm16: bytes) -> bool:
        return not self.sock.closed and self.sock.send_audio(pcm16)

    def stop_audio(self) -> None:
        self.notify({"type": "clear"})

    def hangup(self, cause: str = "NORMAL_CLEARING") -> None:
        self.hangup_reason = cause
        self.notify({"type": "hangup", "reason": cause})
        self.sock.close()

    def can_transfer(self) -> bool:
        return False

    def transfer(self, args: dict[str, Any]) -> dict[str, Any]:  # pragma: no cover - can_transfer is False
        raise RuntimeError("a browser line cannot be transferred")

    def notify(self, payload: dict[str, Any]) -> None:
        if not self.sock.closed:
            self.sock.send_json(payload)
