"""Tests of the FreeSWITCH simulator (tests/fssim) against the real FreeSWITCH 1.10.12 captures.

Real TCP (ESL) and WebSocket (mod_audio_fork) traffic, no mocks. The captures live in
shared/fixtures/freeswitch (found next to the checkout or via FSSIM_FIXTURES).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import struct
import threading
import time
import urllib.parse
import wave
from array import array
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import pytest

from tests.fssim import FsSim
from tests.fssim.esl_protocol import url_encode


# --------------------------------------------------------------------------- captures
def _fixtures_dir() -> Optional[Path]:
    env = os.environ.get("FSSIM_FIXTURES")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    for parent in list(here.parents)[:5]:
        candidates += [parent / "shared" / "fixtures" / "freeswitch",
                       parent.parent / "shared" / "fixtures" / "freeswitch"]
    candidates.append(Path("/work/shared/fixtures/freeswitch"))
    for c in candidates:
        if (c / "esl_api_session.txt").exists():
            return c
    return None


FIXTURES = _fixtures_dir()
needs_captures = pytest.mark.skipif(FIXTURES is None, reason="FreeSWITCH captures not found")

_MARK = re.compile(rb"(<<< RECV|>>> SEND) ([\d.]+)\n")


def parse_capture(name: str) -> list[dict[str, Any]]:
    """Parse a capture log into messages: {'dir','headers','body'} (RECV) or {'dir','command'}."""
    assert FIXTURES is not None
    data = (FIXTURES / name).read_bytes()
    out: list[dict[str, Any]] = []
    pos = 0
    while True:
        m = _MARK.search(data, pos)
        if not m:
            return out
        start = m.end()
        if m.group(1).startswith(b">>>"):
            end = data.index(b"\n>>> END", start)
            out.append({"dir": "send", "command": data[start:end].decode()})
            pos = end
            continue
        hend = data.index(b"\n\n", start)
        headers = [tuple(l.split(": ", 1)) for l in data[start:hend].decode().split("\n")]
        hd = dict(headers)
        body = b""
        if "Content-Length" in hd:
            n = int(hd["Content-Length"])
            body = data[hend + 2:hend + 2 + n]
            pos = hend + 2 + n
        else:
            pos = hend + 2
        out.append({"dir": "recv", "headers": headers, "body": body})


def plain_event(body: bytes) -> tuple[list[tuple[str, str]], bytes]:
    head, _, rest = body.partition(b"\n\n")
    headers = []
    for line in head.decode().split("\n"):
        k, _, v = line.partition(": ")
        headers.append((k, urllib.parse.unquote(v)))
    return headers, rest


def captured_events(name: str) -> list[list[tuple[str, str]]]:
    out = []
    for m in parse_capture(name):
        if m["dir"] != "recv":
            continue
        hd = dict(m["headers"])
        if hd.get("Content-Type") == "text/event-plain":
            out.append(plain_event(m["body"])[0])
        elif hd.get("Content-Type") == "text/event-json":
            out.append(list(json_pairs(m["body"])))
    return out


def json_pairs(body: bytes) -> list[tuple[str, str]]:
    return json.loads(body, object_pairs_hook=lambda pairs: pairs)


def non_var_names(headers: list[tuple[str, str]]) -> list[str]:
    return [k for k, _ in headers if not k.startswith("variable_") and k != "_body"]


def struct_names(headers: list[tuple[str, str]]) -> list[str]:
    """Header names without variables and caller-profile fields (those depend on the channel type:
    the captured mod_audio_fork events were on a loopback leg, ours on a SIP leg)."""
    return [k for k in non_var_names(headers) if not k.startswith("Caller-")]


def find_captured(events: list[list[tuple[str, str]]], name: str, **want: str) -> list[tuple[str, str]]:
    for ev in events:
        d = dict(ev)
        if (d.get("Event-Name") == name or d.get("Event-Subclass") == name) and \
                all(d.get(k.replace("_", "-")) == v for k, v in want.items()):
            return ev
    raise AssertionError(f"{name} {want} not in capture")


# --------------------------------------------------------------------------- ESL client
class EslClient:
    """Minimal blocking ESL client that keeps raw bytes, to compare with the captures."""

    def __init__(self, port: int, password: Optional[str] = "ClueCon") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""
        self.events: list[tuple[dict[str, str], bytes, bytes]] = []
        self.greeting = self.read_message()
        if password is not None:
            self.auth_reply = self.command(f"auth {password}")

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        self.buf += data

    def read_message(self) -> tuple[dict[str, str], bytes, bytes]:
        """Returns (outer headers, body, raw bytes of the whole message)."""
        while b"\n\n" not in self.buf:
            self._fill()
        i = self.buf.index(b"\n\n")
        head = self.buf[:i].decode()
        headers = dict(l.split(": ", 1) for l in head.split("\n"))
        n = int(headers.get("Content-Length", "0"))
        while len(self.buf) < i + 2 + n:
            self._fill()
        raw = self.buf[:i + 2 + n]
        body = self.buf[i + 2:i + 2 + n]
        self.buf = self.buf[i + 2 + n:]
        return headers, body, raw

    def read_reply(self) -> tuple[dict[str, str], bytes, bytes]:
        while True:
            msg = self.read_message()
            if msg[0].get("Content-Type", "").startswith("text/event-"):
                self.events.append(msg)
                continue
            return msg

    def command(self, line: str) -> tuple[dict[str, str], bytes, bytes]:
        self.sock.sendall(line.encode() + b"\n\n")
        return self.read_reply()

    def api(self, line: str) -> bytes:
        return self.command(f"api {line}")[1]

    def wait_event(self, pred, timeout: float = 5.0) -> tuple[dict[str, str], bytes, bytes]:
        for ev in self.events:
            if pred(ev):
                return ev
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.2)
        try:
            while time.monotonic() < deadline:
                try:
                    msg = self.read_message()
                except socket.timeout:
                    continue
                self.events.append(msg)
                if pred(msg):
                    return msg
        finally:
            self.sock.settimeout(5)
        raise TimeoutError("event not received")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def ev_name(msg: tuple[dict[str, str], bytes, bytes]) -> str:
    headers, body, _ = msg
    if headers.get("Content-Type") == "text/event-json":
        d = dict(json_pairs(body))
    else:
        d = dict(plain_event(body)[0])
    return d.get("Event-Subclass") or d.get("Event-Name", "")


def ev_headers(msg: tuple[dict[str, str], bytes, bytes]) -> list[tuple[str, str]]:
    headers, body, _ = msg
    if headers.get("Content-Type") == "text/event-json":
        return list(json_pairs(body))
    return plain_event(body)[0]


# --------------------------------------------------------------------------- WebSocket server
class WsServer:
    """Tiny RFC 6455 server (stdlib only) standing in for the VoiceAI audio endpoint."""

    def __init__(self, subprotocol: str = "audio.drachtio.org") -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(5)
        self.port = self.listener.getsockname()[1]
        self.subprotocol = subprotocol
        self.conns: list["WsConn"] = []
        self.cond = threading.Condition()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/audio"

    def _accept(self) -> None:
        while True:
            try:
                s, _ = self.listener.accept()
            except OSError:
                return
            conn = WsConn(s, self)
            with self.cond:
                self.conns.append(conn)
                self.cond.notify_all()

    def wait_conn(self, timeout: float = 5.0) -> "WsConn":
        with self.cond:
            assert self.cond.wait_for(lambda: self.conns, timeout), "no websocket connection"
            return self.conns[-1]

    def close(self) -> None:
        self.listener.close()
        for c in self.conns:
            c.close()


class WsConn:
    def __init__(self, sock: socket.socket, server: WsServer) -> None:
        self.sock = sock
        self.messages: list[tuple[float, int, bytes]] = []  # (monotonic, opcode, payload)
        self.cond = threading.Condition()
        self.closed = False
        req = b""
        while b"\r\n\r\n" not in req:
            req += sock.recv(4096)
        head = req.split(b"\r\n\r\n", 1)[0].decode()
        lines = head.split("\r\n")
        self.path = lines[0].split()[1]
        hdrs = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
        self.requested_protocols = hdrs.get("sec-websocket-protocol", "")
        accept = base64.b64encode(hashlib.sha1((hdrs["sec-websocket-key"] +
                                                "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        resp = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept.decode()}\r\n")
        if server.subprotocol in self.requested_protocols:
            resp += f"Sec-WebSocket-Protocol: {server.subprotocol}\r\n"
        sock.sendall((resp + "\r\n").encode())
        threading.Thread(target=self._read, daemon=True).start()

    def _recv_exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError
            out += chunk
        return out

    def _read(self) -> None:
        try:
            while True:
                b1, b2 = self._recv_exact(2)
                opcode, length = b1 & 0x0F, b2 & 0x7F
                if length == 126:
                    length = struct.unpack(">H", self._recv_exact(2))[0]
                elif length == 127:
                    length = struct.unpack(">Q", self._recv_exact(8))[0]
                mask = self._recv_exact(4) if b2 & 0x80 else b"\0\0\0\0"
                data = bytearray(self._recv_exact(length))
                for i in range(len(data)):
                    data[i] ^= mask[i % 4]
                with self.cond:
                    self.messages.append((time.monotonic(), opcode, bytes(data)))
                    self.cond.notify_all()
                if opcode == 8:
                    break
        except (ConnectionError, OSError):
            pass
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def _send(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        head = bytes([0x80 | opcode])
        head += bytes([n]) if n < 126 else (bytes([126]) + struct.pack(">H", n) if n < 65536
                                             else bytes([127]) + struct.pack(">Q", n))
        self.sock.sendall(head + payload)

    def send_json(self, obj: Any) -> None:
        self._send(1, json.dumps(obj, ensure_ascii=False).encode())

    def send_binary(self, data: bytes) -> None:
        self._send(2, data)

    def texts(self) -> list[str]:
        return [p.decode() for _, op, p in self.messages if op == 1]

    def binaries(self) -> list[tuple[float, bytes]]:
        return [(t, p) for t, op, p in self.messages if op == 2]

    def wait(self, pred, timeout: float = 5.0) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: pred(self), timeout), "websocket condition not met"

    def close(self) -> None:
        try:
            self._send(8, struct.pack(">H", 1000))
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


# --------------------------------------------------------------------------- fixtures
def write_wav(path: Path, ms: int, rate: int = 8000, freq: float = 440.0) -> Path:
    import math
    n = rate * ms // 1000
    pcm = array("h", (int(8000 * math.sin(2 * math.pi * freq * i / rate)) for i in range(n)))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


DIALPLAN = """<include>
  <context name="public">
    <extension name="tone">
      <condition field="destination_number" expression="^9000$">
        <action application="answer"/>
        <action application="playback" data="tone_stream://%(200,0,440);loops=1"/>
        <action application="hangup"/>
      </condition>
    </extension>
    <extension name="park">
      <condition field="destination_number" expression="^9001$">
        <action application="answer"/>
        <action application="park"/>
      </condition>
    </extension>
    <extension name="inbound_did">
      <condition field="destination_number" expression="^(7495\\d{7})$">
        <action application="set" data="voiceai_project=demo"/>
        <action application="set" data="did=$1"/>
        <action application="set" data="api_on_answer=uuid_audio_fork ${uuid} start ${fork_url} mono 8k voiceai {&quot;callId&quot;:&quot;${uuid}&quot;}"/>
        <action application="answer"/>
        <action application="park"/>
      </condition>
    </extension>
    <extension name="office_hours">
      <condition field="destination_number" expression="^7000$"/>
      <condition wday="2-6" time-of-day="09:00-18:00">
        <action application="set" data="route=open"/>
        <action application="answer"/>
        <action application="park"/>
        <anti-action application="set" data="route=closed"/>
        <anti-action application="hangup" data="USER_BUSY"/>
      </condition>
    </extension>
    <extension name="operator">
      <condition field="destination_number" expression="^8000$">
        <action application="set" data="hangup_after_bridge=true"/>
        <action application="bridge" data="user/1001"/>
      </condition>
    </extension>
  </context>
