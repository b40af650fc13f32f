"""Calls: inbound calls, originate/bridge with scripted far-end behaviours, transfer, SimCall.

The far end of every leg is scripted by the test (`FsSim.set_behavior`): answer, busy, no answer,
failure, rejection... Each leg fires the event sequence captured from FreeSWITCH 1.10.12 for that
outcome (esl2_events_*.txt, esl_events_*.txt calls 3 and 4).
"""

from __future__ import annotations

import fnmatch
import logging
import re
import threading
import time
import uuid as uuidlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, Union

from .audio import INTERNAL_RATE, Segment, segments_to_pcm
from .channel import CallerProfile, Channel, Playback, Recording, now_us
from .dialplan import expand
from .events import Event

if TYPE_CHECKING:  # pragma: no cover
    from .server import FsSim

log = logging.getLogger("fssim.calls")

OUTCOME_CAUSES = {
    "busy": "USER_BUSY",
    "no_answer": "NO_ANSWER",
    "failed": "NORMAL_TEMPORARY_FAILURE",
    "rejected": "CALL_REJECTED",
    "unallocated": "UNALLOCATED_NUMBER",
    "gateway_down": "GATEWAY_DOWN",
    "no_user_response": "NO_USER_RESPONSE",
    "unregistered": "USER_NOT_REGISTERED",
}


@dataclass
class Behavior:
    """What the far end of a destination does when FreeSWITCH calls it."""

    outcome: str = "answer"
    ring_ms: int = 100
    answer_audio: Any = None
    hangup_after_ms: Optional[int] = None
    early_media: bool = False

    @property
    def cause(self) -> Optional[str]:
        if self.outcome == "answer":
            return None
        return OUTCOME_CAUSES.get(self.outcome, self.outcome.upper())


@dataclass
class Endpoint:
    """A parsed dial string leg: sofia/gateway/gw/num, sofia/profile/uri, user/ext, loopback/dest/ctx."""

    raw: str
    tech: str
    number: str
    profile: str = "external"
    gateway: Optional[str] = None
    uri: str = ""
    context: str = "default"
    leg_vars: tuple[tuple[str, str], ...] = ()


def parse_vars(text: str) -> tuple[list[tuple[str, str]], str]:
    """Strip leading {a=b,c=d} / [..] / <..> blocks; returns (vars, rest)."""
    out: list[tuple[str, str]] = []
    rest = text.strip()
    while rest and rest[0] in "{[<":
        close = {"{": "}", "[": "]", "<": ">"}[rest[0]]
        depth, end = 0, -1
        for i, c in enumerate(rest):
            if c == rest[0]:
                depth += 1
            elif c == close:
                depth -= 1
                if depth == 0:
                    end = i
                    break
        if end < 0:
            break
        body = rest[1:end]
        for item in re.split(r",(?=[^,=']+=)", body):
            if "=" in item:
                k, _, v = item.partition("=")
                v = v.strip()
                if len(v) >= 2 and v[0] == v[-1] == "'":
                    v = v[1:-1]
                out.append((k.strip(), v))
        rest = rest[end + 1:].strip()
    return out, rest


def parse_endpoint(text: str, sim: "FsSim") -> Endpoint:
    leg_vars, dial = parse_vars(text)
    parts = dial.split("/")
    tech = parts[0]
    if tech == "sofia" and len(parts) >= 4 and parts[1] == "gateway":
        gw = parts[2]
        number = "/".join(parts[3:])
        return Endpoint(dial, "gateway", number.split("@")[0], gateway=gw, uri=number, leg_vars=tuple(leg_vars))
    if tech == "sofia" and len(parts) >= 3:
        uri = "/".join(parts[2:])
        return Endpoint(dial, "sofia", uri.split("@")[0].replace("sip:", ""), profile=parts[1], uri=uri,
                        leg_vars=tuple(leg_vars))
    if tech == "user" and len(parts) >= 2:
        return Endpoint(dial, "user", parts[1].split("@")[0], profile="internal", leg_vars=tuple(leg_vars))
    if tech == "loopback" and len(parts) >= 2:
        ctx = parts[2] if len(parts) > 2 else "default"
        return Endpoint(dial, "loopback", parts[1], context=ctx, leg_vars=tuple(leg_vars))
    if tech == "error":
        return Endpoint(dial, "error", parts[1] if len(parts) > 1 else "NORMAL_CLEARING")
    return Endpoint(dial, tech, parts[-1] if parts else "", leg_vars=tuple(leg_vars))


