"""Dialplan applications supported by the simulator (the subset our dialplan generator uses).

Each application runs in the channel's session thread and returns its Application-Response
(or None). Unknown applications are logged and skipped (real FreeSWITCH would abort the
extension with "Invalid Application"; the simulator keeps going so a typo shows up as a warning
in the test log rather than as a mysterious hangup).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import TYPE_CHECKING, Callable, Optional

from .channel import Channel

if TYPE_CHECKING:  # pragma: no cover
    pass

log = logging.getLogger("fssim.apps")

AppFn = Callable[[Channel, str], Optional[str]]
APPS: dict[str, AppFn] = {}

# SIP response codes of `respond` mapped to hangup causes (sofia_glue_sip_cause_to_freeswitch).
SIP_TO_CAUSE = {
    "400": "NORMAL_TEMPORARY_FAILURE", "401": "CALL_REJECTED", "402": "CALL_REJECTED",
    "403": "CALL_REJECTED", "404": "UNALLOCATED_NUMBER", "405": "SERVICE_UNAVAILABLE",
    "406": "SERVICE_NOT_IMPLEMENTED", "407": "CALL_REJECTED", "408": "RECOVERY_ON_TIMER_EXPIRE",
    "410": "NUMBER_CHANGED", "413": "INTERWORKING", "480": "NO_USER_RESPONSE",
    "484": "INVALID_NUMBER_FORMAT", "486": "USER_BUSY", "487": "ORIGINATOR_CANCEL",
    "488": "INCOMPATIBLE_DESTINATION", "500": "NORMAL_TEMPORARY_FAILURE",
    "501": "SERVICE_NOT_IMPLEMENTED", "502": "NETWORK_OUT_OF_ORDER", "503": "NORMAL_TEMPORARY_FAILURE",
    "504": "RECOVERY_ON_TIMER_EXPIRE", "600": "USER_BUSY", "603": "CALL_REJECTED",
    "604": "NO_ROUTE_DESTINATION", "606": "INCOMPATIBLE_DESTINATION",
}


def app(*names: str) -> Callable[[AppFn], AppFn]:
    def deco(fn: AppFn) -> AppFn:
        for n in names:
            APPS[n] = fn
        return fn
    return deco


def run_app(ch: Channel, name: str, data: str) -> Optional[str]:
    fn = APPS.get(name)
    if fn is None:
        log.warning("fssim: unsupported application %r (data %r) on %s, skipped", name, data, ch.uuid)
        ch.sim.warnings.append(f"unsupported application {name}")
        return None
    return fn(ch, data)


def _split_var(data: str) -> tuple[str, Optional[str]]:
    name, sep, value = data.partition("=")
    return name.strip(), (value if sep else None)


@app("set")
def app_set(ch: Channel, data: str) -> None:
    name, value = _split_var(data)
    ch.set_var(name, value if value not in (None, "", "_undef_") else None)


@app("export")
def app_export(ch: Channel, data: str) -> None:
    name, value = _split_var(data)
    nolocal = name.startswith("nolocal:")
    if nolocal:
        name = name[len("nolocal:"):]
    if not nolocal:
        ch.set_var(name, value)
    exported = [v for v in (ch.get_var("export_vars") or "").split(",") if v]
    if name not in exported:
        exported.append(name)
    ch.set_var("export_vars", ",".join(exported))


@app("unset")
def app_unset(ch: Channel, data: str) -> None:
    ch.set_var(data.strip(), None)


@app("multiset")
def app_multiset(ch: Channel, data: str) -> None:
    sep = " "
    if data.startswith("^^"):
        sep, data = data[2], data[3:]
    for item in data.split(sep):
        if item:
            app_set(ch, item)


@app("answer")
def app_answer(ch: Channel, data: str) -> None:
    ch.answer()


@app("pre_answer")
def app_pre_answer(ch: Channel, data: str) -> None:
    ch.pre_answer()


@app("ring_ready")
def app_ring_ready(ch: Channel, data: str) -> None:
    ch.ring_ready()


@app("hangup")
def app_hangup(ch: Channel, data: str) -> None:
    ch.hangup(data.strip() or "NORMAL_CLEARING")


@app("respond")
def app_respond(ch: Channel, data: str) -> None:
    code = data.strip().split(" ", 1)[0]
    if code in ("180",):
        ch.ring_ready()
    elif code in ("183",):
        ch.pre_answer()
    elif code == "200":
        ch.answer()
    elif code:
        ch.hangup(SIP_TO_CAUSE.get(code, "NORMAL_CLEARING"))


@app("park")
def app_park(ch: Channel, data: str) -> None:
    """switch_ivr_park: CHANNEL_PARK, serve queued messages until hangup/transfer, CHANNEL_UNPARK."""
    ch.fire("CHANNEL_PARK")
    ch.parked = True
    try:
        while ch.alive and ch.transfer_to is None:
            ch.wait(None, lambda: not ch.alive or ch.transfer_to is not None or bool(ch.messages)
                    or ch.bridge_request is not None)
            if ch.messages and ch.alive:
                ch.process_messages()
            if ch.bridge_request is not None and ch.alive:
                from .calls import run_bridge
                run_bridge(ch, ch.bridge_request, from_park=True)
    finally:
        ch.parked = False
    ch.fire("CHANNEL_UNPARK")


@app("playback")
def app_playback(ch: Channel, data: str) -> Optional[str]:
    if not ch.answered and not ch.profile.progress_media:
        ch.pre_answer()
    return ch.play(data.strip())


@app("sleep")
def app_sleep(ch: Channel, data: str) -> None:
    try:
        ms = int(data.strip() or "0")
    except ValueError:
        ms = 0
    end = time.monotonic() + ms / 1000.0
    while ch.alive and ch.transfer_to is None:
        if not ch.wait(max(0.0, end - time.monotonic()), lambda: not ch.alive or bool(ch.messages)
                       or ch.transfer_to is not None):
            break
        if ch.messages:
            ch.process_messages()
        if time.monotonic() >= end:
            break


@app("record_session")
def app_record_session(ch: Channel, data: str) -> None:
    path = data.strip().split(" ")[0]
    if path:
        ch.start_record(path)


@app("stop_record_session")
def app_stop_record_session(ch: Channel, data: str) -> None:
    ch.stop_record(data.strip() or "all")


@app("transfer")
def app_transfer(ch: Channel, data: str) -> None:
    parts = data.split()
    if not parts:
        return
    dest = parts[0]
    context = parts[2] if len(parts) > 2 else ch.profile.context
    ch.sim.calls_engine.transfer(ch, dest, context)


@app("bridge")
def app_bridge(ch: Channel, data: str) -> None:
    from .calls import bridge_app
    bridge_app(ch, data)


@app("log")
def app_log(ch: Channel, data: str) -> None:
    level, _, msg = data.partition(" ")
    if level.upper() not in ("DEBUG", "INFO", "NOTICE", "WARNING", "ERR", "ERROR", "CRIT", "ALERT", "CONSOLE"):
        msg = data
    log.info("fssim dialplan log [%s]: %s", ch.uuid, msg)
    ch.sim.log_lines.append((ch.uuid, msg))


@app("info")
def app_info(ch: Channel, data: str) -> None:
    log.info("fssim info %s: %s", ch.uuid, dict(ch.variables))


@app("sched_hangup")
def app_sched_hangup(ch: Channel, data: str) -> None:
    parts = data.split()
    if not parts:
        return
    spec = parts[0]
    cause = parts[1] if len(parts) > 1 else "ALLOTTED_TIMEOUT"
    try:
        secs = float(spec[1:]) if spec.startswith("+") else float(spec) - time.time()
    except ValueError:
        return
    timer = threading.Timer(max(0.0, secs), lambda: ch.hangup(cause))
    timer.daemon = True
    ch.hangup_timer = timer
    timer.start()


@app("event")
def app_event(ch: Channel, data: str) -> None:
    headers = []
    subclass = None
    name = "CUSTOM"
    for pair in re.split(r",(?=[^,=]+=)", data):
        k, _, v = pair.partition("=")
        if k == "Event-Subclass":
            subclass = v
        elif k == "Event-Name":
            name = v
        elif k:
            headers.append((k, v))
    ch.fire(name, post=headers, subclass=subclass)


@app("uuid_audio_fork", "audio_fork")
def app_audio_fork(ch: Channel, data: str) -> None:
    ch.sim.commands.execute_api_line(f"uuid_audio_fork {ch.uuid} {data}")
