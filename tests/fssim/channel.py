"""Channel model: state machine, variables, caller profile and the events a real channel fires.

A Channel is one FreeSWITCH session (one leg). Its event sequences (create, answer, hangup,
destroy) follow the captured 1.10.12 order; its header blocks are built the way
switch_channel_event_set_data does (basic data, caller profile, other leg, variables).
Dialplan applications run in the channel's own session thread, as in FreeSWITCH.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import uuid as uuidlib
from array import array
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from .audio import INTERNAL_RATE, AudioTimeline, read_rate, write_wav
from .esl_protocol import Header
from .events import EXTENDED_EVENTS, Event

if TYPE_CHECKING:  # pragma: no cover
    from .audio_fork import ForkSession
    from .server import FsSim

log = logging.getLogger("fssim.channel")

STATE_NUMBERS = {
    "CS_NEW": 0, "CS_INIT": 1, "CS_ROUTING": 2, "CS_SOFT_EXECUTE": 3, "CS_EXECUTE": 4,
    "CS_EXCHANGE_MEDIA": 5, "CS_PARK": 6, "CS_CONSUME_MEDIA": 7, "CS_HIBERNATE": 8, "CS_RESET": 9,
    "CS_HANGUP": 10, "CS_REPORTING": 11, "CS_DESTROY": 12, "CS_NONE": 13,
}
CALLSTATE_NUMBERS = {
    "DOWN": 0, "DIALING": 1, "RINGING": 2, "EARLY": 3, "ACTIVE": 4, "HELD": 5, "RING_WAIT": 6,
    "HANGUP": 7, "UNHELD": 8,
}
# Q.850 codes of the hangup causes (switch_channel.c CAUSE_CHART).
CAUSE_Q850 = {
    "NONE": 0, "UNALLOCATED_NUMBER": 1, "NO_ROUTE_TRANSIT_NET": 2, "NO_ROUTE_DESTINATION": 3,
    "CHANNEL_UNACCEPTABLE": 6, "CALL_AWARDED_DELIVERED": 7, "NORMAL_CLEARING": 16, "USER_BUSY": 17,
    "NO_USER_RESPONSE": 18, "NO_ANSWER": 19, "SUBSCRIBER_ABSENT": 20, "CALL_REJECTED": 21,
    "NUMBER_CHANGED": 22, "REDIRECTION_TO_NEW_DESTINATION": 23, "EXCHANGE_ROUTING_ERROR": 25,
    "DESTINATION_OUT_OF_ORDER": 27, "INVALID_NUMBER_FORMAT": 28, "FACILITY_REJECTED": 29,
    "RESPONSE_TO_STATUS_ENQUIRY": 30, "NORMAL_UNSPECIFIED": 31, "NORMAL_CIRCUIT_CONGESTION": 34,
    "NETWORK_OUT_OF_ORDER": 38, "NORMAL_TEMPORARY_FAILURE": 41, "SWITCH_CONGESTION": 42,
    "ACCESS_INFO_DISCARDED": 43, "REQUESTED_CHAN_UNAVAIL": 44, "PRE_EMPTED": 45,
    "FACILITY_NOT_SUBSCRIBED": 50, "OUTGOING_CALL_BARRED": 52, "INCOMING_CALL_BARRED": 54,
    "BEARERCAPABILITY_NOTAUTH": 57, "BEARERCAPABILITY_NOTAVAIL": 58, "SERVICE_UNAVAILABLE": 63,
    "BEARERCAPABILITY_NOTIMPL": 65, "CHAN_NOT_IMPLEMENTED": 66, "FACILITY_NOT_IMPLEMENTED": 69,
    "SERVICE_NOT_IMPLEMENTED": 79, "INVALID_CALL_REFERENCE": 81, "INCOMPATIBLE_DESTINATION": 88,
    "INVALID_MSG_UNSPECIFIED": 95, "MANDATORY_IE_MISSING": 96, "MESSAGE_TYPE_NONEXIST": 97,
    "WRONG_MESSAGE": 98, "IE_NONEXIST": 99, "INVALID_IE_CONTENTS": 100, "WRONG_CALL_STATE": 101,
    "RECOVERY_ON_TIMER_EXPIRE": 102, "MANDATORY_IE_LENGTH_ERROR": 103, "PROTOCOL_ERROR": 111,
    "INTERWORKING": 127, "ORIGINATOR_CANCEL": 487, "CRASH": 700, "SYSTEM_SHUTDOWN": 701,
    "LOSE_RACE": 702, "MANAGER_REQUEST": 900, "BLIND_TRANSFER": 800, "ATTENDED_TRANSFER": 801,
    "ALLOTTED_TIMEOUT": 602, "USER_CHALLENGE": 603, "MEDIA_TIMEOUT": 604, "PICKED_OFF": 605,
    "USER_NOT_REGISTERED": 606, "PROGRESS_TIMEOUT": 607, "INVALID_GATEWAY": 608,
    "GATEWAY_DOWN": 609, "INVALID_URL": 610, "INVALID_PROFILE": 611, "NO_PICKUP": 612,
    "SRTP_READ_ERROR": 613,
}


def now_us() -> int:
    return int(time.time() * 1_000_000)


@dataclass
class CallerProfile:
    """switch_caller_profile_t fields that appear as Caller-* / Other-Leg-* headers."""

    direction: str
    logical_direction: str
    caller_id_number: str
    destination_number: str
    uuid: str
    source: str
    context: str
    chan_name: str
    username: str = ""
    dialplan: str = ""
    caller_id_name: str = ""
    orig_caller_id_name: str = ""
    orig_caller_id_number: str = ""
    callee_id_name: str = ""
    callee_id_number: str = ""
    network_addr: str = ""
    ani: str = ""
    transfer_source: str = ""
    profile_index: str = "1"
    created: int = 0
    profile_created: int = 0
    answered: int = 0
    progress: int = 0
    progress_media: int = 0
    hungup: int = 0
    transferred: int = 0
    resurrected: int = 0
    bridged: int = 0
    last_hold: int = 0
    hold_accum: int = 0

    def headers(self, prefix: str) -> list[Header]:
        """switch_caller_profile_event_set_data order; empty fields are skipped as in FS."""
        h: list[Header] = [(f"{prefix}-Direction", self.direction),
                           (f"{prefix}-Logical-Direction", self.logical_direction)]
        opt = [("Username", self.username), ("Dialplan", self.dialplan),
               ("Caller-ID-Name", self.caller_id_name), ("Caller-ID-Number", self.caller_id_number),
               ("Orig-Caller-ID-Name", self.orig_caller_id_name),
               ("Orig-Caller-ID-Number", self.orig_caller_id_number),
               ("Callee-ID-Name", self.callee_id_name), ("Callee-ID-Number", self.callee_id_number),
               ("Network-Addr", self.network_addr), ("ANI", self.ani),
               ("Destination-Number", self.destination_number), ("Unique-ID", self.uuid),
               ("Source", self.source), ("Transfer-Source", self.transfer_source),
               ("Context", self.context), ("Channel-Name", self.chan_name),
               ("Profile-Index", self.profile_index)]
        h += [(f"{prefix}-{k}", v) for k, v in opt if v]
        h += [(f"{prefix}-Profile-Created-Time", str(self.profile_created)),
              (f"{prefix}-Channel-Created-Time", str(self.created)),
              (f"{prefix}-Channel-Answered-Time", str(self.answered)),
              (f"{prefix}-Channel-Progress-Time", str(self.progress)),
              (f"{prefix}-Channel-Progress-Media-Time", str(self.progress_media)),
              (f"{prefix}-Channel-Hangup-Time", str(self.hungup)),
              (f"{prefix}-Channel-Transfer-Time", str(self.transferred)),
              (f"{prefix}-Channel-Resurrect-Time", str(self.resurrected)),
              (f"{prefix}-Channel-Bridged-Time", str(self.bridged)),
              (f"{prefix}-Channel-Last-Hold", str(self.last_hold)),
              (f"{prefix}-Channel-Hold-Accum", str(self.hold_accum)),
              (f"{prefix}-Screen-Bit", "true"),
              (f"{prefix}-Privacy-Hide-Name", "false"),
              (f"{prefix}-Privacy-Hide-Number", "false")]
        return h


@dataclass
class Playback:
    """What the caller heard of one playback (file, stream or bidirectional audio)."""

    path: str
    start: float  # wall clock (time.time())
    start_mono: float
    duration_ms: int
    stop: Optional[float] = None
    stop_mono: Optional[float] = None
    broken: bool = False
    reason: str = ""  # "done", "break", "hangup", "kill_audio"
    heard_ms: int = 0
    pcm: bytes = b""  # L16 8 kHz actually played up to the stop/break

    @property
    def done(self) -> bool:
        return self.stop is not None


@dataclass
class Recording:
    """A uuid_record / record_session recording written as a real WAV."""

    path: str
    start_mono: float
    start: float
    stop: Optional[float] = None
    stop_mono: Optional[float] = None
    samples: int = 0


@dataclass
class Message:
    """A queued session message (uuid_broadcast / sendmsg execute / hangup)."""

    command: str  # "execute" | "hangup"
    app: str = ""
    arg: str = ""
    loops: int = 1
    event_lock: bool = False
    headers: list[Header] = field(default_factory=list)
    cause: str = "NORMAL_CLEARING"


class Channel:
    """One FreeSWITCH session. Thread-safe: ESL commands and the test poke it from other threads."""

    def __init__(self, sim: "FsSim", *, kind: str, direction: str, name: str, profile: CallerProfile,
                 uuid: Optional[str] = None) -> None:
        self.sim = sim
        self.kind = kind  # "sofia", "loopback", "user"
        self.uuid = uuid or str(uuidlib.uuid4())
        self.direction = direction
        self.name = name
        self.profile = profile
        self.profile_set = False
        self.state = "CS_NEW"
        self.state_number = 0
        self.call_state = "DOWN"
        self.answer_state = "ringing"
        self.hit_dialplan = direction == "inbound"
        self.call_uuid = self.uuid
        self.variables: "collections.OrderedDict[str, str]" = collections.OrderedDict()
        self.read_codec: Optional[tuple[str, str, str]] = None
        self.write_codec: Optional[tuple[str, str, str]] = None
        self.hangup_cause: Optional[str] = None
        self.hangup_by_remote = False
        self.other_leg: Optional[Channel] = None
        self.other_type = ""
        self.events: list[Event] = []
        self.cond = threading.Condition(threading.RLock())
        self.messages: collections.deque[Message] = collections.deque()
        self.break_flag = False
        self.transfer_to: Optional[tuple[str, str]] = None
        self.parked = False
        self.current_app = ""
        self.last_app = ""
        self.last_arg = ""
        self.dtmf_history = ""
        self.received_dtmf = ""  # digits FreeSWITCH sent towards the caller (uuid_send_dtmf)
        self.created_mono = time.monotonic()
        self.created_wall = time.time()
        self.answered_mono: Optional[float] = None
        self.caller_audio = AudioTimeline(self.created_mono)  # what the remote party says
        self.played_audio = AudioTimeline(self.created_mono)  # what FreeSWITCH plays to them
        self.heard: list[Playback] = []
        self.recordings: list[Recording] = []
        self.active_records: dict[str, Recording] = {}
        self.received_stream_audio = bytearray()
        self.forks: dict[str, "ForkSession"] = {}
        self.media_bugs: list[str] = []
        self.destroyed = False
        self.hangup_started = False
        self.session_thread: Optional[threading.Thread] = None
        self.on_answer_hooks: list[Callable[[], None]] = []
        self.bridge_partner: Optional[Channel] = None
        self.bridge_done = threading.Event()
        self.loopback_peer: Optional[Channel] = None
        self.pending_answer_audio: Any = None
        self.hangup_timer: Optional[threading.Timer] = None
        self.originate_result: Optional[str] = None  # "answered" or None once failed
        self.originate_cause: Optional[str] = None
        self.originate_done = threading.Event()
        self.result_listeners: list[Callable[[], None]] = []
        self.result_after_complete: Optional[str] = None
        self.next_action: Optional[tuple[str, str, str]] = None
        self.bridge_request: Optional[Channel] = None
        self.sip_from_tag = ""
        self.sip_call_id = ""
        self.session_id = str(sim.next_session_id())
        self.rtp_port = str(16384 + (int(self.session_id) * 2) % 16000)

    def set_originate_result(self, result: Optional[str], cause: str) -> None:
        """Report the outcome of an outgoing leg to whoever dialled it (originate/bridge)."""
        if self.originate_done.is_set():
            return
        self.originate_result = result
        self.originate_cause = None if result == "answered" else cause
        self.originate_done.set()
        for listener in list(self.result_listeners):
            listener()
        self.notify()

    # ---- variables (switch_channel_set_variable: delete then append, so order moves) ----
    def set_var(self, name: str, value: Optional[Any]) -> None:
        with self.cond:
            self.variables.pop(name, None)
            if value is not None and value != "":
                self.variables[name] = str(value)

    def get_var(self, name: str, default: Optional[str] = None) -> Optional[str]:
        with self.cond:
            if name == "uuid":
                return self.uuid
            return self.variables.get(name, default)

    def set_vars(self, pairs: Sequence[tuple[str, Any]]) -> None:
        for k, v in pairs:
            self.set_var(k, v)

    # ---- header blocks ----
    def basic_headers(self) -> list[Header]:
        h: list[Header] = [
            ("Channel-State", self.state),
            ("Channel-Call-State", self.call_state),
            ("Channel-State-Number", str(self.state_number)),
            ("Channel-Name", self.name),
            ("Unique-ID", self.uuid),
            ("Call-Direction", self.direction),
            ("Presence-Call-Direction", self.direction),
            ("Channel-HIT-Dialplan", "true" if self.hit_dialplan else "false"),
            ("Channel-Call-UUID", self.call_uuid),
            ("Answer-State", self.answer_state),
        ]
        if self.hangup_cause:
            h.append(("Hangup-Cause", self.hangup_cause))
        if self.read_codec:
            h += [("Channel-Read-Codec-Name", self.read_codec[0]),
                  ("Channel-Read-Codec-Rate", self.read_codec[1]),
                  ("Channel-Read-Codec-Bit-Rate", self.read_codec[2])]
        if self.write_codec:
            h += [("Channel-Write-Codec-Name", self.write_codec[0]),
                  ("Channel-Write-Codec-Rate", self.write_codec[1]),
                  ("Channel-Write-Codec-Bit-Rate", self.write_codec[2])]
        if self.profile_set:
            h += self.profile.headers("Caller")
            other = self.other_leg
            if other is not None and other.profile_set and self.other_type:
                h.append(("Other-Type", self.other_type))
                h += other.profile.headers("Other-Leg")
        return h

    def fire(self, name: str, pre: Sequence[Header] = (), post: Sequence[Header] = (),
             body: Optional[str] = None, subclass: Optional[str] = None, calling: Optional[str] = None,
             extended: Optional[bool] = None, prefix: Sequence[Header] = ()) -> Event:
        """Fire an event carrying this channel's data, recorded in self.events."""
        with self.cond:
            headers = list(pre) + self.basic_headers()
            if extended if extended is not None else name in EXTENDED_EVENTS:
                headers += [(f"variable_{k}", v) for k, v in self.variables.items()]
            headers += list(post)

        def sink(ev: Event) -> None:
            with self.cond:
                self.events.append(ev)
                self.cond.notify_all()
        return self.sim.bus.fire(name, headers, body=body, subclass=subclass, calling=calling, sink=sink,
                                 prefix=prefix)

    def set_state(self, state: str, number: Optional[int] = None) -> None:
        self.state = state
        self.state_number = STATE_NUMBERS[state] if number is None else number
        self.fire("CHANNEL_STATE")

    def set_callstate(self, cs: str) -> None:
        old = self.call_state
        self.call_state = cs
        self.fire("CHANNEL_CALLSTATE", pre=[("Original-Channel-Call-State", old),
                                            ("Channel-Call-State-Number", str(CALLSTATE_NUMBERS[cs]))])

    def set_codecs(self, name: str, rate: str, bitrate: str, real: bool = False) -> None:
        """CODEC events of a session whose codecs get set (sofia on media, loopback at start)."""
        self.read_codec = (name, rate, bitrate)
        lower = [("channel-read-codec-name", name), ("channel-read-codec-rate", rate),
                 ("channel-read-codec-bit-rate", bitrate)]
        self.fire("CODEC", post=lower, calling="CODEC_REAL_READ" if real else "CODEC_READ")
        self.write_codec = (name, rate, bitrate)
        self.fire("CODEC", post=[("Channel-Write-codec-bit-rate", bitrate)], calling="CODEC_WRITE")

    # ---- timing helpers ----
    def now_sample(self, rate: int = INTERNAL_RATE) -> int:
        return max(0, int((time.monotonic() - self.created_mono) * rate))

    @property
    def alive(self) -> bool:
        return self.hangup_cause is None

    @property
    def answered(self) -> bool:
        return self.profile.answered > 0

    def wait(self, timeout: Optional[float], predicate: Callable[[], bool]) -> bool:
        """Wait on the channel condition; True when the predicate held."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            while not predicate():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                # short slices: predicates may depend on state changed without a notify
                self.cond.wait(min(remaining, 0.05) if remaining is not None else 0.05)
            return True

    def notify(self) -> None:
        with self.cond:
            self.cond.notify_all()

    # ---- answer / progress ----
    def ring_ready(self) -> None:
        if self.profile.progress or self.answered:
            return
        self.profile.progress = now_us()
        self.fire("CHANNEL_PROGRESS")
        self.set_callstate("RINGING") if self.call_state != "RINGING" else None

    def media_vars(self) -> list[tuple[str, str]]:
        return self.sim.templates.media_vars(self)

    def pre_answer(self) -> None:
        """switch_channel_pre_answer: early media (CHANNEL_PROGRESS_MEDIA, EARLY)."""
        if self.profile.progress_media or self.answered or not self.alive:
            return
        if self.kind == "sofia" and self.read_codec is None:
            self.set_codecs("PCMU", "8000", "64000", real=True)
        self.set_vars(self.media_vars())
        self.profile.progress_media = now_us()
        self.set_var("endpoint_disposition", "EARLY MEDIA")
        self.answer_state = "early"
        self.fire("CHANNEL_PROGRESS_MEDIA")
        self.set_callstate("EARLY")

    def answer(self) -> None:
        """switch_channel_answer with the captured order: ANSWER, api_on_answer, ACTIVE."""
        if self.answered or not self.alive:
            return
        if self.direction == "inbound" and self.kind == "sofia":
            self.pre_answer()
            self.set_vars(self.sim.templates.answer_vars(self))
        elif self.kind == "sofia":
            self.set_vars(self.media_vars())
        self.profile.answered = now_us()
        self.answered_mono = time.monotonic()
        self.answer_state = "answered"
        self.fire("CHANNEL_ANSWER")
        for hook in list(self.on_answer_hooks):
            hook()
        self._on_answer_vars()
        self.set_callstate("ACTIVE")
        if self.direction == "inbound":
            self.set_var("endpoint_disposition", "ANSWER")
        self.notify()

    def _on_answer_vars(self) -> None:
        api = self.get_var("api_on_answer")
        if api:
            self.sim.commands.execute_api_line(api, fire_api_event=True)
        app = self.get_var("execute_on_answer")
        if app:
            name, _, arg = app.partition(" ")
            self.execute_app(name, arg, from_message=True)

    def flip_cid(self) -> None:
        """switch_channel_flip_cid on an answered originate leg, fires CALL_UPDATE."""
        p = self.profile
        self.set_var("endpoint_disposition", "ANSWER")
        self.set_var("pre_transfer_caller_id_number", p.caller_id_number)
        self.set_var("channel_cid_flipped", "yes")
        p.caller_id_name, p.callee_id_name = p.callee_id_name, p.caller_id_name
        p.caller_id_number, p.callee_id_number = p.callee_id_number, p.caller_id_number
        self.fire("CALL_UPDATE", pre=[("Direction", "RECV")])

    # ---- applications ----
    def execute_app(self, name: str, data: str = "", from_message: bool = False) -> str:
        """switch_core_session_exec: EXECUTE, run, EXECUTE_COMPLETE (Application-Response).

        The response is the `current_application_response` variable, which FreeSWITCH clears at
        each EXECUTE; a nested app (e.g. a broadcast playback inside park) leaves its response
        behind for the outer app, exactly as captured.
        """
        from .apps import run_app
        app_uuid = str(uuidlib.uuid4())
        outer_app = self.current_app
        self.current_app = name
        self.last_app, self.last_arg = name, data
        self.set_var("current_application_data", data or None)
        self.set_var("current_application_response", None)
        self.set_var("current_application", name)
        post: list[Header] = [("Application", name)]
        if data:
            post.append(("Application-Data", data))
        post.append(("Application-UUID", app_uuid))
        self.fire("CHANNEL_EXECUTE", post=post)
        response = run_app(self, name, data)
        if response:
            self.set_var("current_application_response", response)
        final = self.get_var("current_application_response") or "_none_"
        post = [("Application", name)]
        if data:
            post.append(("Application-Data", data))
        post += [("Application-Response", final), ("Application-UUID", app_uuid)]
        self.fire("CHANNEL_EXECUTE_COMPLETE", post=post)
        self.current_app = outer_app
        return final

    def queue_message(self, msg: Message) -> None:
        with self.cond:
            self.messages.append(msg)
            self.cond.notify_all()

    def process_messages(self) -> None:
        """switch_ivr_parse_all_messages: run queued broadcasts / sendmsg executes."""
        while self.alive:
            with self.cond:
                if not self.messages:
                    return
                msg = self.messages.popleft()
            if msg.command == "hangup":
                self.hangup(msg.cause)
                return
            if msg.command == "execute":
                loops = max(1, msg.loops)
                for i in range(loops):
                    if not self.alive:
                        break
                    self.set_var("current_loop", str(i + 1))
                    self.set_var("total_loops", str(loops))
                    self.execute_app(msg.app, msg.arg, from_message=True)
                if msg.headers:
                    # switch_ivr_parse_next_event re-fires the queued COMMAND as PRIVATE_COMMAND
                    self.fire("PRIVATE_COMMAND", prefix=msg.headers, extended=False)
                self.set_var("current_loop", None)
                self.set_var("total_loops", None)

    def break_playback(self, flush: bool = False) -> None:
        """uuid_break: stop the current playback (CF_BREAK); `all` also drops the queue."""
        with self.cond:
            self.break_flag = True
            if flush:
                self.messages = collections.deque(m for m in self.messages if m.command != "execute")
            self.cond.notify_all()

    # ---- audio the caller hears ----
    def play(self, path: str) -> str:
        """switch_ivr_play_file: PLAYBACK_START, wait the real duration (or a break), PLAYBACK_STOP."""
        from .audio import load_source
        try:
            src = load_source(path, self.sim.sounds_dir)
        except (OSError, ValueError, EOFError) as exc:
            log.warning("playback %s failed: %s", path, exc)
            return "FILE NOT FOUND"
        ftype = path.split("://", 1)[0] if "://" in path else (path.rsplit(".", 1)[-1] if "." in path else "wav")
        with self.cond:
            self.break_flag = False
        start_mono = time.monotonic()
        pb = Playback(path=path, start=time.time(), start_mono=start_mono, duration_ms=src.duration_ms)
        start_sample = self.caller_audio.sample_at(start_mono, INTERNAL_RATE)
        peer = self.loopback_peer
        if not src.infinite:
            self.played_audio.append_at(start_sample, src.pcm)
            if peer is not None:
                peer.caller_audio.append_at(start_sample, src.pcm)
        self.heard.append(pb)
        post = [("Playback-File-Type", ftype), ("Playback-File-Path", path)]
        self.fire("PLAYBACK_START", post=post)
        end = start_mono + src.duration_ms / 1000.0
        terminators = self.get_var("playback_terminators") or ""
        self._terminators = "" if terminators == "none" else terminators
        self.wait(None, lambda: self.break_flag or not self.alive or time.monotonic() >= end)
        stop_mono = time.monotonic()
        heard_ms = min(src.duration_ms, int((stop_mono - start_mono) * 1000))
        broken = stop_mono < end - 0.005
        with self.cond:
            was_break = self.break_flag
            self.break_flag = False
        reason = "break" if was_break and broken else ("hangup" if broken and not self.alive else "done")
        if broken:
            cut = start_sample + heard_ms * INTERNAL_RATE // 1000
            self.played_audio.truncate(cut)
            if peer is not None:
                peer.caller_audio.truncate(cut)
        samples_8k = heard_ms * 8
        pb_pcm = src.pcm if not src.infinite else src.pcm * max(1, heard_ms // max(1, len(src.pcm) * 1000 // INTERNAL_RATE) + 1)
        pb.pcm = read_rate(pb_pcm, 0, samples_8k, 8000).tobytes()
        pb.heard_ms, pb.broken, pb.reason = heard_ms, broken, reason
        pb.stop, pb.stop_mono = time.time(), stop_mono
        self.set_var("playback_last_offset_pos", str(samples_8k))
        self.set_var("playback_seconds", str(heard_ms // 1000))
        self.set_var("playback_ms", str(heard_ms))
        self.set_var("playback_samples", str(samples_8k))
        status = "break" if reason == "break" else "done"
        self.fire("PLAYBACK_STOP", post=post + [("Playback-Status", status)])
        self.notify()
        return "FILE PLAYED"

    def dtmf_terminates(self, digit: str) -> bool:
        term = getattr(self, "_terminators", "")
        return bool(term) and (term == "any" or digit in term)

    # ---- recording ----
    def start_record(self, path: str) -> None:
        rec = Recording(path=path, start_mono=time.monotonic(), start=time.time())
        self.active_records[path] = rec
        self.recordings.append(rec)
        self.media_bugs.append("session_record")
        self.fire("RECORD_START", post=[("Record-File-Path", path)])

    def stop_record(self, path: Optional[str] = None) -> bool:
        paths = [path] if path and path != "all" else list(self.active_records)
        done = False
        for p in paths:
            rec = self.active_records.pop(p, None)
            if rec is None:
                continue
            rec.stop_mono, rec.stop = time.monotonic(), time.time()
            s0 = self.caller_audio.sample_at(rec.start_mono, 8000)
            s1 = self.caller_audio.sample_at(rec.stop_mono, 8000)
            pcm = self.caller_audio.read(s0, max(0, s1 - s0), 8000)
            try:
                write_wav(rec.path, pcm, 8000)
            except OSError as exc:
                log.warning("cannot write recording %s: %s", rec.path, exc)
            rec.samples = len(pcm)
            self.set_var("record_samples", str(len(pcm)))
            self.set_var("record_seconds", str(len(pcm) // 8000))
            self.set_var("record_ms", str(len(pcm) // 8))
            self.fire("RECORD_STOP", post=[("Record-File-Path", rec.path)])
            done = True
        return done

    # ---- hangup ----
    def hangup(self, cause: str = "NORMAL_CLEARING", remote: bool = False) -> bool:
        """switch_channel_hangup: CHANNEL_HANGUP now, the rest in the session thread."""
        with self.cond:
            if self.hangup_cause is not None or self.destroyed:
                return False
            self.hangup_cause = cause
            self.hangup_by_remote = remote
            self.answer_state = "hangup"
            self.profile.hungup = now_us()
        self.sim.templates.hangup_sip_vars(self, cause, remote)
        self.fire("CHANNEL_HANGUP")
        self.notify()
        if self.hangup_timer:
            self.hangup_timer.cancel()
        peer = self.loopback_peer
        if peer is not None and peer.alive:
            peer.hangup(cause, remote=True)
        if self.session_thread is None or self.session_thread is threading.current_thread():
            if self.session_thread is None:
                self.finish()
        return True

    def finish(self) -> None:
        """State CS_HANGUP .. CS_DESTROY with the captured event order."""
        with self.cond:
            if self.destroyed or self.hangup_started:
                return
            self.hangup_started = True
        if self.hangup_cause is None:
            self.hangup("NORMAL_CLEARING")
        self.set_state("CS_HANGUP")
        for path in list(self.active_records):
            self.stop_record(path)
        for bug in list(self.forks.values()):
            bug.on_channel_hangup()
        self.set_callstate("HANGUP")
        self.set_state("CS_REPORTING")
        self.sim.templates.hangup_complete_vars(self)
        self.fire("CHANNEL_HANGUP_COMPLETE", pre=[("Hangup-Cause", self.hangup_cause or "NORMAL_CLEARING")])
        if not self.originate_done.is_set():
            self.set_originate_result(None, self.result_after_complete or self.hangup_cause or "NORMAL_CLEARING")
        self.sim.channel_gone(self)
        self.state_number = 12
        self.fire("CHANNEL_DESTROY")
        self.set_state("CS_DESTROY")
        with self.cond:
            self.destroyed = True
            self.cond.notify_all()

    # ---- channel listing (show channels) ----
    def show_row(self) -> "collections.OrderedDict[str, str]":
        created = datetime.fromtimestamp(self.profile.created / 1e6, tz=self.sim.tzinfo())
        app_data = self.get_var("current_application_data") or ""
        p = self.profile
        row = collections.OrderedDict()
        row["uuid"] = self.uuid
        row["direction"] = self.direction
        row["created"] = created.strftime("%Y-%m-%d %H:%M:%S")
        row["created_epoch"] = str(self.profile.created // 1_000_000)
        row["name"] = self.name
        row["state"] = self.state
        row["cid_name"] = p.caller_id_name
        row["cid_num"] = p.caller_id_number
        row["ip_addr"] = p.network_addr if self.kind == "sofia" else ""
        row["dest"] = p.destination_number
        row["application"] = self.current_app or ""
        row["application_data"] = app_data if self.current_app else ""
        row["dialplan"] = "xml" if self.hit_dialplan or self.kind == "loopback" else ""
        row["context"] = p.context
        codec = self.read_codec or ("", "", "")
        wcodec = self.write_codec or ("", "", "")
        row["read_codec"], row["read_rate"], row["read_bit_rate"] = codec
        row["write_codec"], row["write_rate"], row["write_bit_rate"] = wcodec
        row["secure"] = ""
        row["hostname"] = self.sim.hostname
        row["presence_id"] = ""
        row["presence_data"] = ""
        row["accountcode"] = ""
        row["callstate"] = self.call_state
        row["callee_name"] = p.callee_id_name
        row["callee_num"] = p.callee_id_number
        row["callee_direction"] = "RECV" if self.get_var("channel_cid_flipped") else ""
        row["call_uuid"] = self.uuid if self.direction == "outbound" else ""
        row["sent_callee_name"] = ""
        row["sent_callee_num"] = ""
        row["initial_cid_name"] = self.initial_cid_name
        row["initial_cid_num"] = self.initial_cid_num
        row["initial_ip_addr"] = row["ip_addr"]
        row["initial_dest"] = self.initial_dest
        row["initial_dialplan"] = row["dialplan"]
        row["initial_context"] = self.initial_context
        return row

    def mark_profile(self) -> None:
        """Remember the initial profile (show channels initial_* columns)."""
        self.initial_cid_name = self.profile.caller_id_name
        self.initial_cid_num = self.profile.caller_id_number
        self.initial_dest = self.profile.destination_number
        self.initial_context = self.profile.context
        self.profile_set = True

    initial_cid_name = ""
    initial_cid_num = ""
    initial_dest = ""
    initial_context = ""
