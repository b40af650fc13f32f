"""Events: the core header block, the calling-site table taken from the captures, and the bus.

Every event FreeSWITCH fires starts with the same 13 core headers (Event-Name ... Event-Sequence);
CUSTOM events put Event-Subclass first. The Event-Calling-* values below are copied from the real
1.10.12 captures; the few marked "not captured" come from the FreeSWITCH sources.
"""

from __future__ import annotations

import threading
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable, Optional, Sequence

from .esl_protocol import Header

if TYPE_CHECKING:  # pragma: no cover
    from .server import FsSim

# (file, function, line) per event, as captured from FreeSWITCH 1.10.12.
CALLING: dict[str, tuple[str, str, str]] = {
    "API": ("switch_loadable_module.c", "switch_api_execute", "2954"),
    "BACKGROUND_JOB": ("mod_event_socket.c", "api_exec", "1572"),
    "CALL_UPDATE": ("switch_channel.c", "switch_channel_flip_cid", "3277"),
    "CHANNEL_ANSWER": ("switch_channel.c", "switch_channel_perform_mark_answered", "3846"),
    "CHANNEL_CALLSTATE": ("switch_channel.c", "switch_channel_perform_set_callstate", "301"),
    "CHANNEL_CREATE": ("switch_core_state_machine.c", "switch_core_session_run", "626"),
    "CHANNEL_DESTROY": ("switch_core_session.c", "switch_core_session_perform_destroy", "1584"),
    "CHANNEL_EXECUTE": ("switch_core_session.c", "switch_core_session_exec", "2944"),
    "CHANNEL_EXECUTE_COMPLETE": ("switch_core_session.c", "switch_core_session_exec", "2967"),
    "CHANNEL_HANGUP": ("switch_channel.c", "switch_channel_perform_hangup", "3445"),
    "CHANNEL_HANGUP_COMPLETE": ("switch_core_state_machine.c", "switch_core_session_reporting_state", "943"),
    "CHANNEL_ORIGINATE": ("switch_core_state_machine.c", "switch_core_session_run", "632"),
    "CHANNEL_OUTGOING": ("switch_core_session.c", "switch_core_session_outgoing_channel", "768"),
    "CHANNEL_PARK": ("switch_ivr.c", "switch_ivr_park", "1002"),
    "CHANNEL_PROGRESS": ("switch_channel.c", "switch_channel_perform_mark_ring_ready_value", "3505"),
    "CHANNEL_PROGRESS_MEDIA": ("switch_channel.c", "switch_channel_perform_mark_pre_answered", "3560"),
    "CHANNEL_STATE": ("switch_channel.c", "switch_channel_perform_set_running_state", "2408"),
    "CHANNEL_UNPARK": ("switch_ivr.c", "switch_ivr_park", "1213"),
    "CHANNEL_UUID": ("switch_core_session.c", "switch_core_session_set_uuid", "2051"),
    "CODEC_READ": ("switch_core_codec.c", "switch_core_session_set_read_codec", "279"),
    "CODEC_REAL_READ": ("switch_core_codec.c", "switch_core_session_set_real_read_codec", "168"),
    "CODEC_WRITE": ("switch_core_codec.c", "switch_core_session_set_write_codec", "450"),
    "CUSTOM_AUDIO_FORK": ("mod_audio_fork.c", "responseHandler", "22"),
    "DTMF": ("switch_channel.c", "switch_channel_dequeue_dtmf", "677"),
    "HEARTBEAT": ("switch_core.c", "send_heartbeat", "95"),
    "MEDIA_BUG_START": ("switch_core_media_bug.c", "switch_core_media_bug_add", "1014"),
    "MEDIA_BUG_STOP": ("switch_core_media_bug.c", "switch_core_media_bug_destroy", "84"),
    "PLAYBACK_START": ("switch_ivr_play_say.c", "switch_ivr_play_file", "1646"),
    "PLAYBACK_STOP": ("switch_ivr_play_say.c", "switch_ivr_play_file", "2020"),
    "PRIVATE_COMMAND": ("switch_ivr.c", "switch_ivr_parse_next_event", "804"),
    "RE_SCHEDULE": ("switch_scheduler.c", "switch_scheduler_execute", "73"),
    # Not captured: taken from the FreeSWITCH 1.10 sources.
    "CHANNEL_BRIDGE": ("switch_ivr_bridge.c", "switch_ivr_multi_threaded_bridge", "1725"),
    "CHANNEL_UNBRIDGE": ("switch_ivr_bridge.c", "switch_ivr_multi_threaded_bridge", "1835"),
    "RECORD_START": ("switch_ivr_async.c", "record_callback", "1268"),
    "RECORD_STOP": ("switch_ivr_async.c", "record_callback", "1412"),
    "CUSTOM_GATEWAY_STATE": ("sofia_reg.c", "sofia_reg_fire_custom_gateway_state_event", "188"),
    "CHANNEL_HOLD": ("switch_channel.c", "switch_channel_perform_mark_hold", "3013"),
    "CUSTOM": ("switch_event.c", "switch_event_fire_detailed", "2027"),
}