class SimCall:
    """Test-side handle of a call: the caller's actions and what the caller experienced."""

    def __init__(self, sim: "FsSim", channel: Channel) -> None:
        self.sim = sim
        self.channel = channel

    def __repr__(self) -> str:
        return f"<SimCall {self.uuid} {self.channel.name} {self.state}>"

    # ---- state ----
    @property
    def uuid(self) -> str:
        return self.channel.uuid

    @property
    def state(self) -> str:
        return self.channel.state

    @property
    def call_state(self) -> str:
        return self.channel.call_state

    @property
    def answered(self) -> bool:
        return self.channel.answered

    @property
    def alive(self) -> bool:
        return self.channel.alive

    @property
    def hangup_cause(self) -> Optional[str]:
        return self.channel.hangup_cause

    @property
    def variables(self) -> dict[str, str]:
        with self.channel.cond:
            return dict(self.channel.variables)

    @property
    def events(self) -> list[Event]:
        with self.channel.cond:
            return list(self.channel.events)

    def event_names(self) -> list[str]:
        return [e.subclass or e.name for e in self.events]

    @property
    def heard(self) -> list[Playback]:
        return list(self.channel.heard)

    @property
    def received_stream_audio(self) -> bytes:
        return bytes(self.channel.received_stream_audio)

    @property
    def recordings(self) -> list[Recording]:
        return list(self.channel.recordings)

    @property
    def received_dtmf(self) -> str:
        return self.channel.received_dtmf

    @property
    def fork(self) -> Any:
        """The first (usually only) mod_audio_fork session of the call, or None."""
        forks = list(self.channel.forks.values())
        return forks[0] if forks else None

    @property
    def fork_stats(self) -> dict[str, Any]:
        fork = self.fork
        return fork.stats() if fork else {}

    @property
    def b_leg(self) -> Optional["SimCall"]:
        other = self.channel.bridge_partner or self.channel.loopback_peer or self.channel.other_leg
        return SimCall(self.sim, other) if other is not None else None

    # ---- caller actions ----
    def send_dtmf(self, digits: str, duration_ms: int = 2000, gap_ms: int = 20) -> None:
        """The caller presses keys: DTMF events as captured (`#` shows as %23 in plain)."""
        ch = self.channel
        source = "RTP" if ch.kind == "sofia" else "UNKNOWN"
        for i, d in enumerate(digits):
            if i:
                time.sleep(gap_ms / 1000.0)
            if not ch.alive:
                return
            ch.dtmf_history += d
            ch.set_var("last_dtmf_duration", str(duration_ms // 2))
            ch.fire("DTMF", post=[("DTMF-Digit", d), ("DTMF-Duration", str(duration_ms)),
                                  ("DTMF-Source", source)])
            if ch.dtmf_terminates(d):
                ch.break_playback()

    def hangup(self, cause: str = "NORMAL_CLEARING") -> None:
        """The caller hangs up (sip recv_bye / recv_cancel)."""
        self.channel.hangup(cause, remote=True)

    def play_audio(self, audio: Union[Segment, Sequence[Segment]]) -> tuple[float, float]:
        """Queue more caller speech after what is queued; returns (start, end) seconds from now."""
        ch = self.channel
        pcm = segments_to_pcm(audio, self.sim.sounds_dir)
        now = ch.caller_audio.sample_at(time.monotonic(), INTERNAL_RATE)
        s, e = ch.caller_audio.append_after(now, pcm)
        return (s - now) / INTERNAL_RATE, (e - now) / INTERNAL_RATE

    # ---- waiting ----
    def wait_for(self, what: Union[str, Callable[..., bool]], timeout: float = 5.0,
                 after: int = 0, **headers: str) -> Any:
        """Wait for an event name / CUSTOM subclass (optionally with header values) or a predicate.

        Returns the matching Event (or True for predicates); raises TimeoutError otherwise.
        `after` skips the first N events, to wait for a later occurrence.
        """
        ch = self.channel
        found: list[Any] = []

        def check() -> bool:
            if callable(what):
                try:
                    ok = what(self)
                except TypeError:
                    ok = what()
                if ok:
                    found.append(True)
                return bool(ok)
            for ev in ch.events[after:]:
                if ev.matches(what) and all(ev.get(k.replace("_", "-")) == v for k, v in headers.items()):
                    found.append(ev)
                    return True
            return False
        if not ch.wait(timeout, check):
            raise TimeoutError(f"{what!r} not seen on {self.uuid} within {timeout}s; "
                               f"events: {self.event_names()[-12:]}")
        return found[0]

    def wait_answered(self, timeout: float = 5.0) -> None:
        self.wait_for(lambda c: c.answered, timeout)

    def wait_hangup(self, timeout: float = 5.0) -> Event:
        return self.wait_for("CHANNEL_HANGUP_COMPLETE", timeout)

    def wait_playback_done(self, index: int = -1, timeout: float = 10.0) -> Playback:
        self.wait_for(lambda c: c.heard and c.heard[index].done, timeout)
        return self.heard[index]


class CallsEngine:
    """Creates channels and runs their sessions; owned by FsSim."""

    def __init__(self, sim: "FsSim") -> None:
        self.sim = sim

    # ---- sessions ----
    def start_session(self, ch: Channel, target: Callable[[], None]) -> None:
        def main() -> None:
            try:
                target()
            except Exception:  # keep the simulator alive, but make the bug visible
                log.exception("fssim session %s crashed", ch.uuid)
                self.sim.warnings.append(f"session crash {ch.uuid}")
                if ch.alive:
                    ch.hangup("NORMAL_TEMPORARY_FAILURE")
            finally:
                ch.finish()
        t = threading.Thread(target=main, name=f"fssim-session-{ch.uuid[:8]}", daemon=True)
        ch.session_thread = t
        t.start()

    def route_and_execute(self, ch: Channel, context: str) -> None:
        """CS_ROUTING (dialplan hunt) then CS_EXECUTE, looping on transfers."""
        while ch.alive:
            apps = self.sim.dialplan.hunt(ch, context, self.sim.now(),
                                          lambda name, data: ch.execute_app(name, expand(ch, data)))
            if apps is None:
                log.info("fssim: no route for %s in %s", ch.profile.destination_number, context)
                ch.hangup("NO_ROUTE_DESTINATION")
                return
            ch.set_state("CS_EXECUTE")
            self.run_apps(ch, apps)
            if self._take_transfer(ch):
                context = ch.profile.context
                continue
            if ch.alive:
                ch.hangup("NORMAL_CLEARING")
            return

    def run_apps(self, ch: Channel, apps: Sequence[tuple[str, str]]) -> None:
        for name, data in apps:
            if not ch.alive or ch.transfer_to is not None:
                return
            ch.execute_app(name, expand(ch, data))
            ch.process_messages()

    def _take_transfer(self, ch: Channel) -> bool:
        if ch.transfer_to is None or not ch.alive:
            return False
        dest, context = ch.transfer_to
        ch.transfer_to = None
        p = ch.profile
        ch.set_var("transfer_history", f"{int(time.time())}:{uuidlib.uuid4()}:bl_xfer:{dest}/{context}/XML")
        ch.set_var("transfer_source", f"{int(time.time())}:{uuidlib.uuid4()}:bl_xfer:{dest}/{context}/XML")
        p.destination_number = dest
        p.context = context
        p.dialplan = "XML"
        p.profile_index = str(int(p.profile_index) + 1)
        p.transferred = now_us()
        p.profile_created = p.transferred
        ch.hit_dialplan = True
        ch.set_state("CS_ROUTING")
        return True

    def transfer(self, ch: Channel, dest: str, context: str) -> None:
        with ch.cond:
            ch.transfer_to = (dest, context)
            ch.break_flag = True
            ch.cond.notify_all()

    # ---- inbound ----
    def inbound_call(self, caller: str, destination: str, audio: Any = None, gateway: Optional[str] = None,
                     profile: str = "external", variables: Optional[dict[str, Any]] = None,
                     caller_name: Optional[str] = None, remote_ip: Optional[str] = None,
                     context: Optional[str] = None, uuid: Optional[str] = None) -> SimCall:
        sim = self.sim
        remote_ip = remote_ip or sim.remote_ip
        caller_name = caller_name or caller
        name = f"sofia/{profile}/{caller}@{remote_ip}:5061"
        ch = Channel(sim, kind="sofia", direction="inbound", name=name, uuid=uuid, profile=CallerProfile(
            direction="inbound", logical_direction="inbound", username=caller, dialplan="XML",
            caller_id_name=caller_name, caller_id_number=caller, orig_caller_id_name=caller_name,
            orig_caller_id_number=caller, network_addr=remote_ip, ani=caller,
            destination_number=destination, uuid="", source="mod_sofia",
            context=context or sim.profile_context(profile), chan_name=name))
        ch.profile.uuid = ch.uuid
        ch.profile.created = ch.profile.profile_created = now_us()
        sim.register(ch)
        if audio is not None:
            pcm = segments_to_pcm(audio, sim.sounds_dir)
            ch.on_answer_hooks.append(lambda: ch.caller_audio.append_after(
                ch.caller_audio.sample_at(time.monotonic(), INTERNAL_RATE), pcm))
        call = SimCall(sim, ch)
        started = threading.Event()

        def run() -> None:
            ch.fire("CHANNEL_STATE")  # CS_NEW, no caller profile yet
            ch.mark_profile()
            ch.state = "CS_INIT"
            ch.set_state("CS_INIT")
            ch.set_vars(sim.templates.sofia_inbound_create(ch, caller, caller_name, destination, profile,
                                                           remote_ip, gateway))
            for k, v in (variables or {}).items():
                ch.set_var(k, v)
            ch.state_number = 2
            ch.fire("CHANNEL_CREATE")
            started.set()
            ch.state = "CS_ROUTING"
            ch.set_callstate("RINGING")
            ch.set_state("CS_ROUTING")
            self.route_and_execute(ch, ch.profile.context)
        self.start_session(ch, run)
        started.wait(2.0)
        return call

    # ---- outbound ----
    def behavior_for(self, ep: Endpoint) -> Behavior:
        return self.sim.find_behavior(ep.raw, ep.raw.split("@", 1)[0], ep.number, ep.uri)

    def dial(self, dial_string: str, user_vars: list[tuple[str, str]], timeout_s: float,
             a_leg: Optional[Channel] = None, on_created: Optional[Callable[[Channel], None]] = None
             ) -> tuple[Optional[Channel], str]:
        """switch_ivr_originate: `|` failover groups of `,` ring-all legs. Returns (leg, cause)."""
        cause = "NORMAL_CLEARING"
        for group in dial_string.split("|"):
            legs: list[Channel] = []
            for raw in _split_top(group, ","):
                ep = parse_endpoint(raw.strip(), self.sim)
                leg, fail = self.create_leg(ep, user_vars + list(ep.leg_vars), timeout_s, a_leg)
                if leg is None:
                    cause = fail
                    continue
                legs.append(leg)
                if on_created:
                    on_created(leg)
            if not legs:
                continue
            deadline = time.monotonic() + timeout_s + 2.0
            winner: Optional[Channel] = None
            cond = threading.Condition()

            def done() -> bool:
                return any(l.originate_result == "answered" for l in legs) or \
                    all(l.originate_done.is_set() for l in legs) or \
                    (a_leg is not None and not a_leg.alive)
            for leg in legs:
                leg.result_listeners.append(lambda c=cond: _notify(c))
            with cond:
                while not done() and time.monotonic() < deadline:
                    cond.wait(0.05)
            for leg in legs:
                if leg.originate_result == "answered" and winner is None and (a_leg is None or a_leg.alive):
                    winner = leg
            for leg in legs:
                if leg is not winner and leg.alive:
                    leg.hangup("LOSE_RACE" if winner else "ORIGINATOR_CANCEL")
            if winner is not None:
                return winner, "SUCCESS"
            for leg in legs:
                if leg.originate_cause:
                    cause = leg.originate_cause
            if a_leg is not None and not a_leg.alive:
                return None, "ORIGINATOR_CANCEL"
        return None, cause

    def create_leg(self, ep: Endpoint, user_vars: list[tuple[str, str]], timeout_s: float,
                   a_leg: Optional[Channel]) -> tuple[Optional[Channel], str]:
        sim = self.sim
        vars_d = dict(user_vars)
        if ep.tech == "error":
            return None, ep.number
        if ep.tech == "loopback":
            return self._loopback_leg(ep, user_vars, timeout_s)
        if ep.tech not in ("gateway", "sofia", "user"):
            return None, "CHAN_NOT_IMPLEMENTED"
        profile = ep.profile
        uri = ep.uri
        if ep.tech == "gateway":
            gw = sim.gateways.get(ep.gateway or "")
            if gw is None:
                return None, "INVALID_GATEWAY"
            if gw.status != "UP":
                return None, "GATEWAY_DOWN"
            profile = gw.profile
            host = gw.params.get("proxy") or gw.params.get("realm") or gw.name
            uri = f"{ep.number}@{host}"
            gw.calls_out += 1
        elif ep.tech == "sofia":
            if profile not in ("external", "internal", "external-ipv6", "internal-ipv6"):
                return None, "INVALID_PROFILE"
            if "@" not in uri:
                uri = f"{uri}@{sim.remote_ip}"
        else:  # user/<ext>
            uri = f"{ep.number}@{sim.remote_ip}:5070"
        behavior = self.behavior_for(ep)
        if ep.tech == "user" and not sim.has_behavior(ep.raw, ep.raw.split("@", 1)[0], ep.number):
            behavior = Behavior(outcome="unregistered")
        if behavior.outcome == "gateway_down":
            return None, "GATEWAY_DOWN"
        if behavior.outcome == "unregistered":
            return None, "USER_NOT_REGISTERED"
        cid_num = vars_d.get("origination_caller_id_number") or vars_d.get("effective_caller_id_number") \
            or (a_leg.profile.caller_id_number if a_leg else "0000000000")
        cid_name = vars_d.get("origination_caller_id_name") or vars_d.get("effective_caller_id_name") \
            or (a_leg.profile.caller_id_name if a_leg else "")
        name = f"sofia/{profile}/{uri}"
        leg_uuid = vars_d.get("origination_uuid") or str(uuidlib.uuid4())
        ch = Channel(sim, kind="sofia", direction="outbound", name=name, uuid=leg_uuid, profile=CallerProfile(
            direction="outbound", logical_direction="outbound", caller_id_name=cid_name,
            caller_id_number=cid_num, orig_caller_id_name=cid_name, orig_caller_id_number=cid_num,
            callee_id_name="Outbound Call", callee_id_number=ep.number, ani=cid_num,
            destination_number=ep.number, uuid=leg_uuid, source="src/switch_ivr_originate.c",
            context="default", chan_name=name))
        ch.profile.created = ch.profile.profile_created = now_us()
        if a_leg is not None:
            ch.other_leg, ch.other_type = a_leg, "originator"
            ch.profile.dialplan = ""
        sim.register(ch)
        ch.mark_profile()
        ch.state = "CS_NONE"
        ch.state_number = 13
        ch.fire("CHANNEL_OUTGOING")
        ch.set_state("CS_INIT")
        ch.set_vars(sim.templates.sofia_outbound_create(ch, profile, uri, user_vars, ep.gateway))
        ch.state_number = 2
        ch.fire("CHANNEL_CREATE")
        ch.fire("CHANNEL_ORIGINATE")
        ch.set_state("CS_ROUTING")
        ch.set_state("CS_CONSUME_MEDIA")
        self.start_session(ch, lambda: self._run_far_end(ch, behavior, uri, timeout_s))
        return ch, ""

    def _run_far_end(self, ch: Channel, behavior: Behavior, uri: str, timeout_s: float) -> None:
        """The scripted far end: ring, then answer or refuse; then whatever the originator wants."""
        time.sleep(0.02)
        cause = behavior.cause
        # Only answering / unanswered far ends send 180 Ringing; refusals come straight after the
        # INVITE (after ring_ms), as the captured 486 and 503 legs show.
        ringing = behavior.outcome in ("answer", "no_answer")
        if ringing and ch.alive:
            ch.set_vars(self.sim.templates.sofia_outbound_progress(ch, uri))
            ch.profile.network_addr = uri.partition("@")[2].partition(":")[0]
            ch.profile.progress = now_us()
            ch.fire("CHANNEL_PROGRESS")
            ch.set_callstate("RINGING")
        wait_s = timeout_s if behavior.outcome == "no_answer" else min(timeout_s, behavior.ring_ms / 1000.0)
        ch.wait(wait_s, lambda: not ch.alive)
        if not ch.alive:
            ch.set_originate_result(None, ch.hangup_cause or "ORIGINATOR_CANCEL")
            return
        if behavior.outcome == "no_answer" or (cause is None and behavior.ring_ms / 1000.0 > timeout_s):
            ch.hangup("NO_ANSWER")
            ch.set_originate_result(None, "NO_ANSWER")
            return
        if cause is not None:
            if behavior.outcome != "failed":  # an unreachable host never answered: no network address
                ch.profile.network_addr = ch.profile.network_addr or uri.partition("@")[2].partition(":")[0]
            ch.hangup(cause, remote=True)
            ch.result_after_complete = cause
            return
        # answer
        ch.set_codecs("PCMU", "8000", "64000", real=True)
        if behavior.answer_audio is not None:
            pcm = segments_to_pcm(behavior.answer_audio, self.sim.sounds_dir)
            ch.on_answer_hooks.append(lambda: ch.caller_audio.append_after(
                ch.caller_audio.sample_at(time.monotonic(), INTERNAL_RATE), pcm))
        ch.answer()
        ch.flip_cid()
        ch.set_var("call_uuid", ch.uuid)  # re-set by switch_ivr_originate (moves it, as captured)
        if behavior.hangup_after_ms is not None:
            t = threading.Timer(behavior.hangup_after_ms / 1000.0, lambda: ch.hangup("NORMAL_CLEARING", remote=True))
            t.daemon = True
            t.start()
        ch.set_originate_result("answered", "SUCCESS")
        self.continue_leg(ch)

    def continue_leg(self, ch: Channel) -> None:
        """After the originate answered: run the app / extension / bridge it was given."""
        ch.wait(None, lambda: not ch.alive or ch.next_action is not None)
        if not ch.alive:
            return
        action = ch.next_action
        assert action is not None
        kind = action[0]
        if kind == "app":
            ch.set_state("CS_EXECUTE")
            ch.execute_app(action[1], expand(ch, action[2]))
            ch.process_messages()
            if self._take_transfer(ch):
                self.route_and_execute(ch, ch.profile.context)
            elif ch.alive:
                ch.hangup("NORMAL_CLEARING")
        elif kind == "route":
            ch.profile.destination_number = action[1]
            ch.profile.context = action[2]
            ch.hit_dialplan = True
            ch.set_state("CS_ROUTING")
            self.route_and_execute(ch, action[2])
        elif kind == "bridge":
            ch.set_state("CS_EXCHANGE_MEDIA")
            while ch.alive and ch.transfer_to is None and ch.bridge_partner is not None:
                ch.wait(None, lambda: not ch.alive or ch.transfer_to is not None or ch.bridge_partner is None
                        or bool(ch.messages))
                if ch.messages:
                    ch.process_messages()  # e.g. uuid_broadcast ... bleg (whisper)
            if self._take_transfer(ch):
                self.route_and_execute(ch, ch.profile.context)

    def _loopback_leg(self, ep: Endpoint, user_vars: list[tuple[str, str]], timeout_s: float
                      ) -> tuple[Optional[Channel], str]:
        """loopback/<dest>/<context>: an outbound A leg and an inbound B leg running the dialplan."""
        sim = self.sim
        vars_d = dict(user_vars)
        a_uuid = vars_d.get("origination_uuid") or str(uuidlib.uuid4())
        cid = vars_d.get("origination_caller_id_number", "0000000000")
        a_name, b_name = f"loopback/{ep.number}-a", f"loopback/{ep.number}-b"
        a = Channel(sim, kind="loopback", direction="outbound", name=a_name, uuid=a_uuid, profile=CallerProfile(
            direction="outbound", logical_direction="outbound", dialplan="XML", caller_id_number=cid,
            orig_caller_id_number=cid, callee_id_name="Outbound Call", callee_id_number=ep.context,
            ani=cid, destination_number=ep.number, uuid=a_uuid, source="src/switch_ivr_originate.c",
            context=ep.context, chan_name=a_name))
        b = Channel(sim, kind="loopback", direction="inbound", name=b_name, profile=CallerProfile(
            direction="inbound", logical_direction="inbound", dialplan="xml", caller_id_number=cid,
            orig_caller_id_number=cid, callee_id_name="Outbound Call", callee_id_number=ep.context,
            ani=cid, destination_number=ep.number, uuid="",
            source="mod_loopback", context=ep.context, chan_name=b_name))
        b.profile.uuid = b.uuid
        for c in (a, b):
            c.profile.created = c.profile.profile_created = now_us()
            c.loopback_peer = None
        a.loopback_peer, b.loopback_peer = b, a
        sim.register(a)
        sim.register(b)
        a.mark_profile()
        b.mark_profile()
        a.state, a.state_number = "CS_NONE", 13
        a.set_vars(sim.templates.loopback_a_vars(a))
        a.read_codec = a.write_codec = ("L16", "8000", "128000")
        if "origination_uuid" in vars_d:
            a.fire("CHANNEL_UUID", pre=[("Old-Unique-ID", str(uuidlib.uuid4()))])
        a.fire("CHANNEL_OUTGOING")
        a.set_state("CS_INIT")
        b.state, b.state_number = "CS_NONE", 13
        b.set_codecs("L16", "8000", "128000")
        a.set_vars([(k, v) for k, v in user_vars] + [
            ("originate_early_media", "true"), ("originate_endpoint", "loopback"),
            ("other_loopback_leg_uuid", b.uuid), ("loopback_leg", "A")])
        a.state_number = 2
        a.fire("CHANNEL_CREATE")

        def b_answered() -> None:
            a.answer()
            a.flip_cid()
            a.set_var("call_uuid", a.uuid)
            a.set_originate_result("answered", "SUCCESS")
        b.on_answer_hooks.append(b_answered)

        def run_b() -> None:
            b.set_state("CS_INIT")
            b.set_vars(sim.templates.loopback_b_vars(b, a, user_vars))
            b.state_number = 2
            b.fire("CHANNEL_CREATE")
            b.state = "CS_ROUTING"
            b.set_callstate("RINGING")
            b.set_state("CS_ROUTING")
            self.route_and_execute(b, ep.context)
        a.fire("CHANNEL_ORIGINATE")
        a.set_state("CS_ROUTING")
        a.set_state("CS_CONSUME_MEDIA")
        self.start_session(b, run_b)

        def run_a() -> None:
            a.wait(timeout_s, lambda: not a.alive or a.answered)
            if not a.alive:
                a.set_originate_result(None, a.hangup_cause or "NORMAL_CLEARING")
                return
            if not a.answered:
                a.hangup("NO_ANSWER")
                a.set_originate_result(None, "NO_ANSWER")
                return
            self.continue_leg(a)
        self.start_session(a, run_a)
        return a, ""

    # ---- originate API ----
    def originate(self, args: str, on_result: Callable[[str], None]) -> None:
        """`originate <url> <exten>|&app(args) [dialplan] [context] [cid_name] [cid_num] [timeout]`."""
        user_vars, rest = parse_vars(args)
        parts = rest.split(" ", 1)
        url = parts[0]
        tail = parts[1].strip() if len(parts) > 1 else ""
        if not url or not tail:
            on_result("-USAGE: <call url> <exten>|&<application_name>(<app_args>) [<dialplan>] [<context>] "
                      "[<cid_name>] [<cid_num>] [<timeout_sec>]\n")
            return
        action: tuple[str, str, str]
        if tail.startswith("&"):
            m = re.match(r"&([^\s(]+)(?:\(([^)]*)\)?)?(.*)$", tail)
            assert m is not None
            action = ("app", m.group(1), m.group(2) or "")
            extra = m.group(3).split()
        else:
            bits = tail.split()
            exten = bits[0]
            context = bits[2] if len(bits) > 2 else "default"
            action = ("route", exten, context)
            extra = bits[3:]
        vd = dict(user_vars)
        timeout_s = 60.0
        for key in ("originate_timeout", "call_timeout", "leg_timeout"):
            if key in vd:
                try:
                    timeout_s = float(vd[key])
                except ValueError:
                    pass
                break
        if len(extra) >= 3 and extra[-1].isdigit() and not tail.startswith("&"):
            timeout_s = float(extra[-1])
        leg, cause = self.dial(url, user_vars, timeout_s)
        if leg is None:
            on_result(f"-ERR {cause}\n")
            return
        on_result(f"+OK {leg.uuid}\n")
        with leg.cond:
            leg.next_action = action
            leg.cond.notify_all()


def _notify(cond: threading.Condition) -> None:
    with cond:
        cond.notify_all()


def _split_top(text: str, sep: str) -> list[str]:
    """Split on sep outside {..}/[..] blocks."""
    out, depth, cur = [], 0, ""
    for c in text:
        if c in "{[<":
            depth += 1
        elif c in "}]>":
            depth -= 1
        if c == sep and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += c
    out.append(cur)
    return [o for o in out if o.strip()]


# ---- bridge ----
def bridge_app(ch: Channel, data: str) -> None:
    """The `bridge` application: dial, then bridge; the dialplan continues if the B leg hangs up."""
    sim = ch.sim
    user_vars, rest = parse_vars(data)
    timeout_s = float(dict(user_vars).get("call_timeout") or ch.get_var("call_timeout") or 60)
    leg, cause = sim.calls_engine.dial(rest, user_vars, timeout_s, a_leg=ch)
    if leg is None:
        ch.set_var("originate_disposition", cause)
        ch.set_var("DIALSTATUS", {"USER_BUSY": "BUSY", "NO_ANSWER": "NOANSWER"}.get(cause, cause))
        return
    with leg.cond:
        leg.bridge_partner = ch
        leg.next_action = ("bridge", ch.uuid, "")
        leg.cond.notify_all()
    run_bridge(ch, leg)


def run_bridge(a: Channel, b: Channel, from_park: bool = False) -> None:
    """Audio bridge between two live legs: CHANNEL_BRIDGE ... CHANNEL_UNBRIDGE on the A leg."""
    a.bridge_request = None
    if not (a.alive and b.alive):
        return
    if not a.answered:
        a.answer()
    a.bridge_partner, b.bridge_partner = b, a
    a.other_leg, a.other_type = b, "originatee"
    b.other_leg, b.other_type = a, "originator"
    ts = now_us()
    a.profile.bridged = b.profile.bridged = ts
    a.set_vars([("bridge_channel", b.name), ("bridge_uuid", b.uuid), ("signal_bond", b.uuid),
                ("last_bridge_to", b.uuid)])
    b.set_vars([("signal_bond", a.uuid), ("last_bridge_to", a.uuid)])
    pre = [("Bridge-A-Unique-ID", a.uuid), ("Bridge-B-Unique-ID", b.uuid)]
    a.fire("CHANNEL_BRIDGE", pre=pre)
    a.wait(None, lambda: not a.alive or not b.alive or a.transfer_to is not None or a.bridge_partner is not b)
    a.fire("CHANNEL_UNBRIDGE", pre=pre)
    if not b.alive:
        a.set_var("bridge_hangup_cause", b.hangup_cause)
        a.set_var("last_bridge_hangup_cause", b.hangup_cause)
    a.bridge_partner = None
    with b.cond:
        b.bridge_partner = None
        b.cond.notify_all()
    if not a.alive and b.alive:
        b.hangup("NORMAL_CLEARING")
    elif a.transfer_to is not None and b.alive and b.transfer_to is None:
        b.hangup("NORMAL_CLEARING")
    elif a.alive and (a.get_var("hangup_after_bridge") or "").lower() == "true":
        a.hangup("NORMAL_CLEARING")
