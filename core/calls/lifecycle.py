"""The telephony lifecycle of one call as a pure state machine.

``CallTracker.on_event(event)`` turns FreeSWITCH channel events (header dicts, names as FreeSWITCH
spells them) into actions for the runner in esl_app: persist the call row, add a call event, publish
a realtime event, start or finish the recording. It never does I/O, so tests replay captured event
timelines into it. Voice turns (listening/thinking/speaking) are layered on top by the voice runtime.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from core.telephony.causes import CallState, describe_cause, human_status
from models.calls import CallState as StoredState

# The live (fine) state of causes.CallState -> the coarse state stored in calls.state.
STORED_STATE = {CallState.RINGING: StoredState.RINGING, CallState.ANSWERED: StoredState.IN_PROGRESS,
                CallState.AGENT_SPEAKING: StoredState.IN_PROGRESS, CallState.LISTENING: StoredState.IN_PROGRESS,
                CallState.THINKING: StoredState.IN_PROGRESS, CallState.ON_HOLD: StoredState.IN_PROGRESS,
                CallState.TRANSFERRING: StoredState.TRANSFERRING, CallState.OPERATOR: StoredState.WITH_OPERATOR,
                CallState.ENDED: StoredState.ENDED}


@dataclass(frozen=True)
class Action:
    kind: str  # persist | call_event | publish | start_recording | recording_done | kill_leg | finished
    data: dict[str, Any] = field(default_factory=dict)


def _epoch_us(headers: dict[str, str], name: str) -> dt.datetime | None:
    raw = headers.get(name)
    if not raw or raw == "0":
        return None
    try:
        return dt.datetime.fromtimestamp(int(raw) / 1_000_000, dt.timezone.utc)
    except ValueError:
        return None


def event_time(headers: dict[str, str]) -> dt.datetime:
    return _epoch_us(headers, "Event-Date-Timestamp") or dt.datetime.now(dt.timezone.utc)


@dataclass
class CallTracker:
    """State of one call's A-leg as far as telephony is concerned."""

    call_id: str
    fs_uuid: str
    direction: str
    state: CallState = CallState.RINGING
    answered_at: dt.datetime | None = None
    ended: bool = False
    recording: bool = False
    recording_path: str | None = None
    operator_uuid: str | None = None
    transferred: bool = False

    def _state(self, new: CallState, at: dt.datetime, payload: dict[str, Any] | None = None) -> list[Action]:
        if new == self.state:
            return []
        self.state = new
        status = human_status(new)
        stored = STORED_STATE[new].value
        data = {"state": stored, "live_state": new.value, "human_status": status, **(payload or {})}
        return [Action("persist", {"state": stored, "human_status": status}),
                Action("call_event", {"type": "state_changed", "ts": at, "human_status": status, "payload": data}),
                Action("publish", {"type": "call.state_changed", "ts": at, "payload": data})]

    def on_event(self, headers: dict[str, str], body: str = "") -> list[Action]:
        name = headers.get("Event-Name", "")
        at = event_time(headers)
        if self.ended:
            return []
        if name in ("CHANNEL_ANSWER", "CHANNEL_PARK") and self.answered_at is None and \
                (name == "CHANNEL_ANSWER" or headers.get("Answer-State") == "answered"):
            self.answered_at = at
            status = human_status(CallState.ANSWERED)
            actions = [Action("persist", {"answered_at": at}),
                       Action("call_event", {"type": "answered", "ts": at, "human_status": status, "payload": {}}),
                       Action("publish", {"type": "call.started", "ts": at,
                                          "payload": {"state": StoredState.IN_PROGRESS.value, "human_status": status,
                                                      "answered_at": at.isoformat()}})]
            actions += self._state(CallState.ANSWERED, at)
            if headers.get("variable_voiceai_recording") == "true" and not self.recording:
                self.recording = True
                actions.append(Action("start_recording", {}))
            return actions
        if name == "CHANNEL_PROGRESS" or name == "CHANNEL_PROGRESS_MEDIA":
            return [Action("call_event", {"type": "ringing", "ts": at, "human_status": human_status(CallState.RINGING),
                                          "payload": {}})]
        if name == "CHANNEL_BRIDGE":
            other = headers.get("Other-Leg-Unique-ID") or headers.get("Bridge-B-Unique-ID")
            self.operator_uuid = other
            self.transferred = True
            return self._state(CallState.OPERATOR, at, {"operator_leg": other})
        if name == "CHANNEL_UNBRIDGE":
            return [Action("call_event", {"type": "unbridged", "ts": at, "human_status": "Оператор отключился",
                                          "payload": {}})]
        if name == "DTMF":
            digit = headers.get("DTMF-Digit", "")
            return [Action("call_event", {"type": "dtmf", "ts": at, "human_status": f"Нажата клавиша {digit}",
                                          "payload": {"digit": digit, "source": headers.get("DTMF-Source", "")}})]
        if name in ("PLAYBACK_START", "PLAYBACK_STOP"):
            return [Action("call_event", {"type": name.lower(), "ts": at, "human_status": "",
                                          "payload": {"file": headers.get("Playback-File-Path", ""),
                                                      "status": headers.get("Playback-Status", "")}})]
        if name == "RECORD_STOP":
            path = headers.get("Record-File-Path", "")
            return [Action("recording_done", {"path": path})]
        if name == "CHANNEL_HANGUP_COMPLETE":
            return self._hangup(headers, at)
        return []

    def _hangup(self, headers: dict[str, str], at: dt.datetime) -> list[Action]:
        self.ended = True
        cause = headers.get("Hangup-Cause", "NORMAL_CLEARING")
        sip_code = headers.get("variable_sip_term_status") or headers.get("variable_last_bridge_proto_specific_hangup_cause")
        try:
            sip_int = int(str(sip_code).split("_")[-1]) if sip_code else None
        except ValueError:
            sip_int = None
        info = describe_cause(cause, answered=self.answered_at is not None, sip_code=sip_int)
        outcome = "transferred" if self.transferred and self.answered_at is not None else info.outcome.value
        duration = int(headers.get("variable_duration") or 0)
        billsec = int(headers.get("variable_billsec") or 0)
        disposition = headers.get("variable_sip_hangup_disposition", "")
        ended_by = "caller" if disposition.startswith("recv_") else ("platform" if disposition.startswith("send_") else None)
        fields = {"ended_at": at, "hangup_cause": cause, "hangup_cause_text": info.title,
                  "outcome": outcome, "duration_s": duration, "billsec": billsec,
                  "state": StoredState.ENDED.value, "human_status": human_status(CallState.ENDED)}
        if sip_int:
            fields["sip_status"] = sip_int
        if ended_by:
            fields["ended_by"] = ended_by
        self.state = CallState.ENDED
        payload = {"outcome": outcome, "hangup_cause": cause, "hangup_cause_text": info.title,
                   "duration_s": duration, "billsec": billsec, "human_status": human_status(CallState.ENDED)}
        actions = [Action("persist", fields),
                   Action("call_event", {"type": "ended", "ts": at, "human_status": info.title, "payload": payload}),
                   Action("publish", {"type": "call.ended", "ts": at, "payload": payload})]
        if self.recording:
            actions.append(Action("recording_done", {"path": None}))
        if self.operator_uuid:  # the caller left a bridged call: do not leave the operator on a dead line
            actions.append(Action("kill_leg", {"uuid": self.operator_uuid}))
        actions.append(Action("finished", {}))
        return actions
