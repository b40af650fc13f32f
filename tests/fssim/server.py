"""FsSim: the simulated FreeSWITCH (ESL TCP server, call registry, gateways, scripted behaviours).

Plain `socket` + `threading` only, so it runs in an ordinary pytest process and in a
gevent-monkey-patched one alike (threads become greenlets there).
"""

from __future__ import annotations

import collections
import fnmatch
import itertools
import logging
import os
import re
import socket
import tempfile
import threading
import time
import uuid as uuidlib
from datetime import datetime, timezone, tzinfo
from typing import Any, Callable, Optional, Union

from . import esl_protocol as proto
from .calls import Behavior, CallsEngine, SimCall
from .channel import Channel, Message
from .commands import Commands
from .dialplan import Dialplan
from .events import EVENT_NAMES, Event, EventBus
from .gateways import Gateway, GatewayBehavior, load_gateway_files
from .templates import Templates

log = logging.getLogger("fssim.server")


class EslConnection:
    """One inbound ESL client (mod_event_socket listener)."""

    def __init__(self, sim: "FsSim", sock: socket.socket, addr: Any) -> None:
        self.sim = sim
        self.sock = sock
        self.addr = addr
        self.authed = False
        self.fmt: Optional[str] = None  # plain | json | xml once `event` was sent
        self.all_events = False
        self.events: set[str] = set()
        self.custom: set[str] = set()
        self.filters: list[tuple[str, str]] = []
        self.myevents: Optional[str] = None
        self.linger = False
        self.closed = False
        self.outq: "collections.deque[Optional[bytes]]" = collections.deque()
        self.out_cond = threading.Condition()
        self.writer = threading.Thread(target=self._write_loop, name="fssim-esl-tx", daemon=True)
        self.reader = threading.Thread(target=self._read_loop, name="fssim-esl-rx", daemon=True)

    def start(self) -> None:
        self.writer.start()
        self.send(proto.auth_request())
        self.reader.start()

    # ---- output ----
    def send(self, data: Optional[bytes]) -> None:
        with self.out_cond:
            if self.closed:
                return
            self.outq.append(data)
            self.out_cond.notify()

    def _write_loop(self) -> None:
        while True:
            with self.out_cond:
                while not self.outq and not self.closed:
                    self.out_cond.wait(0.5)
                if self.closed and not self.outq:
                    return
                data = self.outq.popleft()
            if data is None:  # close marker after a disconnect notice
                self._close_socket()
                return
            try:
                self.sock.sendall(data)
            except OSError:
                self.abort()
                return

    def _close_socket(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
        with self.out_cond:
            self.closed = True
            self.out_cond.notify_all()
        self.sim.connection_closed(self)

    def abort(self) -> None:
        """Drop the TCP connection without a goodbye (network loss / FreeSWITCH crash)."""
        with self.out_cond:
            if self.closed:
                return
            self.closed = True
            self.outq.clear()
            self.out_cond.notify_all()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
        self.sim.connection_closed(self)

    def goodbye(self) -> None:
        self.send(proto.disconnect_notice())
        self.send(None)

    # ---- events ----
    def wants(self, ev: Event) -> bool:
        if not self.fmt or self.closed:
            return False
        if self.all_events:
            send = True
        elif ev.name in self.events:
            send = ev.name != "CUSTOM" or ev.subclass is None or ev.subclass in self.custom
        else:
            send = False
        if send and self.myevents and ev.get("Unique-ID") != self.myevents:
            send = False
        if send and self.filters:
            for name, value in self.filters:
                hval = ev.get(name)
                if hval is None:
                    continue
                pos = True
                comp = value
                while comp and comp[0] in "+- ":
                    if comp[0] == "+":
                        pos = True
                    elif comp[0] == "-":
                        pos = False
                    comp = comp[1:]
                if pos:
                    send = False
                if comp.startswith("/"):
                    pattern = comp[1:-1] if comp.endswith("/") else comp[1:]
                    cmp = re.search(pattern, hval) is not None
                else:
                    cmp = hval.lower() == comp.lower()
                if cmp:
                    if pos:
                        send = True
                    else:
                        send = False
                        break
        return send

    def deliver(self, ev: Event) -> None:
        if not self.wants(ev):
            return
        if self.fmt == "json":
            payload = proto.serialize_json(ev.headers, ev.body)
        elif self.fmt == "xml":
            payload = proto.serialize_xml(ev.headers, ev.body)
        else:
            payload = proto.serialize_plain(ev.headers, ev.body)
        self.send(proto.event_frame(payload, self.fmt or "plain"))

    # ---- commands ----
    def _read_loop(self) -> None:
        reader = proto.CommandReader(self.sock)
        while not self.closed:
            try:
                cmd = reader.read()
            except OSError:
                cmd = None
            if cmd is None:
                self.abort()
                return
            if not cmd.line:
                continue
            try:
                self.handle(cmd)
            except Exception:
                log.exception("ESL command %r failed", cmd.line)
                self.send(proto.command_reply("-ERR command failed"))

    def reply(self, text: str, extra: tuple[tuple[str, str], ...] = ()) -> None:
        self.send(proto.command_reply(text, extra))

    def handle(self, cmd: proto.Command) -> None:
        line = cmd.line
        word, _, rest = line.partition(" ")
        word_l = word.lower()
        if not self.authed:
            if word_l == "auth":
                if rest.strip() == self.sim.password:
                    self.authed = True
                    self.reply("+OK accepted")
                else:
                    self.reply("-ERR invalid")
                    self.goodbye()
            else:
                self.reply("-ERR command not found")
            return
        if word_l == "api":
            api_cmd, _, args = rest.strip().partition(" ")
            body = self.sim.commands.execute(api_cmd, args.strip())
            self.send(proto.api_response(body))
        elif word_l == "bgapi":
            job = cmd.header("Job-UUID") or str(uuidlib.uuid4())
            self.reply(f"+OK Job-UUID: {job}", (("Job-UUID", job),))
            api_cmd, _, args = rest.strip().partition(" ")
            threading.Thread(target=self.sim.run_bgapi, args=(job, api_cmd, args.strip()),
                             name="fssim-bgapi", daemon=True).start()
        elif word_l == "event":
            self._event_cmd(rest.split())
        elif word_l == "myevents":
            self._myevents(rest.split())
        elif word_l == "noevents":
            if self.fmt:
                self.fmt = None
                self.all_events = False
                self.events.clear()
                self.custom.clear()
                self.reply("+OK no longer listening for events")
            else:
                self.reply("-ERR not listening for events")
        elif word_l == "nixevent":
            names = rest.split()
            if not names:
                self.reply("-ERR no keywords supplied")
                return
            custom = False
            for n in names:
                if custom:
                    self.custom.discard(n)
                elif n == "CUSTOM":
                    custom = True
                elif n == "ALL":
                    self.all_events = False
                    self.events.clear()
                else:
                    self.events.discard(n)
            self.reply("+OK events nixed")
        elif word_l == "filter":
            self._filter(rest)
        elif word_l == "sendmsg":
            self._sendmsg(rest.strip(), cmd)
        elif word_l == "sendevent":
            name = rest.strip() or "CUSTOM"
            subclass = cmd.header("Event-Subclass")
            ev = self.sim.bus.fire(name, [h for h in cmd.headers if h[0].lower() != "content-length"],
                                   body=cmd.body or None, subclass=subclass)
            self.reply(f"+OK {uuidlib.uuid4()}")
            del ev
        elif word_l == "linger":
            self.linger = True
            self.reply("+OK will linger")
        elif word_l == "nolinger":
            self.linger = False
            self.reply("+OK will not linger")
        elif word_l == "log":
            self.reply(f"+OK log level {rest.strip() or 'debug'} [7]")
        elif word_l == "nolog":
            self.reply("+OK no longer logging")
        elif word_l == "divert_events":
            self.reply("+OK events diverted" if rest.strip() == "on" else "+OK events not diverted")
        elif word_l in ("exit", "quit", "bye"):
            self.reply("+OK bye")
            self.goodbye()
        else:
            self.reply("-ERR command not found")

    def _event_cmd(self, words: list[str]) -> None:
        if not words:
            self.reply("-ERR no keywords supplied")
            return
        fmt = "plain"
        if words[0].lower() in ("plain", "json", "xml"):
            fmt = words[0].lower()
            words = words[1:]
        custom = False
        count = 0
        for w in words:
            if custom:
                self.custom.add(w)
                continue
            name = w.upper()
            if name not in EVENT_NAMES:
                continue
            count += 1
            if name == "ALL":
                self.all_events = True
            else:
                self.events.add(name)
            if name == "CUSTOM":
                custom = True
        if not count:
            self.reply("-ERR no keywords supplied")
            return
        self.fmt = fmt
        self.reply(f"+OK event listener enabled {fmt}")

    def _myevents(self, words: list[str]) -> None:
        if self.myevents:
            self.reply("-ERR aready enabled.")
            return
        if not words or words[0] not in self.sim.channels:
            self.reply("-ERR invalid uuid")
            return
        self.myevents = words[0]
        self.fmt = words[1] if len(words) > 1 and words[1] in ("plain", "json", "xml") else "plain"
        self.all_events = True
        self.reply("+OK Events Enabled")

    def _filter(self, rest: str) -> None:
        parts = rest.strip().split(" ", 1)
        if not parts or not parts[0]:
            self.reply("-ERR invalid syntax")
            return
        if parts[0] == "delete":
            spec = parts[1].split(" ", 1) if len(parts) > 1 else []
            if not spec:
                self.reply("-ERR invalid syntax")
                return
            if spec[0] == "all":
                self.filters.clear()
                self.reply("+OK filter deleted. [all]=[(null)]")
                return
            name = spec[0]
            value = spec[1] if len(spec) > 1 else None
            self.filters = [(n, v) for n, v in self.filters
                            if not (n.lower() == name.lower() and (value is None or v == value))]
            self.reply(f"+OK filter deleted. [{name}]=[{value if value is not None else '(null)'}]")
            return
        if len(parts) < 2:
            self.reply("-ERR invalid syntax")
            return
        self.filters.append((parts[0], parts[1]))
        self.reply(f"+OK filter added. [{parts[0]}]=[{parts[1]}]")

    def _sendmsg(self, uuid: str, cmd: proto.Command) -> None:
        ch = self.sim.channels.get(uuid) if uuid else None
        if ch is None:
            self.reply(f"-ERR invalid session id [{uuid}]")
            return
        call_cmd = (cmd.header("call-command") or "").lower()
        if call_cmd == "execute":
            app = cmd.header("execute-app-name") or ""
            arg = cmd.header("execute-app-arg") or cmd.body or ""
            loops = int(cmd.header("loops") or "1")
            ch.queue_message(Message(command="execute", app=app, arg=arg, loops=loops,
                                     event_lock=(cmd.header("event-lock") or "").lower() == "true"))
        elif call_cmd == "hangup":
            ch.hangup(cmd.header("hangup-cause") or "NORMAL_CLEARING")
        elif call_cmd in ("unicast", "nomedia", "xferext", "uuid_bridge"):
            pass
        self.reply("+OK")


BehaviorArg = Union[Behavior, str]


class FsSim:
    """A FreeSWITCH 1.10.12 look-alike for tests and benchmarks.

    >>> sim = FsSim(dialplan_dir="dp").start()
    >>> call = sim.inbound_call(caller="79161234567", destination="74951234567", audio="hello.wav")
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, password: str = "ClueCon",
                 dialplan_dir: Optional[str] = None, gateway_dir: Optional[str] = None,
                 sounds_dir: Optional[str] = None, temp_dir: Optional[str] = None,
                 tz: Union[None, str, tzinfo] = None, bidirectional: bool = False,
                 bidirectional_rate: int = 8000, heartbeat_interval: Optional[float] = 20.0,
                 hostname: str = "vm", default_context: str = "public",
                 keep_fork_files: bool = True) -> None:
        self.host = host
        self.requested_port = port
        self.port = port
        self.password = password
        self.hostname = hostname
        self.ipv4 = "192.0.2.2"
        self.ipv6 = "fd00::2"
        self.sip_ip = "127.0.0.1"
        self.remote_ip = "127.0.0.1"
        self.dialplan_dir = dialplan_dir
        self.gateway_dir = gateway_dir
        self.sounds_dir = sounds_dir
        self.temp_dir = temp_dir or tempfile.mkdtemp(prefix="fssim-")
        self.tz = tz
        self.bidirectional = bidirectional
        self.bidirectional_rate = bidirectional_rate if bidirectional else 0
        self.bidirectional_stream_only = False
        self.heartbeat_interval = heartbeat_interval
        self.keep_fork_files = keep_fork_files
        self.now: Callable[[], datetime] = lambda: datetime.now(self.tzinfo())
        self.global_vars: dict[str, str] = {
            "hostname": hostname, "domain": "127.0.0.1", "domain_name": "127.0.0.1",
            "local_ip_v4": self.sip_ip, "external_rtp_ip": self.sip_ip, "external_sip_ip": self.sip_ip,
            "default_password": "1234", "sound_prefix": "/usr/share/freeswitch/sounds/en/us/callie",
            "temp_dir": self.temp_dir, "switch_serial": "0",
        }
        self.bus = EventBus(self)
        self.templates = Templates(self)
        self.commands = Commands(self)
        self.calls_engine = CallsEngine(self)
        self.dialplan = Dialplan(dialplan_dir, default_context)
        self.channels: "collections.OrderedDict[str, Channel]" = collections.OrderedDict()
        self.all_channels: list[Channel] = []
        self.behaviors: list[tuple[str, Behavior]] = []
        self.default_behavior = Behavior()
        self.gateways: dict[str, Gateway] = {}
        self.gateway_behaviors: dict[str, GatewayBehavior] = {}
        self.events: list[Event] = []
        self.events_cond = threading.Condition()
        self.warnings: list[str] = []
        self.acl_reloads = 0
        self.log_lines: list[tuple[str, str]] = []
        self.connections: list[EslConnection] = []
        self.conn_lock = threading.Lock()
        self.listener: Optional[socket.socket] = None
        self.accept_thread: Optional[threading.Thread] = None
        self.running = False
        self.accepting_calls = True
        self.started = time.time()
        self.sessions_since_startup = 0
        self.session_peak = 0
        self._session_ids = itertools.count(1)
        self._play_count = itertools.count(0)
        self._registry_lock = threading.RLock()
        self._hb_stop = threading.Event()
        self.bus.subscribers.append(self._record_event)
        self.bus.subscribers.append(self._dispatch_event)

    # ---- lifecycle ----
    def start(self) -> "FsSim":
        self._listen()
        self.running = True
        self.started = time.time()
        self.rescan_gateways("external")
        if self.heartbeat_interval:
            self._hb_stop.clear()
            threading.Thread(target=self._heartbeat_loop, name="fssim-heartbeat", daemon=True).start()
        return self

    def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(64)
        self.port = sock.getsockname()[1]
        self.listener = sock
        self.accept_thread = threading.Thread(target=self._accept_loop, args=(sock,), name="fssim-accept",
                                              daemon=True)
        self.accept_thread.start()

    def _accept_loop(self, sock: socket.socket) -> None:
        while True:
            try:
                client, addr = sock.accept()
            except OSError:
                return
            if self.listener is not sock:
                client.close()
                return
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = EslConnection(self, client, addr)
            with self.conn_lock:
                self.connections.append(conn)
            conn.start()

    def _stop_listening(self) -> None:
        sock, self.listener = self.listener, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def stop(self) -> None:
        """Hang up every call, close every client, stop listening."""
        self._hb_stop.set()
        for ch in list(self.channels.values()):
            ch.hangup("SYSTEM_SHUTDOWN")
        deadline = time.monotonic() + 2.0
        while self.channels and time.monotonic() < deadline:
            time.sleep(0.01)
        self._stop_listening()
        self.drop_clients()
        self.running = False

    def drop_clients(self) -> None:
        """Abruptly close all ESL connections (restart / network loss); calls stay up."""
        with self.conn_lock:
            conns = list(self.connections)
        for conn in conns:
            conn.abort()

    def restart(self, down_s: float = 0.5, keep_calls: bool = True) -> None:
        """Stop listening for `down_s` seconds, then listen again on the same port."""
        self._stop_listening()
        self.drop_clients()
        if not keep_calls:
            for ch in list(self.channels.values()):
                ch.hangup("SYSTEM_SHUTDOWN")
            self.bus.core_uuid = str(uuidlib.uuid4())
        time.sleep(down_s)
        self._listen()

    def __enter__(self) -> "FsSim":
        return self.start() if not self.running else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def connection_closed(self, conn: EslConnection) -> None:
        with self.conn_lock:
            if conn in self.connections:
                self.connections.remove(conn)

    # ---- time ----
    def tzinfo(self) -> Optional[tzinfo]:
        if self.tz is None:
            return datetime.now().astimezone().tzinfo
        if isinstance(self.tz, str):
            from zoneinfo import ZoneInfo
            return ZoneInfo(self.tz)
        return self.tz

    # ---- events ----
    def _record_event(self, ev: Event) -> None:
        with self.events_cond:
            self.events.append(ev)
            self.events_cond.notify_all()

    def _dispatch_event(self, ev: Event) -> None:
        with self.conn_lock:
            conns = list(self.connections)
        for conn in conns:
            conn.deliver(ev)

    def wait_for_event(self, what: Union[str, Callable[[Event], bool]], timeout: float = 5.0,
                       after: int = 0) -> Event:
        """Wait for any event (by name / CUSTOM subclass, or a predicate) fired by the sim."""
        deadline = time.monotonic() + timeout
        with self.events_cond:
            while True:
                for ev in self.events[after:]:
                    if (callable(what) and what(ev)) or (isinstance(what, str) and ev.matches(what)):
                        return ev
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"event {what!r} not fired within {timeout}s")
                self.events_cond.wait(remaining)

    def fire_heartbeat(self) -> None:
        """HEARTBEAT + RE_SCHEDULE with the captured headers."""
        up = time.time() - self.started
        from .commands import VERSION_SHORT, uptime_text
        live = len(self.channels)
        self.bus.fire("HEARTBEAT", [
            ("Event-Info", "System Ready"), ("Up-Time", uptime_text(up)),
            ("FreeSWITCH-Version", VERSION_SHORT), ("Uptime-msec", str(int(up * 1000))),
            ("Session-Count", str(live)), ("Max-Sessions", "1000"), ("Session-Per-Sec", "30"),
            ("Session-Per-Sec-Last", "0"), ("Session-Per-Sec-Max", str(min(30, self.session_peak))),
            ("Session-Per-Sec-FiveMin", str(min(30, self.session_peak))),
            ("Session-Since-Startup", str(self.sessions_since_startup)),
            ("Session-Peak-Max", str(self.session_peak)), ("Session-Peak-FiveMin", str(self.session_peak)),
            ("Idle-CPU", "98.600000"),
        ])
        self.bus.fire("RE_SCHEDULE", [("Task-ID", "1"), ("Task-Desc", "heartbeat"), ("Task-Group", "core"),
                                      ("Task-Runtime", str(int(time.time() + (self.heartbeat_interval or 20))))])

    def _heartbeat_loop(self) -> None:
        interval = self.heartbeat_interval or 20.0
        while not self._hb_stop.wait(interval):
            self.fire_heartbeat()

    # ---- commands ----
    def api(self, command: str) -> str:
        """Run an API command directly (no ESL), e.g. sim.api('show channels as json')."""
        return self.commands.execute_api_line(command)

    def run_bgapi(self, job: str, cmd: str, args: str) -> None:
        body = self.commands.execute(cmd, args)
        headers = [("Job-UUID", job), ("Job-Command", cmd)]
        if args:
            headers.append(("Job-Command-Arg", args))
        self.bus.fire("BACKGROUND_JOB", headers, body=body)

    # ---- channels ----
    def next_session_id(self) -> int:
        return next(self._session_ids)

    def next_play_count(self) -> int:
        return next(self._play_count)

    def register(self, ch: Channel) -> None:
        with self._registry_lock:
            self.channels[ch.uuid] = ch
            self.all_channels.append(ch)
            self.sessions_since_startup += 1
            self.session_peak = max(self.session_peak, len(self.channels))

    def channel_gone(self, ch: Channel) -> None:
        with self._registry_lock:
            self.channels.pop(ch.uuid, None)

    def live_channels(self) -> list[Channel]:
        with self._registry_lock:
            return [c for c in self.channels.values() if not c.destroyed]

    def call_rows(self) -> list[dict[str, str]]:
        """`show calls`: one row per call, the B leg joined to its A leg (basic_calls view)."""
        rows = []
        seen: set[str] = set()
        for ch in self.live_channels():
            if ch.uuid in seen:
                continue
            partner = ch.bridge_partner
            if partner is not None and ch.other_type == "originator":
                continue
            a = ch.show_row()
            row = collections.OrderedDict((k, a[k]) for k in (
                "uuid", "direction", "created", "created_epoch", "name", "state", "cid_name", "cid_num",
                "ip_addr", "dest", "presence_id", "presence_data", "accountcode", "callstate",
                "callee_name", "callee_num", "callee_direction", "call_uuid", "hostname",
                "sent_callee_name", "sent_callee_num"))
            b = partner.show_row() if partner is not None else None
            for k in ("uuid", "direction", "created", "created_epoch", "name", "state", "cid_name", "cid_num",
                      "ip_addr", "dest", "presence_id", "presence_data", "accountcode", "callstate",
                      "callee_name", "callee_num", "callee_direction", "sent_callee_name", "sent_callee_num"):
                row[f"b_{k}"] = b[k] if b else ""
            row["call_created_epoch"] = a["created_epoch"] if b else ""
            seen.add(ch.uuid)
            if partner is not None:
                seen.add(partner.uuid)
            rows.append(row)
        return rows

    def get_call(self, uuid: str) -> SimCall:
        for ch in self.all_channels:
            if ch.uuid == uuid:
                return SimCall(self, ch)
        raise KeyError(uuid)

    @property
    def calls(self) -> list[SimCall]:
        """Every channel the sim created (live or finished), oldest first."""
        return [SimCall(self, ch) for ch in list(self.all_channels)]

    def wait_for_call(self, predicate: Callable[[SimCall], bool] = lambda c: True, timeout: float = 5.0,
                      after: int = 0) -> SimCall:
        """Wait for a channel (e.g. an originated leg) matching the predicate."""
        deadline = time.monotonic() + timeout
        while True:
            for ch in list(self.all_channels)[after:]:
                call = SimCall(self, ch)
                if predicate(call):
                    return call
            if time.monotonic() >= deadline:
                raise TimeoutError("no matching call")
            time.sleep(0.01)

    def inbound_call(self, caller: str = "79161234567", destination: str = "74951234567", audio: Any = None,
                     gateway: Optional[str] = None, profile: str = "external",
                     variables: Optional[dict[str, Any]] = None, **kw: Any) -> SimCall:
        """A call arriving from the network: creates the channel and runs the dialplan."""
        if gateway:
            gw = self.gateways.get(gateway)
            if gw is not None:
                gw.calls_in += 1
        return self.calls_engine.inbound_call(caller, destination, audio=audio, gateway=gateway,
                                              profile=profile, variables=variables, **kw)

    def profile_context(self, profile: str) -> str:
        return "public" if profile.startswith("external") else "default"

    # ---- behaviours of far ends ----
    def set_behavior(self, pattern: str, outcome: str = "answer", ring_ms: int = 100,
                     answer_audio: Any = None, hangup_after_ms: Optional[int] = None) -> Behavior:
        """Script what a destination does: answer|busy|no_answer|failed|rejected|unallocated|gateway_down.

        `pattern` matches the dialled number, the endpoint (`user/1001`, `sofia/gateway/gw/*`) or
        a glob of either; later calls override earlier ones.
        """
        b = Behavior(outcome=outcome, ring_ms=ring_ms, answer_audio=answer_audio, hangup_after_ms=hangup_after_ms)
        self.behaviors.insert(0, (pattern, b))
        return b

    def clear_behaviors(self) -> None:
        self.behaviors.clear()

    def has_behavior(self, *keys: str) -> bool:
        return any(self._match(p, k) for p, _ in self.behaviors for k in keys if k)

    @staticmethod
    def _match(pattern: str, key: str) -> bool:
        return pattern == key or fnmatch.fnmatchcase(key, pattern)

    def find_behavior(self, *keys: str) -> Behavior:
        for pattern, b in self.behaviors:
            for k in keys:
                if k and self._match(pattern, k):
                    return b
        return self.default_behavior

    # ---- gateways ----
    def rescan_gateways(self, profile: str = "external", only: Optional[str] = None) -> None:
        found = load_gateway_files(self.gateway_dir, profile)
        for name, gw in found.items():
            if only and name != only:
                continue
            if name in self.gateways:
                self.gateways[name].params = gw.params
                continue
            self.gateways[name] = gw
            self._register_gateway(gw)

    def register_gateway(self, name: str) -> None:
        gw = self.gateways.get(name)
        if gw is not None:
            self._register_gateway(gw)

    def _register_gateway(self, gw: Gateway) -> None:
        behavior = self.gateway_behaviors.get(gw.name, GatewayBehavior())
        if not gw.register:
            gw.state, gw.status = "NOREG", behavior.status
            self._fire_gateway_state(gw)
            return
        gw.state = "TRYING"
        self._fire_gateway_state(gw)
        self._apply_gateway_behavior(gw, behavior)

    def _apply_gateway_behavior(self, gw: Gateway, behavior: GatewayBehavior) -> None:
        gw.state = behavior.state
        gw.status = behavior.status
        code, phrase = behavior.code, behavior.reason
        if behavior.state in ("FAIL_WAIT", "FAILED") and code is None:
            code, phrase = 403, phrase or "Forbidden"
        gw.last_code, gw.last_phrase = code, phrase
        self._fire_gateway_state(gw, code, phrase)

    def _fire_gateway_state(self, gw: Gateway, code: Optional[int] = None, phrase: Optional[str] = None) -> None:
        headers = [("Gateway", gw.name), ("State", gw.state), ("Ping-Status", gw.status)]
        if phrase:
            headers.append(("Phrase", phrase))
        if code:
            headers.append(("Status", str(code)))
        self.bus.fire("CUSTOM", headers, subclass="sofia::gateway_state", calling="CUSTOM_GATEWAY_STATE")

    def set_gateway_behavior(self, name: str, state: str = "REGED", status: str = "UP",
                             reason: Optional[str] = None, code: Optional[int] = None) -> None:
        """Make the provider accept or refuse our registration (fires sofia::gateway_state)."""
        behavior = GatewayBehavior(state=state, status=status, reason=reason, code=code)
        self.gateway_behaviors[name] = behavior
        gw = self.gateways.get(name)
        if gw is not None:
            self._apply_gateway_behavior(gw, behavior)

    def remove_gateway(self, name: str) -> bool:
        gw = self.gateways.pop(name, None)
        if gw is None:
            return False
        gw.state = "NOREG"
        gw.status = "DOWN"
        self._fire_gateway_state(gw)
        return True
