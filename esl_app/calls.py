"""Live calls inside esl_app: one greenlet and one queue per call.

ESL handlers only enqueue (``CallManager.on_event``); each ``CallWorker`` drains its own queue, runs
the pure ``CallTracker`` and executes its actions (database, realtime bus, recording). A call is
attached when its first VoiceAI-routed event arrives, or re-attached after a restart or an ESL
reconnect from ``show channels`` (see ``reattach``), so no call record is lost.
"""
from __future__ import annotations

import json
import logging
import uuid
from typing import TYPE_CHECKING, Any, Callable

import gevent
import gevent.event
from gevent.queue import Queue

from core.calls.lifecycle import CallTracker
from core.calls.store import CallRecorder, inbound_call_from_channel
from core.tracing import set_trace_id
from models.base import database, utcnow
from models.calls import Call
from esl_app.esl import FsEvent

if TYPE_CHECKING:
    from esl_app.runtime import EslRuntime

log = logging.getLogger("voiceai.esl.calls")

_CHANNEL_EVENTS = {"CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA",
                   "CHANNEL_BRIDGE", "CHANNEL_UNBRIDGE", "CHANNEL_PARK", "CHANNEL_HANGUP",
                   "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY", "DTMF", "PLAYBACK_START", "PLAYBACK_STOP",
                   "RECORD_START", "RECORD_STOP", "CUSTOM"}
_STOP = object()


class CallWorker:
    """Owns one call: its tracker, its recorder and the greenlet that applies events in order."""

    def __init__(self, runtime: "EslRuntime", call: Call, tracker: CallTracker) -> None:
        self.runtime = runtime
        self.call = call
        self.tracker = tracker
        self.queue: Queue = Queue()
        self.listeners: list[Callable[[FsEvent], None]] = []  # transfer/voice logic waiting on events
        self.greenlet = gevent.spawn(self._run)

    @property
    def fs_uuid(self) -> str:
        return self.tracker.fs_uuid

    def put(self, event: FsEvent) -> None:
        self.queue.put(event)

    def stop(self) -> None:
        self.queue.put(_STOP)

    def _run(self) -> None:
        set_trace_id(self.call.trace_id)
        recorder = CallRecorder(self.call, self.runtime.redis)
        while True:
            item = self.queue.get()
            if item is _STOP:
                return
            event: FsEvent = item
            for listener in list(self.listeners):
                try:
                    listener(event)
                except Exception:  # noqa: BLE001 - a listener must not kill the call loop
                    log.exception("call listener failed")
            if event.uuid and event.uuid != self.fs_uuid:
                self._other_leg(recorder, event)
                continue
            try:
                with database.connection_context():
                    finished = self._apply(recorder, event)
            except Exception:  # noqa: BLE001 - keep the call alive; the next event may succeed
                log.exception("applying event failed", extra={"event": event.name, "call_id": str(self.call.id)})
                continue
            if finished:
                self._price()
                self.runtime.calls.forget(self)
                return

    def _price(self) -> None:
        """The ended call's cost by component (core.billing.costs; idempotent, the dialer may price too)."""
        from core.billing.costs import price_call
        try:
            with database.connection_context():
                price_call(self.call.id)
        except Exception:  # noqa: BLE001 - pricing must never keep a call worker alive
            log.exception("could not price the call", extra={"call_id": str(self.call.id)})

    def _other_leg(self, recorder: CallRecorder, event: FsEvent) -> None:
        """Events of the operator leg: when the operator hangs up a bridged call, the call is over."""
        if event.name != "CHANNEL_HANGUP_COMPLETE" or event.uuid != self.tracker.operator_uuid:
            return
        if self.tracker.ended:
            return
        try:
            with database.connection_context():
                recorder.add_event("operator_hung_up", utcnow(), "Оператор завершил разговор",
                                   {"operator_leg": event.uuid, "cause": event.get("Hangup-Cause", "")})
            self.runtime.fs.api(f"uuid_kill {self.fs_uuid} NORMAL_CLEARING")
        except Exception:  # noqa: BLE001 - the caller's own hangup event still closes the row
            log.exception("could not end the call after the operator hung up")

    def _apply(self, recorder: CallRecorder, event: FsEvent) -> bool:
        finished = False
        for action in self.tracker.on_event(event.headers, event.body):
            kind, data = action.kind, action.data
            if kind == "persist":
                recorder.persist(data)
            elif kind == "call_event":
                recorder.add_event(data["type"], data["ts"], data["human_status"], data["payload"])
            elif kind == "publish":
                recorder.publish(data["type"], data["ts"], data["payload"])
            elif kind == "start_recording":
                self.runtime.recordings.start(self, recorder)
            elif kind == "recording_done":
                self.runtime.recordings.finish(self, recorder, data.get("path"))
            elif kind == "kill_leg":
                self.runtime.fs.api(f"uuid_kill {data['uuid']} NORMAL_CLEARING")
            elif kind == "finished":
                finished = True
        return finished


