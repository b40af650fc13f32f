"""The Event Socket connection: greenswitch, with JSON events, timeouts and background jobs.

greenswitch's stock event parser folds an event's body into its last header and its ``send`` waits
forever when the socket dies mid-command. ``FsConnection`` subclasses its inbound client to keep
JSON events intact (headers and ``_body``) and wraps commands with timeouts. Event handlers only
enqueue (see ``on_event``); the work happens in the receivers' own greenlets.
"""
from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import gevent
from gevent.event import AsyncResult
from greenswitch.esl import InboundESL, NotConnectedError

log = logging.getLogger("voiceai.esl")

EVENT_NAMES = ("CHANNEL_CREATE CHANNEL_ANSWER CHANNEL_PROGRESS CHANNEL_PROGRESS_MEDIA CHANNEL_BRIDGE "
               "CHANNEL_UNBRIDGE CHANNEL_PARK CHANNEL_HANGUP CHANNEL_HANGUP_COMPLETE CHANNEL_DESTROY DTMF "
               "PLAYBACK_START PLAYBACK_STOP RECORD_START RECORD_STOP BACKGROUND_JOB "
               "CUSTOM mod_audio_fork::connect mod_audio_fork::connect_failed mod_audio_fork::disconnect "
               "mod_audio_fork::play_audio mod_audio_fork::kill_audio sofia::gateway_state")


class FsCommandError(Exception):
    """FreeSWITCH answered ``-ERR ...`` or did not answer in time."""


@dataclass
class FsEvent:
    """One FreeSWITCH event: header dict (names as FreeSWITCH spells them) and optional body."""

    headers: dict[str, str]
    body: str = ""

    @property
    def name(self) -> str:
        return self.headers.get("Event-Name", "")

    @property
    def subclass(self) -> str:
        return self.headers.get("Event-Subclass", "")

    @property
    def uuid(self) -> str:
        return self.headers.get("Unique-ID", "")

    def var(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(f"variable_{name}", default)

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)


def parse_json_event(raw: str) -> FsEvent:
    data: dict[str, Any] = json.loads(raw)
    body = data.pop("_body", "") or ""
    return FsEvent({k: str(v) for k, v in data.items()}, body)


class _JsonEventESL(InboundESL):
    """greenswitch inbound client whose events arrive as ``FsEvent`` objects."""

    def handle_event(self, event: Any) -> None:  # called by greenswitch's receiver greenlet
        if event.headers.get("Content-Type") == "text/event-json":
            length = int(event.headers["Content-Length"])
            raw = self._read_socket(self.sock_file, length)
            try:
                event.fs = parse_json_event(raw)
            except ValueError:
                log.error("unparseable JSON event from FreeSWITCH", extra={"raw": raw[:200]})
                return
            event.headers = {"Event-Name": event.fs.name, "Event-Subclass": event.fs.subclass}
            self._esl_event_queue.put(event)
            return
        super().handle_event(event)


class FsConnection:
    """A live ESL connection to one FreeSWITCH: commands with timeouts, events to a callback."""

    def __init__(self, host: str, port: int, password: str, on_event: Callable[[FsEvent], None],
                 connect_timeout_s: float = 5.0) -> None:
        self._esl = _JsonEventESL(host, port, password, timeout=connect_timeout_s)
        self._on_event = on_event
        self._jobs: dict[str, AsyncResult] = {}
        self._orphan_jobs: dict[str, str] = {}  # results that arrived before their waiter

    def connect(self) -> None:
        try:
            self._esl.connect()
        except ValueError as exc:  # greenswitch's way of saying the password was refused
            raise FsCommandError("FreeSWITCH refused the ESL password") from exc
        self._esl.register_handle("*", self._dispatch)
        self._esl.register_handle("DISCONNECT", lambda _e: None)
        self.command(f"event json {EVENT_NAMES}")

    @property
    def connected(self) -> bool:
        return bool(self._esl.connected)

    def close(self) -> None:
        try:
            with gevent.Timeout(2):
                self._esl.stop()
        except (gevent.Timeout, Exception):  # noqa: BLE001 - closing a dead socket
            try:
                self._esl.sock.close()
            except Exception:  # noqa: BLE001
                pass
        for result in self._jobs.values():
            if not result.ready():
                result.set_exception(FsCommandError("ESL connection closed"))

    def _dispatch(self, event: Any) -> None:
        fs: FsEvent | None = getattr(event, "fs", None)
        if fs is None:
            return
        if fs.name == "BACKGROUND_JOB":
            job = fs.get("Job-UUID", "")
            waiter = self._jobs.pop(job, None)
            if waiter is not None:
                waiter.set(fs.body)
            elif job:
                if len(self._orphan_jobs) > 1000:
                    self._orphan_jobs.pop(next(iter(self._orphan_jobs)))
                self._orphan_jobs[job] = fs.body
        self._on_event(fs)

    def command(self, cmd: str, timeout_s: float = 5.0) -> str:
        """A raw command (``event``, ``filter``, ``sendmsg``...): returns Reply-Text."""
        try:
            with gevent.Timeout(timeout_s, FsCommandError(f"no reply to {cmd.split()[0]!r} in {timeout_s}s")):
                reply = self._esl.send(cmd)
        except NotConnectedError as exc:
            raise FsCommandError("not connected to FreeSWITCH") from exc
        text = reply.headers.get("Reply-Text", "")
        if text.startswith("-ERR"):
            raise FsCommandError(text)
        return text

    def api(self, cmd: str, timeout_s: float = 10.0, check: bool = False) -> str:
        """Synchronous ``api``: the response body (``-ERR ...`` raises only when ``check``)."""
        try:
            with gevent.Timeout(timeout_s, FsCommandError(f"no answer to api {cmd.split()[0]!r} in {timeout_s}s")):
                reply = self._esl.send(f"api {cmd}")
        except NotConnectedError as exc:
            raise FsCommandError("not connected to FreeSWITCH") from exc
        body = (getattr(reply, "data", "") or "")
        if check and body.startswith("-ERR"):
            raise FsCommandError(body.strip())
        return body

    def bgapi(self, cmd: str, timeout_s: float = 60.0) -> str:
        """``bgapi`` and wait for its BACKGROUND_JOB; returns the job's body (``+OK ...``/``-ERR ...``)."""
        job_uuid = str(uuid.uuid4())
        waiter = AsyncResult()
        self._jobs[job_uuid] = waiter
        try:
            reply = self.command(f"bgapi {cmd}\nJob-UUID: {job_uuid}")
            actual = reply.split("Job-UUID:", 1)[-1].strip() if "Job-UUID:" in reply else job_uuid
            if actual != job_uuid:  # a FreeSWITCH that ignored our Job-UUID header
                self._jobs.pop(job_uuid, None)
                job_uuid = actual
                if actual in self._orphan_jobs:
                    return self._orphan_jobs.pop(actual)
                self._jobs[actual] = waiter
            return waiter.get(timeout=timeout_s)
        except gevent.Timeout as exc:
            raise FsCommandError(f"background job {cmd.split()[0]!r} did not finish in {timeout_s}s") from exc
        finally:
            self._jobs.pop(job_uuid, None)

    def sendmsg(self, call_uuid: str, app: str, arg: str = "", event_lock: bool = False) -> str:
        """Execute a dialplan application on a channel (faster than uuid_broadcast for playback)."""
        lines = [f"sendmsg {call_uuid}", "call-command: execute", f"execute-app-name: {app}"]
        if arg:
            lines.append(f"execute-app-arg: {arg}")
        if event_lock:
            lines.append("event-lock: true")
        return self.command("\n".join(lines))