# Events that carry the channel variables (switch_channel_event_set_extended_data).
EXTENDED_EVENTS = frozenset({
    "CHANNEL_CREATE", "CHANNEL_ORIGINATE", "CHANNEL_UUID", "CHANNEL_ANSWER", "CHANNEL_PARK",
    "CHANNEL_UNPARK", "CHANNEL_BRIDGE", "CHANNEL_UNBRIDGE", "CHANNEL_PROGRESS",
    "CHANNEL_PROGRESS_MEDIA", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_EXECUTE",
    "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_DESTROY", "RECORD_START", "RECORD_STOP",
    "PLAYBACK_START", "PLAYBACK_STOP", "CALL_UPDATE", "MEDIA_BUG_START", "MEDIA_BUG_STOP",
    "CUSTOM", "CHANNEL_DATA", "CHANNEL_HOLD", "CHANNEL_UNHOLD",
})

# All event names a client may subscribe to (switch_event.c EVENT_NAMES, abridged to real ones).
EVENT_NAMES = frozenset({
    "CUSTOM", "CLONE", "CHANNEL_CREATE", "CHANNEL_DESTROY", "CHANNEL_STATE", "CHANNEL_CALLSTATE",
    "CHANNEL_ANSWER", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_EXECUTE",
    "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_HOLD", "CHANNEL_UNHOLD", "CHANNEL_BRIDGE",
    "CHANNEL_UNBRIDGE", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_OUTGOING",
    "CHANNEL_PARK", "CHANNEL_UNPARK", "CHANNEL_APPLICATION", "CHANNEL_ORIGINATE", "CHANNEL_UUID",
    "API", "LOG", "INBOUND_CHAN", "OUTBOUND_CHAN", "STARTUP", "SHUTDOWN", "PUBLISH", "UNPUBLISH",
    "TALK", "NOTALK", "SESSION_CRASH", "MODULE_LOAD", "MODULE_UNLOAD", "DTMF", "MESSAGE",
    "PRESENCE_IN", "NOTIFY_IN", "PRESENCE_OUT", "PRESENCE_PROBE", "MESSAGE_WAITING",
    "MESSAGE_QUERY", "ROSTER", "CODEC", "BACKGROUND_JOB", "DETECTED_SPEECH", "DETECTED_TONE",
    "PRIVATE_COMMAND", "HEARTBEAT", "TRAP", "ADD_SCHEDULE", "DEL_SCHEDULE", "EXE_SCHEDULE",
    "RE_SCHEDULE", "RELOADXML", "NOTIFY", "PHONE_FEATURE", "PHONE_FEATURE_SUBSCRIBE",
    "SEND_MESSAGE", "RECV_MESSAGE", "REQUEST_PARAMS", "CHANNEL_DATA", "GENERAL", "COMMAND",
    "SESSION_HEARTBEAT", "CLIENT_DISCONNECTED", "SERVER_DISCONNECTED", "SEND_INFO", "RECV_INFO",
    "RECV_RTCP_MESSAGE", "SEND_RTCP_MESSAGE", "CALL_SECURE", "NAT", "RECORD_START",
    "RECORD_STOP", "PLAYBACK_START", "PLAYBACK_STOP", "CALL_UPDATE", "FAILURE",
    "SOCKET_DATA", "MEDIA_BUG_START", "MEDIA_BUG_STOP", "CONFERENCE_DATA_QUERY",
    "CONFERENCE_DATA", "CALL_SETUP_REQ", "CALL_SETUP_RESULT", "CALL_DETAIL", "DEVICE_STATE",
    "TEXT", "SHUTDOWN_REQUESTED", "ALL",
})