</include>
"""

GATEWAY = """<include>
  <gateway name="example.com">
    <param name="username" value="joeuser"/>
    <param name="password" value="secret"/>
    <param name="realm" value="example.com"/>
    <param name="register" value="false"/>
  </gateway>
</include>
"""


@pytest.fixture()
def sim(tmp_path: Path):
    dp = tmp_path / "dialplan"
    dp.mkdir()
    (dp / "test.xml").write_text(DIALPLAN)
    gw = tmp_path / "gateways"
    gw.mkdir()
    (gw / "example.xml").write_text(GATEWAY)
    s = FsSim(dialplan_dir=str(dp), gateway_dir=str(gw), temp_dir=str(tmp_path / "tmp"),
              heartbeat_interval=None, tz="UTC").start()
    os.makedirs(s.temp_dir, exist_ok=True)
    s.global_vars["fork_url"] = ""
    yield s
    s.stop()


@pytest.fixture()
def ws():
    server = WsServer()
    yield server
    server.close()


def norm_api(body: bytes) -> str:
    text = body.decode()
    text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<uuid>", text)
    return re.sub(r"\d+", "<n>", text)


# --------------------------------------------------------------------------- tests: protocol
@needs_captures
def test_api_replies_are_shaped_like_the_capture(sim: FsSim) -> None:
    cap = parse_capture("esl_api_session.txt")
    recv = [m for m in cap if m["dir"] == "recv"]
    sends = [m["command"] for m in cap if m["dir"] == "send"]
    c = EslClient(sim.port)
    # greeting and auth: byte for byte
    assert c.greeting[2] == b"Content-Type: auth/request\n\n"
    assert c.auth_reply[2] == b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n"
    cap_replies = dict(zip([s for s in sends if s != "auth ClueCon"], recv[2:]))
    for command in ("api status", "api show channels as json", "api sofia status",
                    "api sofia status gateway nosuchgw", "api uuid_kill 00000000-0000-0000-0000-000000000000",
                    "api version", "api global_getvar domain"):
        expected = cap_replies[command]
        headers, body, raw = c.command(command)
        assert list(headers) == [k for k, _ in expected["headers"]], command
        assert headers["Content-Type"] == "api/response"
        assert int(headers["Content-Length"]) == len(body)
        if command == "api status":
            assert norm_api(body) == norm_api(expected["body"])
        else:
            assert body == expected["body"], command
    # originate (sync) and bgapi
    headers, body, _ = c.command("api originate {origination_caller_id_number=79991234567,"
                                 "origination_uuid=11111111-2222-3333-4444-555555555555}"
                                 "loopback/9001/public &park")
    assert body == b"+OK 11111111-2222-3333-4444-555555555555\n"
    headers, body, raw = c.command("bgapi originate {originate_timeout=5}sofia/external/555@127.0.0.1:5999 &park")
    cap_bg = cap_replies["bgapi originate {originate_timeout=5}sofia/external/555@127.0.0.1:5999 &park"]
    assert list(headers) == [k for k, _ in cap_bg["headers"]] == ["Content-Type", "Reply-Text", "Job-UUID"]
    assert headers["Reply-Text"] == f"+OK Job-UUID: {headers['Job-UUID']}"
    assert norm_api(raw) == norm_api(b"Content-Type: command/reply\nReply-Text: +OK Job-UUID: "
                                     b"79647570-28ab-4904-a1c1-c4c3cfc98887\nJob-UUID: "
                                     b"79647570-28ab-4904-a1c1-c4c3cfc98887\n\n")
    assert c.api("uuid_send_dtmf 11111111-2222-3333-4444-555555555555 5#") == \
        b"+OK 11111111-2222-3333-4444-555555555555 sent DTMF 5#.\n"
    assert c.api("uuid_send_dtmf 00000000-0000-0000-0000-000000000009 1") == b"-ERR Cannot locate session!\n"
    assert c.api("hupall NORMAL_CLEARING") == b"+OK hangup all channels with cause NORMAL_CLEARING\n"
    assert c.api("nosuchcommand foo") == b"-ERR nosuchcommand Command not found!\n"
    assert c.api("reloadxml") == b"+OK [Success]\n"
    c.close()


@needs_captures
def test_show_channels_json_has_the_captured_columns(sim: FsSim) -> None:
    cap = parse_capture("esl2_api_session.txt")
    captured = next(json.loads(m["body"]) for m in cap if m["dir"] == "recv" and m["body"].startswith(b'{"row_count":2'))
    cap_keys = list(captured)
    cap_cols = list(captured["rows"][0])
    call = sim.inbound_call(caller="79990001122", destination="9001")
    call.wait_for("CHANNEL_PARK")
    c = EslClient(sim.port)
    body = c.api("show channels as json")
    assert not body.endswith(b"\n")  # like the capture: no newline after a non-empty list
    data = json.loads(body)
    assert list(data) == cap_keys and data["row_count"] == 1
    assert list(data["rows"][0]) == cap_cols
    row = data["rows"][0]
    assert row["uuid"] == call.uuid and row["state"] == "CS_EXECUTE" and row["application"] == "park"
    assert row["callstate"] == "ACTIVE" and row["dest"] == "9001" and row["context"] == "public"
    c.close()


def test_auth_failure_and_exit_disconnect_like_freeswitch(sim: FsSim) -> None:
    c = EslClient(sim.port, password=None)
    headers, _, raw = c.command("auth wrong")
    assert raw == b"Content-Type: command/reply\nReply-Text: -ERR invalid\n\n"
    headers, body, _ = c.read_message()
    assert headers["Content-Type"] == "text/disconnect-notice"
    assert body == b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
    with pytest.raises((ConnectionError, OSError)):
        c.read_message()
    c2 = EslClient(sim.port)
    assert c2.command("event json CHANNEL_CREATE")[0]["Reply-Text"] == "+OK event listener enabled json"
    assert c2.command("noevents")[0]["Reply-Text"] == "+OK no longer listening for events"
    assert c2.command("filter Unique-ID abc")[0]["Reply-Text"] == "+OK filter added. [Unique-ID]=[abc]"
    assert c2.command("exit")[0]["Reply-Text"] == "+OK bye"
    assert c2.read_message()[0]["Content-Type"] == "text/disconnect-notice"
    c2.close()


def test_url_encoding_matches_switch_url_encode() -> None:
    assert url_encode("tone_stream://%(500,0,440);loops=10") == "tone_stream%3A//%25(500,0,440)%3Bloops%3D10"
    assert url_encode("{originate_timeout=10,x=1}sofia/external/100@127.0.0.1:5070 &park") == \
        "%7Boriginate_timeout%3D10,x%3D1%7Dsofia/external/100%40127.0.0.1%3A5070%20%26park"
    assert url_encode("#") == "%23" and url_encode("fd00::2") == "fd00%3A%3A2"
    assert url_encode("1.10.12-release+git~x") == "1.10.12-release%2Bgit~x"


# --------------------------------------------------------------------------- tests: events
def _collect(c: EslClient, uuid: str, name: str, timeout: float = 5.0, **want: str):
    return c.wait_event(lambda m: ev_name(m) == name and dict(ev_headers(m)).get("Unique-ID") == uuid
                        and all(dict(ev_headers(m)).get(k.replace("_", "-")) == v for k, v in want.items()),
                        timeout)


@needs_captures
@pytest.mark.parametrize("fmt", ["plain", "json"])
def test_inbound_call_event_headers_match_capture(sim: FsSim, fmt: str) -> None:
    cap = captured_events("esl_events_plain.txt")
    uid = "3513ff65-c016-4cf4-a8fc-d941cdebd93c"  # captured inbound SIP call to 9000
    c = EslClient(sim.port)
    assert c.command(f"event {fmt} ALL")[0]["Reply-Text"] == f"+OK event listener enabled {fmt}"
    call = sim.inbound_call(caller="sipp", destination="9000", caller_name="sipp")
    for name, want in (("CHANNEL_CREATE", {}), ("CHANNEL_ANSWER", {}), ("PLAYBACK_START", {}),
                       ("PLAYBACK_STOP", {}), ("CHANNEL_HANGUP_COMPLETE", {}), ("CHANNEL_DESTROY", {})):
        ours = ev_headers(_collect(c, call.uuid, name))
        theirs = find_captured(cap, name, Unique_ID=uid)
        assert non_var_names(ours) == non_var_names(theirs), name
        assert ours[0][0] == "Event-Name" and dict(ours)["Event-Calling-File"] == dict(theirs)["Event-Calling-File"]
        if name == "CHANNEL_CREATE":
            # SIPp sent a Subject header, which real carriers do not: sip_subject is SIPp's.
            assert [k for k, _ in ours if k.startswith("variable_")] == \
                [k for k, _ in theirs if k.startswith("variable_") and k != "variable_sip_subject"]
        if name == "CHANNEL_HANGUP_COMPLETE":
            theirs_vars = {k for k, _ in theirs if k.startswith("variable_")}
            ours_vars = {k for k, _ in ours if k.startswith("variable_")}
            app_specific = {"variable_outside_call", "variable_RFC2822_DATE", "variable_export_vars",
                            "variable_sip_cseq", "variable_sip_to_tag", "variable_sip_subject"}
            assert theirs_vars - app_specific <= ours_vars
            d = dict(ours)
            assert d["Hangup-Cause"] == "NORMAL_CLEARING" and d["variable_billsec"] in ("0", "1")
            assert d["variable_sip_hangup_disposition"] == "send_bye"
            assert [k for k, _ in ours].count("Hangup-Cause") == 2  # as captured
    # the captured lifecycle order for this call
    names = [e.name for e in call.events if e.name not in ("CODEC",)]
    cap_names = [dict(e)["Event-Name"] for e in cap if dict(e).get("Unique-ID") == uid
                 and dict(e)["Event-Name"] != "CODEC"]
    ours_no_app = [n for n in names if n not in ("CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE")]
    cap_no_app = [n for n in cap_names if n not in ("CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE")]
    assert ours_no_app == cap_no_app
    c.close()


@needs_captures
def test_playback_broadcast_break_and_dtmf_like_capture(sim: FsSim) -> None:
    cap = captured_events("esl2_events_plain.txt")
    c = EslClient(sim.port)
    c.command("event plain ALL")
    call = sim.inbound_call(caller="79990001122", destination="9001")
    call.wait_for("CHANNEL_PARK")
    assert c.api(f"uuid_broadcast {call.uuid} tone_stream://%(500,0,440);loops=10 aleg") == b"+OK Message sent\n"
    start = _collect(c, call.uuid, "PLAYBACK_START")
    d = dict(ev_headers(start))
    assert d["Playback-File-Type"] == "tone_stream"
    assert b"Playback-File-Path: tone_stream%3A//%25(500,0,440)%3Bloops%3D10\n" in start[1]
    time.sleep(0.3)
    assert c.api(f"uuid_break {call.uuid} all") == b"+OK\n"
    stop = _collect(c, call.uuid, "PLAYBACK_STOP")
    theirs = find_captured(cap, "PLAYBACK_STOP", Unique_ID="aaaaaaaa-0000-0000-0000-000000000001")
    assert dict(ev_headers(stop))["Playback-Status"] == "break" == dict(theirs)["Playback-Status"]
    assert [k for k, _ in ev_headers(stop)][-3:] == [k for k, _ in theirs][-3:]
    complete = _collect(c, call.uuid, "CHANNEL_EXECUTE_COMPLETE", Application="playback")
    assert dict(ev_headers(complete))["Application-Response"] == "FILE PLAYED"
    private = c.wait_event(lambda m: b"Event-Name: PRIVATE_COMMAND\n" in m[1], 5)
    assert struct_names(ev_headers(private)) == struct_names(find_captured(cap, "PRIVATE_COMMAND"))
    pb = call.heard[-1]
    assert pb.broken and pb.reason == "break" and 200 <= pb.heard_ms < 2000
    assert len(pb.pcm) == pb.heard_ms * 16  # L16 8 kHz
    # DTMF from the caller, `#` encoded %23 as captured
    call.send_dtmf("5#")
    d5 = _collect(c, call.uuid, "DTMF", DTMF_Digit="5")
    dh = _collect(c, call.uuid, "DTMF", DTMF_Digit="#")
    assert b"DTMF-Digit: %23\n" in dh[1]
    theirs_dtmf = find_captured(cap, "DTMF")
    assert [k for k, _ in ev_headers(d5)][-3:] == [k for k, _ in theirs_dtmf][-3:]
    assert non_var_names(ev_headers(d5))[:13] == non_var_names(theirs_dtmf)[:13]
    # uuid_kill with a cause, as in the capture
    assert c.api(f"uuid_kill {call.uuid} USER_BUSY") == b"+OK\n"
    hc = _collect(c, call.uuid, "CHANNEL_HANGUP_COMPLETE")
    assert dict(ev_headers(hc))["variable_hangup_cause"] == "USER_BUSY"
    assert dict(ev_headers(hc))["variable_digits_dialed"] == "5#"
    c.close()


@needs_captures
@pytest.mark.parametrize("outcome,cause,number", [
    ("busy", "USER_BUSY", "200"), ("no_answer", "NO_ANSWER", "300"),
    ("failed", "NORMAL_TEMPORARY_FAILURE", "555"), ("rejected", "CALL_REJECTED", "603"),
    ("unallocated", "UNALLOCATED_NUMBER", "404"),
])
def test_originate_failures_match_capture(sim: FsSim, outcome: str, cause: str, number: str) -> None:
    cap = captured_events("esl2_events_plain.txt") + captured_events("esl_events_plain.txt")
    sim.set_behavior(number, outcome, ring_ms=50)
    c = EslClient(sim.port)
    c.command("event json ALL")
    headers, _, _ = c.command(f"bgapi originate {{originate_timeout=1}}sofia/external/{number}@127.0.0.1:5071 &park")
    job = headers["Job-UUID"]
    bg = c.wait_event(lambda m: ev_name(m) == "BACKGROUND_JOB" and dict(ev_headers(m))["Job-UUID"] == job, 5)
    bgd = dict(ev_headers(bg))
    assert bgd["_body"] == f"-ERR {cause}\n"
    assert non_var_names(ev_headers(bg)) == non_var_names(find_captured(cap, "BACKGROUND_JOB"))
    leg = sim.calls[-1]
    leg.wait_hangup()
    names = [e.name for e in leg.events]
    if outcome in ("busy", "failed"):
        captured_uuid = {"busy": "639d66bf-fca6-4ec2-b8d2-b3534942f805",
                         "failed": "03ebdf04-2509-4086-8c58-5e37666b70ad"}[outcome]
        cap_names = [dict(e)["Event-Name"] for e in cap if dict(e).get("Unique-ID") == captured_uuid]
        assert names == cap_names
        theirs = find_captured(cap, "CHANNEL_HANGUP_COMPLETE", Unique_ID=captured_uuid)
        ours = leg.events[names.index("CHANNEL_HANGUP_COMPLETE")].headers
        assert non_var_names(ours) == non_var_names(theirs)
        assert [k for k, _ in ours if k.startswith("variable_")] == [k for k, _ in theirs if k.startswith("variable_")]
    if outcome == "no_answer":
        cap_names = [dict(e)["Event-Name"] for e in cap if dict(e).get("Unique-ID") == "dd561930-b764-49fc-8168-643cebadd816"]
        assert names == cap_names
    assert leg.hangup_cause == cause
    # synchronous api originate gives the same reply
    assert c.api(f"originate {{originate_timeout=1}}sofia/external/{number}@127.0.0.1:5071 &park") == f"-ERR {cause}\n".encode()
    c.close()


@needs_captures
def test_originate_answer_runs_app_with_captured_sequence(sim: FsSim) -> None:
    cap = captured_events("esl_events_plain.txt")
    sim.set_behavior("100", "answer", ring_ms=50)
    c = EslClient(sim.port)
    c.command("event plain ALL")
    headers, _, _ = c.command("bgapi originate {originate_timeout=10,origination_caller_id_number=74950000000}"
                              "sofia/external/100@127.0.0.1:5070 &park")
    bg = c.wait_event(lambda m: ev_name(m) == "BACKGROUND_JOB", 5)
    body = dict(ev_headers(bg))
    job_body = plain_event(bg[1])[1].decode()
    assert re.fullmatch(r"\+OK [0-9a-f-]{36}\n", job_body)
    leg_uuid = job_body.split()[1]
    leg = sim.get_call(leg_uuid)
    leg.wait_for("CHANNEL_PARK")
    uid = "74a2604e-4125-48cd-8df5-44a33bab5815"
    cap_names = [dict(e)["Event-Name"] for e in cap if dict(e).get("Unique-ID") == uid]
    cap_names = cap_names[:cap_names.index("CHANNEL_PARK") + 1]
    assert [e.name for e in leg.events] == cap_names
    for name in ("CHANNEL_CREATE", "CHANNEL_PROGRESS", "CHANNEL_ANSWER", "CALL_UPDATE", "CHANNEL_PARK"):
        ours = next(e.headers for e in leg.events if e.name == name)
        theirs = find_captured(cap, name, Unique_ID=uid)
        assert non_var_names(ours) == non_var_names(theirs), name
    assert leg.variables["origination_caller_id_number"] == "74950000000"
    assert body["Job-Command"] == "originate"
    sim.api(f"uuid_kill {leg.uuid}")
    hc = leg.wait_hangup()
    theirs = find_captured(cap, "CHANNEL_HANGUP_COMPLETE", Unique_ID=uid)
    assert [k for k, _ in hc.headers if k.startswith("variable_")] == \
        [k for k, _ in theirs if k.startswith("variable_")]
    c.close()


# --------------------------------------------------------------------------- tests: greenswitch
def test_greenswitch_connects_and_receives_events(sim: FsSim) -> None:
    gevent = pytest.importorskip("gevent")
    greenswitch = pytest.importorskip("greenswitch")
    conn = greenswitch.InboundESL(host="127.0.0.1", port=sim.port, password="ClueCon")
    conn.connect()
    got: list[Any] = []
    conn.register_handle("CHANNEL_CREATE", lambda ev: got.append(("create", ev.headers)))
    conn.register_handle("mod_audio_fork::connect", lambda ev: got.append(("fork", ev.headers)))
    conn.register_handle("BACKGROUND_JOB", lambda ev: got.append(("job", ev.headers, getattr(ev, "data", None))))
    reply = conn.send("event plain CHANNEL_CREATE BACKGROUND_JOB CUSTOM mod_audio_fork::connect")
    assert reply.headers["Reply-Text"] == "+OK event listener enabled plain"
    status = conn.send("api status")
    assert status.data.startswith("UP ")
    call = sim.inbound_call(caller="79161234567", destination="9001")
    deadline = time.monotonic() + 5
    while not any(g[0] == "create" for g in got) and time.monotonic() < deadline:
        gevent.sleep(0.02)
    create = next(g[1] for g in got if g[0] == "create")
    assert create["Unique-ID"] == call.uuid and create["Caller-Caller-ID-Number"] == "79161234567"
    assert create["variable_sip_from_uri"] == "79161234567@127.0.0.1:5061"  # unquoted by greenswitch
    conn.send("bgapi status")
    deadline = time.monotonic() + 5
    while not any(g[0] == "job" for g in got) and time.monotonic() < deadline:
        gevent.sleep(0.02)
    assert any(g[0] == "job" for g in got)
    conn.stop()


# --------------------------------------------------------------------------- tests: audio fork
@needs_captures
def test_inbound_call_audio_fork_metadata_frames_and_play_audio(sim: FsSim, ws: WsServer, tmp_path: Path) -> None:
    cap = captured_events("esl_events_plain.txt")
    sim.global_vars["fork_url"] = ws.url
    c = EslClient(sim.port)
    c.command("event plain ALL")
    wav = write_wav(tmp_path / "caller.wav", 300)
    call = sim.inbound_call(caller="79161234567", destination="74951234567", audio=[100, str(wav)])
    conn = ws.wait_conn()
    assert conn.path == "/audio" and "audio.drachtio.org" in conn.requested_protocols
    connect = _collect(c, call.uuid, "mod_audio_fork::connect")
    theirs = find_captured(cap, "mod_audio_fork::connect")
    assert struct_names(ev_headers(connect)) == struct_names(theirs)
    bug = _collect(c, call.uuid, "MEDIA_BUG_START")
    assert dict(ev_headers(bug))["Media-Bug-Function"] == "voiceai"
    assert call.variables["did"] == "74951234567"
    conn.wait(lambda cn: len(cn.binaries()) >= 40, 5)
    assert conn.texts()[0] == json.dumps({"callId": call.uuid}, separators=(",", ":"))
    assert conn.messages[0][1] == 1  # metadata comes first
    frames = conn.binaries()
    assert all(len(p) == 320 for _, p in frames)
    span = frames[-1][0] - frames[0][0]
    rate = (len(frames) - 1) / span
    assert 35 <= rate <= 70, rate  # ~50 frames/s, generous bounds
    # the caller's speech (440 Hz after 100 ms of silence) is in the stream
    assert any(max(array("h", p)) > 4000 for _, p in frames)
    # playAudio -> file + play_audio event with the captured body layout
    pcm = array("h", [1000] * 8000).tobytes()
    conn.send_json({"type": "playAudio", "data": {"audioContentType": "raw", "sampleRate": 8000,
                                                  "audioContent": base64.b64encode(pcm).decode(),
                                                  "textContent": "тест"}})
    ev = _collect(c, call.uuid, "mod_audio_fork::play_audio")
    inner_headers, payload = plain_event(ev[1])
    assert inner_headers[-1] == ("Content-Length", str(len(payload)))  # inner length, as captured
    data = json.loads(payload)
    assert list(data) == ["audioContentType", "sampleRate", "textContent", "file"]
    assert data["file"] == os.path.join(sim.temp_dir, f"{call.uuid}_0.tmp.r8")
    assert Path(data["file"]).read_bytes() == pcm
    assert payload.decode() == '{"audioContentType":"raw","sampleRate":8000,"textContent":"тест","file":"%s"}' % data["file"]
    theirs = find_captured(cap, "mod_audio_fork::play_audio")
    assert struct_names(ev_headers(ev)) == struct_names(theirs)
    # the app plays it; killAudio breaks it
    c.api(f"uuid_broadcast {call.uuid} {data['file']} aleg")
    _collect(c, call.uuid, "PLAYBACK_START")
    time.sleep(0.2)
    conn.send_json({"type": "killAudio"})
    _collect(c, call.uuid, "mod_audio_fork::kill_audio")
    stop = _collect(c, call.uuid, "PLAYBACK_STOP")
    assert dict(ev_headers(stop))["Playback-Status"] == "break"
    assert call.heard[-1].broken and call.heard[-1].heard_ms < 1000
    conn.send_json({"type": "transcription", "data": {"text": "привет"}})
    tr = _collect(c, call.uuid, "mod_audio_fork::transcription")
    assert tr[1].endswith('{"text":"привет"}'.encode())
    stats = call.fork_stats
    assert stats["frames_sent"] >= 40 and stats["frame_bytes"] == 320
    call.hangup()
    _collect(c, call.uuid, "MEDIA_BUG_STOP")
    conn.wait(lambda cn: cn.closed, 5)
    assert "mod_audio_fork::disconnect" not in call.event_names()  # as captured: closed by us
    c.close()


def test_fork_connect_failed_far_end_close_and_bidirectional(sim: FsSim, ws: WsServer) -> None:
    call = sim.inbound_call(caller="79161234567", destination="9001")
    call.wait_for("CHANNEL_PARK")
    closed_port = socket.socket()
    closed_port.bind(("127.0.0.1", 0))
    dead_url = f"ws://127.0.0.1:{closed_port.getsockname()[1]}/x"
    closed_port.close()
    assert sim.api(f"uuid_audio_fork {call.uuid} start {dead_url} mono 8k") == "+OK Success\n"
    ev = call.wait_for("mod_audio_fork::connect_failed")
    assert json.loads(ev.body)["reason"]
    assert sim.api(f"uuid_audio_fork {call.uuid} stop") == "+OK Success\n"
    call.wait_for("MEDIA_BUG_STOP")
    # bidirectional: binary frames from the app are what the caller hears; stop_play clears
    sim.bidirectional = True
    sim.bidirectional_rate = 8000
    assert sim.api(f"uuid_audio_fork {call.uuid} start {ws.url} mono 16k bot {{\"a\":1}}") == "+OK Success\n"
    conn = ws.wait_conn()
    conn.wait(lambda cn: len(cn.binaries()) >= 3, 5)
    assert conn.texts()[0] == '{"a":1}'
    assert all(len(p) == 640 for _, p in conn.binaries())  # 16k: 640 bytes per 20 ms
    conn.send_binary(b"\x01\x00" * 8000)  # 1 s of audio
    call.wait_for(lambda c: len(c.received_stream_audio) == 16000, 3)
    time.sleep(0.2)
    assert sim.api(f"uuid_audio_fork {call.uuid} stop_play bot") == "+OK Success\n"
    heard = call.fork.stream_heard()
    assert 800 <= len(heard) < 16000  # 50..1000 ms heard before the clear
    # far end closes -> mod_audio_fork::disconnect
    conn.close()
    call.wait_for("mod_audio_fork::disconnect")
    call.hangup()
    call.wait_hangup()


def test_uuid_record_writes_caller_audio(sim: FsSim, tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "speech.wav", 400)
    call = sim.inbound_call(caller="79161234567", destination="9001", audio=str(wav))
    call.wait_for("CHANNEL_PARK")
    out = tmp_path / "rec" / "call.wav"
    assert sim.api(f"uuid_record {call.uuid} start {out}") == "+OK Success\n"
    call.wait_for("RECORD_START")
    time.sleep(0.5)
    assert sim.api(f"uuid_record {call.uuid} stop {out}") == "+OK Success\n"
    stop = call.wait_for("RECORD_STOP")
    assert stop.get("Record-File-Path") == str(out)
    with wave.open(str(out)) as w:
        assert w.getframerate() == 8000 and w.getnchannels() == 1
        frames = array("h", w.readframes(w.getnframes()))
    assert 0.3 <= len(frames) / 8000 <= 1.0
    assert max(frames) > 4000  # the caller's 440 Hz tone was recorded
    sim.api(f"uuid_kill {call.uuid}")
    call.wait_hangup()


# --------------------------------------------------------------------------- tests: dialplan & control
@pytest.mark.parametrize("when,expected", [
    (datetime(2026, 11, 24, 10, 30, tzinfo=timezone.utc), "open"),    # Tuesday 10:30
    (datetime(2026, 11, 24, 18, 30, tzinfo=timezone.utc), "closed"),  # after hours
    (datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc), "closed"),   # Sunday (wday 1)
])
def test_time_of_day_conditions(sim: FsSim, when: datetime, expected: str) -> None:
    sim.now = lambda: when
    call = sim.inbound_call(caller="79161234567", destination="7000")
    if expected == "open":
        call.wait_for("CHANNEL_PARK")
        assert call.variables["route"] == "open"
        call.hangup()
        call.wait_hangup()
    else:
        hc = call.wait_hangup()
        assert hc.get("Hangup-Cause") == "USER_BUSY"
        assert hc.get("variable_route") == "closed"


def test_timezone_variable_shifts_time_conditions(sim: FsSim) -> None:
    sim.now = lambda: datetime(2026, 11, 24, 7, 30, tzinfo=timezone.utc)  # 10:30 in Moscow
    call = sim.inbound_call(caller="1", destination="7000", variables={"timezone": "Europe/Moscow"})
    call.wait_for("CHANNEL_PARK")
    assert call.variables["route"] == "open"
    call.hangup()


def test_transfer_bridge_to_operator_and_whisper(sim: FsSim) -> None:
    sim.set_behavior("user/1001", "answer", ring_ms=50)
    call = sim.inbound_call(caller="79161234567", destination="9001")
    call.wait_for("CHANNEL_PARK")
    assert sim.api(f"uuid_transfer {call.uuid} 8000 XML public") == "+OK\n"
    bridge = call.wait_for("CHANNEL_BRIDGE")
    b_uuid = bridge.get("Bridge-B-Unique-ID")
    assert bridge.get("Other-Type") == "originatee" and bridge.get("Other-Leg-Unique-ID") == b_uuid
    assert call.variables["destination_number" if False else "bridge_uuid"] == b_uuid
    rows = json.loads(sim.api("show calls as json"))
    assert rows["row_count"] == 1 and rows["rows"][0]["b_uuid"] == b_uuid
    assert sim.api(f"uuid_broadcast {call.uuid} silence_stream://100 bleg") == "+OK Message sent\n"
    b = sim.get_call(b_uuid)
    b.wait_for("PLAYBACK_STOP")
    b.hangup()  # operator hangs up -> hangup_after_bridge ends the call
    call.wait_for("CHANNEL_UNBRIDGE")
    assert call.wait_hangup().get("Hangup-Cause") == "NORMAL_CLEARING"


def test_drop_clients_keeps_calls_and_reconnect_lists_them(sim: FsSim) -> None:
    call = sim.inbound_call(caller="79161234567", destination="9001")
    call.wait_for("CHANNEL_PARK")
    c = EslClient(sim.port)
    c.command("event plain ALL")
    sim.drop_clients()
    with pytest.raises((ConnectionError, OSError)):
        for _ in range(100):
            c.read_message()
    assert call.alive
    c2 = EslClient(sim.port)
    rows = json.loads(c2.api("show channels as json"))
    assert rows["row_count"] == 1 and rows["rows"][0]["uuid"] == call.uuid
    port = sim.port
    sim.restart(down_s=0.1)
    assert sim.port == port and call.alive
    c3 = EslClient(sim.port)
    assert json.loads(c3.api("show channels as json"))["rows"][0]["uuid"] == call.uuid
    c3.close()
    call.hangup()
    call.wait_hangup()


def test_gateways_status_and_registration_failure(sim: FsSim) -> None:
    status = sim.api("sofia status gateway example.com")
    assert "Name    \texample.com\n" in status and "State   \tNOREG\n" in status
    assert sim.api("sofia status gateway nosuch") == "Invalid Gateway!\n"
    n = len(sim.events)
    sim.set_gateway_behavior("example.com", state="FAIL_WAIT", status="DOWN", reason="Forbidden", code=403)
    ev = sim.wait_for_event("sofia::gateway_state", after=n)
    assert (ev.get("Gateway"), ev.get("State"), ev.get("Status"), ev.get("Ping-Status")) == \
        ("example.com", "FAIL_WAIT", "403", "DOWN")
    assert "State   \tFAIL_WAIT\n" in sim.api("sofia status gateway example.com")
    assert sim.api("originate sofia/gateway/example.com/79161234567 &park") == "-ERR GATEWAY_DOWN\n"
    assert sim.api("originate sofia/gateway/nosuch/79161234567 &park") == "-ERR INVALID_GATEWAY\n"
    assert sim.api("sofia profile external killgw example.com") == "+OK gateway marked for deletion.\n"
    assert "example.com" not in sim.api("sofia status")
    assert sim.api("sofia profile external rescan") == "+OK scan complete\n"
    assert "external::example.com" in sim.api("sofia status")


def test_sendmsg_execute_and_uuid_commands(sim: FsSim) -> None:
    call = sim.inbound_call(caller="79161234567", destination="9001")
    call.wait_for("CHANNEL_PARK")
    c = EslClient(sim.port)
    c.sock.sendall(f"sendmsg {call.uuid}\ncall-command: execute\nexecute-app-name: playback\n"
                   f"execute-app-arg: silence_stream://100\n\n".encode())
    assert c.read_reply()[0]["Reply-Text"] == "+OK"
    call.wait_for("PLAYBACK_STOP")
    assert c.api(f"uuid_setvar {call.uuid} foo bar") == b"+OK\n"
    assert c.api(f"uuid_getvar {call.uuid} foo") == b"bar"
    assert c.api(f"uuid_getvar {call.uuid} nope") == b"_undef_"
    assert c.api(f"uuid_exists {call.uuid}") == b"true"
    assert c.api("uuid_exists 123") == b"false"
    c.sock.sendall(f"sendmsg {call.uuid}\ncall-command: hangup\nhangup-cause: CALL_REJECTED\n\n".encode())
    c.read_reply()
    assert call.wait_hangup().get("Hangup-Cause") == "CALL_REJECTED"
    c.close()


@needs_captures
def test_loopback_originate_into_did_with_fork_like_capture(sim: FsSim, ws: WsServer) -> None:
    """The captured call 2: loopback into the DID whose api_on_answer starts the fork."""
    cap = captured_events("esl_events_plain.txt")
    sim.global_vars["fork_url"] = ws.url
    reply = sim.api("originate {origination_caller_id_number=79991234567,"
                    "origination_uuid=11111111-2222-3333-4444-555555555555}loopback/74951234567/public "
                    "&playback(tone_stream://%(1000,0,440);loops=20)")
    assert reply == "+OK 11111111-2222-3333-4444-555555555555\n"
    a = sim.get_call("11111111-2222-3333-4444-555555555555")
    b = a.b_leg
    assert b is not None
    b.wait_for("mod_audio_fork::connect")
    a.wait_for("PLAYBACK_START")
    for uid, call, names in (
            ("08554d99-90e7-4bd6-9849-69e7dd04af7e", b,
             ["CHANNEL_CREATE", "CHANNEL_ANSWER", "MEDIA_BUG_START", "CHANNEL_PARK", "mod_audio_fork::connect"]),
            ("11111111-2222-3333-4444-555555555555", a,
             ["CHANNEL_UUID", "CHANNEL_CREATE", "CHANNEL_ANSWER", "CALL_UPDATE", "PLAYBACK_START"])):
        for name in names:
            ours = call.wait_for(name).headers
            assert non_var_names(ours) == non_var_names(find_captured(cap, name, Unique_ID=uid)), (uid, name)
    # the a-leg's tone is what the fork of the b-leg streams (the data is cut at the first ')')
    assert a.heard[-1].path == "tone_stream://%(1000,0,440"
    conn = ws.wait_conn()
    conn.wait(lambda cn: len(cn.binaries()) >= 10, 5)
    assert any(max(array("h", p)) > 3000 for _, p in conn.binaries())
    assert sim.api("hupall NORMAL_CLEARING") == "+OK hangup all channels with cause NORMAL_CLEARING\n"
    b.wait_hangup()
    a.wait_hangup()
    assert json.loads(sim.api("show channels as json")) == {"row_count": 0}