class CallManager:
    """Routes channel events to call workers; creates workers for calls VoiceAI owns."""

    def __init__(self, runtime: "EslRuntime") -> None:
        self.runtime = runtime
        self.workers: dict[str, CallWorker] = {}
        self.accepting = True

    def __len__(self) -> int:
        return len(self.workers)

    def forget(self, worker: CallWorker) -> None:
        self.workers.pop(worker.fs_uuid, None)

    def worker_for_call(self, call_id: str) -> CallWorker | None:
        for w in self.workers.values():
            if str(w.call.id) == str(call_id):
                return w
        return None

    def on_event(self, event: FsEvent) -> None:
        """ESL handler: find or create the worker and enqueue. No I/O for known calls."""
        if event.name not in _CHANNEL_EVENTS:
            return
        fs_uuid = event.uuid
        worker = self.workers.get(fs_uuid)
        if worker is not None:
            worker.put(event)
            return
        parent = event.var("voiceai_parent_call_uuid")
        if parent and parent in self.workers:  # operator leg: its events go to the caller's worker
            self.workers[parent].put(event)
            return
        if not self.accepting or fs_uuid == "":
            return
        if event.var("voiceai_project_id") or event.var("voiceai_call_id"):
            if event.name in ("CHANNEL_PARK", "CHANNEL_ANSWER", "CHANNEL_CREATE", "CHANNEL_PROGRESS",
                              "CHANNEL_HANGUP_COMPLETE"):
                # Creating the row is I/O: do it in its own greenlet, then hand over the event.
                gevent.spawn(self._attach_from_event, event)

    def _attach_from_event(self, event: FsEvent) -> None:
        if event.uuid in self.workers:
            self.workers[event.uuid].put(event)
            return
        with database.connection_context():
            call = self._load_or_create(event.headers)
        if call is None:
            return
        if event.uuid in self.workers:  # another greenlet won the race
            self.workers[event.uuid].put(event)
            return
        worker = self._start_worker(call, event.headers)
        worker.put(event)
        routing = (call.metadata_json or {}).get("routing") or {}
        if routing.get("action") in ("operator", "hangup", "message"):
            gevent.spawn(self._apply_routing, worker, routing)

    def _apply_routing(self, worker: CallWorker, routing: dict) -> None:
        """A routing rule sent this caller away from the agent: operator, goodbye message or hang-up."""
        action = routing["action"]
        fs = self.runtime.fs
        try:
            with database.connection_context():
                CallRecorder(worker.call, self.runtime.redis).add_event(
                    "routing_rule", utcnow(), "Сработало правило маршрутизации", dict(routing))
            if action == "operator" and routing.get("operator_route_id"):
                with database.connection_context():
                    self.runtime.transfers.transfer({"call_id": str(worker.call.id),
                                                     "operator_route_id": routing["operator_route_id"]})
                return
            if action == "message" and routing.get("rule_id"):
                from pathlib import Path
                prompt = Path(self.runtime.settings.fs_sounds_dir) / f"routing_{routing['rule_id']}.wav"
                if prompt.exists():
                    done = gevent.event.Event()

                    def stopped(event: FsEvent) -> None:
                        if event.name == "PLAYBACK_STOP" and event.get("Playback-File-Path") == str(prompt):
                            done.set()
                    worker.listeners.append(stopped)
                    fs.api(f"uuid_broadcast {worker.fs_uuid} {prompt} aleg")
                    done.wait(timeout=60)
            fs.api(f"uuid_kill {worker.fs_uuid} NORMAL_CLEARING")
        except Exception:  # noqa: BLE001
            log.exception("could not apply the routing rule", extra={"call_id": str(worker.call.id)})

    def _load_or_create(self, headers: dict[str, str]) -> Call | None:
        call_id = headers.get("variable_voiceai_call_id")
        if call_id:  # outbound: the row was created before the originate
            try:
                call = Call.get_or_none(Call.id == uuid.UUID(call_id))
            except ValueError:
                call = None
            if call is not None and not call.fs_uuid:
                Call.update(fs_uuid=headers.get("Unique-ID")).where(Call.id == call.id).execute()
                call.fs_uuid = headers.get("Unique-ID")
            return call
        return inbound_call_from_channel(headers, self.runtime.node)

    def _start_worker(self, call: Call, headers: dict[str, str] | None = None) -> CallWorker:
        tracker = CallTracker(call_id=str(call.id), fs_uuid=call.fs_uuid or (headers or {}).get("Unique-ID", ""),
                              direction=call.direction)
        if call.answered_at is not None:
            tracker.answered_at = call.answered_at
        if call.state and call.state not in ("queued", "ringing"):
            from models.calls import CallState
            try:
                tracker.state = CallState(call.state)
            except ValueError:
                pass
        tracker.recording = bool(call.metadata_json.get("recording_started")) if call.metadata_json else False
        worker = CallWorker(self.runtime, call, tracker)
        self.workers[tracker.fs_uuid] = worker
        return worker

    # -- re-attach -------------------------------------------------------------------------------
    def reattach(self) -> dict[str, int]:
        """After (re)connecting: adopt live channels, close rows whose channel is gone.

        Returns counts for logs and tests: adopted, already_attached, closed.
        """
        raw = self.runtime.fs.api("show channels as json")
        try:
            rows = json.loads(raw).get("rows", []) if raw.strip() else []
        except ValueError:
            log.error("unexpected 'show channels' reply", extra={"reply": raw[:200]})
            return {"adopted": 0, "already_attached": 0, "closed": 0}
        live = {row.get("uuid"): row for row in rows if row.get("uuid")}
        stats = {"adopted": 0, "already_attached": 0, "closed": 0}
        for fs_uuid in live:
            if fs_uuid in self.workers:
                stats["already_attached"] += 1
                continue
            dump = self._uuid_vars(fs_uuid)
            if dump is None:
                continue
            if not (dump.get("variable_voiceai_project_id") or dump.get("variable_voiceai_call_id")):
                continue  # operator legs and foreign channels
            if dump.get("variable_voiceai_parent_call_uuid"):
                continue
            with database.connection_context():
                call = self._load_or_create(dump)
                if call is None:
                    continue
                if call.ended_at is not None:
                    continue
            worker = self._start_worker(call, dump)
            answered = dump.get("Answer-State") == "answered" or dump.get("Channel-Call-State") == "ACTIVE"
            if answered and call.answered_at is None:
                worker.put(FsEvent({**dump, "Event-Name": "CHANNEL_ANSWER"}))
            stats["adopted"] += 1
        with database.connection_context():
            stale = Call.select().where((Call.fs_node == self.runtime.node) & Call.ended_at.is_null()
                                        & Call.fs_uuid.is_null(False))
            for call in stale:
                if call.fs_uuid in live or call.fs_uuid in self.workers:
                    continue
                self._close_lost(call)
                stats["closed"] += 1
        log.info("re-attached live calls", extra=stats)
        return stats

    def _uuid_vars(self, fs_uuid: str) -> dict[str, str] | None:
        """Channel headers and variables of a live channel (``uuid_dump <uuid> json``)."""
        raw = self.runtime.fs.api(f"uuid_dump {fs_uuid} json")
        if not raw or raw.startswith("-ERR"):
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        return {k: str(v) for k, v in data.items()}

    def _close_lost(self, call: Call) -> None:
        """The channel ended while nobody listened: finish the row honestly instead of leaving it open."""
        from core.events.bus import publish
        from core.events.schema import make_event
        now = utcnow()
        outcome = "completed" if call.answered_at else "failed"
        text = "Звонок завершился, пока телефонный модуль был недоступен; точная причина неизвестна"
        duration = int((now - call.started_at).total_seconds()) if call.started_at else 0
        Call.update(ended_at=now, state="ended", human_status="Завершён", outcome=outcome,
                    hangup_cause="UNKNOWN_WHILE_DETACHED", hangup_cause_text=text, duration_s=duration,
                    updated_at=now).where(Call.id == call.id).execute()
        recorder = CallRecorder(call, self.runtime.redis)
        recorder.add_event("ended", now, text, {"outcome": outcome, "detached": True})
        payload = {"outcome": outcome, "hangup_cause": "UNKNOWN_WHILE_DETACHED", "hangup_cause_text": text,
                   "human_status": "Завершён"}
        recorder.publish("call.ended", now, payload)