@dataclass
class Event:
    """One fired event: ordered headers (duplicates allowed, as in FreeSWITCH) and a body."""

    name: str
    headers: list[Header]
    body: Optional[str] = None
    subclass: Optional[str] = None
    mono: float = field(default_factory=time.monotonic)

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """First value of a header (case-insensitive like switch_event_get_header)."""
        low = name.lower()
        for k, v in self.headers:
            if k.lower() == low:
                return v
        return default

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    @property
    def uuid(self) -> Optional[str]:
        return self.get("Unique-ID")

    def header_names(self) -> list[str]:
        return [k for k, _ in self.headers]

    def matches(self, name: str) -> bool:
        """True for an event name or a CUSTOM subclass name."""
        return self.name == name or (self.subclass is not None and self.subclass == name)


class EventBus:
    """Numbers events, adds the core headers and hands them to the ESL listeners."""

    def __init__(self, sim: "FsSim") -> None:
        self.sim = sim
        self.core_uuid = str(uuidlib.uuid4())
        self.hostname = sim.hostname
        self.ipv4 = sim.ipv4
        self.ipv6 = sim.ipv6
        self.lock = threading.RLock()
        self.sequence = 500
        self.subscribers: list[Callable[[Event], None]] = []

    def core_headers(self, name: str, calling: tuple[str, str, str], seq: int, subclass: Optional[str]) -> list[Header]:
        now_us = int(time.time() * 1_000_000)
        local = self.sim.now()
        gmt = datetime.fromtimestamp(now_us / 1e6, tz=timezone.utc)
        headers: list[Header] = []
        if subclass:
            headers.append(("Event-Subclass", subclass))
        headers += [
            ("Event-Name", name),
            ("Core-UUID", self.core_uuid),
            ("FreeSWITCH-Hostname", self.hostname),
            ("FreeSWITCH-Switchname", self.hostname),
            ("FreeSWITCH-IPv4", self.ipv4),
            ("FreeSWITCH-IPv6", self.ipv6),
            ("Event-Date-Local", local.strftime("%Y-%m-%d %H:%M:%S")),
            ("Event-Date-GMT", gmt.strftime("%a, %d %b %Y %H:%M:%S GMT")),
            ("Event-Date-Timestamp", str(now_us)),
            ("Event-Calling-File", calling[0]),
            ("Event-Calling-Function", calling[1]),
            ("Event-Calling-Line-Number", calling[2]),
            ("Event-Sequence", str(seq)),
        ]
        return headers

    def fire(
        self,
        name: str,
        headers: Sequence[Header] = (),
        body: Optional[str] = None,
        subclass: Optional[str] = None,
        calling: Optional[str] = None,
        sink: Optional[Callable[[Event], None]] = None,
        prefix: Sequence[Header] = (),
    ) -> Event:
        """Build the event (core headers + given headers) and deliver it in sequence order."""
        with self.lock:
            self.sequence += 1
            key = calling or name
            site = CALLING.get(key) or CALLING["CUSTOM"]
            # `prefix` precedes the core block (PRIVATE_COMMAND carries its COMMAND event first)
            full = list(prefix) + self.core_headers(name, site, self.sequence, subclass) + list(headers)
            event = Event(name=name, headers=full, body=body, subclass=subclass)
            if sink is not None:
                sink(event)
            for sub in list(self.subscribers):
                try:
                    sub(event)
                except Exception:  # a broken listener must not break the call
                    pass
            return event
