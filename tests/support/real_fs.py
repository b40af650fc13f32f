"""Real-FreeSWITCH mode of the telephony end-to-end tests.

When ``VOICEAI_TEST_FS_ESL=host:port:password`` is set, the ``rig`` fixture can drive a real
FreeSWITCH instead of the simulator (``tests/fssim``). This module gives the tests the calls they
make on the simulator, for the subset they use (``inbound_call``, ``set_behavior``, ``get_call``,
``calls``, ``gateways``; on a call ``uuid``, ``hangup``, ``send_dtmf``, ``wait_for``,
``wait_hangup``, ``alive``, ``event_names``, ``variables``, ``heard``, ``recordings``):

- SIPp (``tests/sipp/*.xml``) plays the callers on the external profile, the trunk far ends the
  test gateways point at, and the operator phones registered on the internal profile;
- a plain-socket Event Socket client (no gevent here: the pytest process is not monkey-patched)
  finds call uuids (``show channels as json``), hangs up (``uuid_kill``), injects the caller's
  keys (``uuid_recv_dtmf``) and collects each call's events from its own subscription.

What only the simulator can do (restart FreeSWITCH, move its clock, inspect the audio fork)
skips the test with the reason instead of silently doing nothing. Nothing here has run against a
real FreeSWITCH yet; the pure parts are unit-tested and the SIPp scenarios are checked against
each other over loopback (``tests/test_real_fs_mode.py``). See ``docs/testing.md``.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from array import array
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[2]
SIPP_DIR = ROOT / "tests" / "sipp"
CALLER_PCAP = "caller_audio.pcap"  # read by inbound_caller.xml from SIPp's working directory

ENV_ESL = "VOICEAI_TEST_FS_ESL"
FOREVER_MS = 86_400_000  # "never hang up": SIPp's -recv_timeout for the hold time

# fssim outcome -> (scenario, SIP status it sends); the cause FreeSWITCH derives is the sim's.
TRUNK_SCENARIOS: dict[str, tuple[str, Optional[int]]] = {
    "answer": ("trunk_uas_answer.xml", 200),
    "busy": ("trunk_uas_busy.xml", 486),
    "no_answer": ("trunk_uas_no_answer.xml", None),
    "failed": ("trunk_uas_reject.xml", 503),
    "rejected": ("trunk_uas_reject.xml", 603),
    "unallocated": ("trunk_uas_reject.xml", 404),
    "no_user_response": ("trunk_uas_reject.xml", 480),
}
PHONE_SCENARIOS: dict[str, str] = {
    "answer": "operator_phone_answer.xml",
    "no_answer": "operator_phone_no_answer.xml",
}


class RealModeError(RuntimeError):
    """The real FreeSWITCH or SIPp did not behave as a test needs (with the evidence)."""


def sim_only(feature: str) -> None:
    """Skip the running test: ``feature`` exists only in the simulator."""
    import pytest
    pytest.skip(f"{feature}: simulator only, not possible on a real FreeSWITCH ({ENV_ESL} is set)")


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------

def parse_esl_target(text: str) -> tuple[str, int, str]:
    """``host:port:password`` (host may be ``[v6]``; the password may itself contain ``:``)."""
    text = (text or "").strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"{ENV_ESL}: expected [host]:port:password, got {text!r}")
    else:
        host, sep, rest = text.partition(":")
        if not sep:
            raise ValueError(f"{ENV_ESL}: expected host:port:password, got {text!r}")
    port_text, sep, password = rest.partition(":")
    if not host or not port_text.isdigit() or not sep or not password:
        raise ValueError(f"{ENV_ESL}: expected host:port:password, got {text!r}")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"{ENV_ESL}: port {port} out of range")
    return host, port, password


def local_ip_towards(host: str, port: int = 5080) -> str:
    """The address this machine uses to reach ``host`` (a UDP connect sends no packet)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.connect((host, port))
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


@dataclasses.dataclass(frozen=True)
class RealFsConfig:
    """Everything real mode reads from the environment (see docs/testing.md)."""

    esl_host: str
    esl_port: int
    esl_password: str
    sip_host: str
    local_ip: str
    sipp_path: str = "sipp"
    external_port: int = 5080
    internal_port: int = 5060
    conf_dir: str = "/etc/freeswitch"
    recordings_dir: str = "/var/lib/freeswitch/recordings/voiceai"
    sounds_dir: str = "/usr/share/freeswitch/sounds/voiceai"
    tts_dir: str = "/tmp/voiceai-tts"
    base_port: int = 15060
    audio_ws_host: str = "127.0.0.1"
    audio_ws_port: Optional[int] = None

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> Optional["RealFsConfig"]:
        """None unless VOICEAI_TEST_FS_ESL is set: the simulator stays the default."""
        env = os.environ if environ is None else environ
        target = env.get(ENV_ESL, "").strip()
        if not target:
            return None
        host, port, password = parse_esl_target(target)
        sip_host = env.get("VOICEAI_TEST_FS_SIP_HOST") or host
        audio_port = env.get("VOICEAI_TEST_FS_AUDIO_WS_PORT")
        return cls(
            esl_host=host, esl_port=port, esl_password=password, sip_host=sip_host,
            local_ip=env.get("VOICEAI_TEST_FS_LOCAL_IP") or local_ip_towards(sip_host),
            sipp_path=env.get("VOICEAI_TEST_SIPP") or "sipp",
            external_port=int(env.get("VOICEAI_TEST_FS_EXTERNAL_PORT") or 5080),
            internal_port=int(env.get("VOICEAI_TEST_FS_INTERNAL_PORT") or 5060),
            conf_dir=env.get("VOICEAI_TEST_FS_CONF_DIR") or cls.conf_dir,
            recordings_dir=env.get("VOICEAI_TEST_FS_RECORDINGS_DIR") or cls.recordings_dir,
            sounds_dir=env.get("VOICEAI_TEST_FS_SOUNDS_DIR") or cls.sounds_dir,
            tts_dir=env.get("VOICEAI_TEST_FS_TTS_DIR") or cls.tts_dir,
            base_port=int(env.get("VOICEAI_TEST_SIPP_BASE_PORT") or 15060),
            audio_ws_host=env.get("VOICEAI_TEST_FS_AUDIO_WS_HOST") or "127.0.0.1",
            audio_ws_port=int(audio_port) if audio_port else None,
        )

    @property
    def esl(self) -> str:
        host = f"[{self.esl_host}]" if ":" in self.esl_host else self.esl_host
        return f"{host}:{self.esl_port}:{self.esl_password}"


def real_fs_config() -> Optional[RealFsConfig]:
    """The real-mode configuration from the environment, or None (simulator mode)."""
    return RealFsConfig.from_env()


# --------------------------------------------------------------------------------------------
# Event Socket: framing and a small blocking client
# --------------------------------------------------------------------------------------------

Header = tuple[str, str]


def parse_header_block(text: str, decode: bool = False) -> list[Header]:
    """``Name: value`` lines; plain-event values are URL-encoded (``decode=True``)."""
    headers: list[Header] = []
    for line in text.split("\n"):
        line = line.rstrip("\r")
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        value = value[1:] if value.startswith(" ") else value
        headers.append((name.strip(), unquote(value) if decode else value))
    return headers


def header(headers: Sequence[Header], name: str, default: Optional[str] = None) -> Optional[str]:
    """First value of a header, case-insensitively, as switch_event_get_header."""
    low = name.lower()
    for k, v in headers:
        if k.lower() == low:
            return v
    return default


def parse_plain_event(payload: str) -> Any:
    """A ``text/event-plain`` body into a fssim ``Event`` (same API as the simulator's)."""
    from tests.fssim.events import Event
    head, sep, rest = payload.partition("\n\n")
    headers = parse_header_block(head, decode=True)
    body: Optional[str] = None
    length = header(headers, "Content-Length")
    if sep and length and length.isdigit():
        body = rest.encode("utf-8")[:int(length)].decode("utf-8", "replace")
        headers = [(k, v) for k, v in headers if k != "Content-Length"]
    return Event(name=header(headers, "Event-Name") or "", headers=headers, body=body,
                 subclass=header(headers, "Event-Subclass"))


@dataclasses.dataclass
class EslFrame:
    """One message from FreeSWITCH: outer headers and the body announced by Content-Length."""

    headers: list[Header]
    body: str = ""

    @property
    def content_type(self) -> str:
        return header(self.headers, "Content-Type") or ""

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:
        return header(self.headers, name, default)


class FrameReader:
    """Splits a byte stream into ESL frames (headers, blank line, Content-Length bytes)."""

    def __init__(self, recv: Callable[[int], bytes]) -> None:
        self._recv = recv
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf.extend(data)

    def _fill(self) -> None:
        data = self._recv(65536)
        if not data:
            raise ConnectionError("FreeSWITCH closed the Event Socket")
        self._buf.extend(data)

    def read(self) -> EslFrame:
        while True:
            end = self._buf.find(b"\n\n")
            if end >= 0:
                break
            self._fill()
        head = self._buf[:end].decode("utf-8", "replace")
        del self._buf[:end + 2]
        headers = parse_header_block(head)
        length = int(header(headers, "Content-Length") or 0)
        while len(self._buf) < length:
            self._fill()
        body = bytes(self._buf[:length]).decode("utf-8", "replace")
        del self._buf[:length]
        return EslFrame(headers, body)


class EslClient:
    """A blocking inbound Event Socket connection: ``auth``, then ``api`` or events."""

    def __init__(self, host: str, port: int, password: str, timeout: float = 10.0) -> None:
        self.host, self.port, self.password, self.timeout = host, port, password, timeout
        self.sock: Optional[socket.socket] = None
        self.reader: Optional[FrameReader] = None
        self.lock = threading.Lock()

    def connect(self) -> "EslClient":
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        self.sock = sock
        self.reader = FrameReader(sock.recv)
        greeting = self.reader.read()
        if greeting.content_type != "auth/request":
            raise RealModeError(f"ESL {self.host}:{self.port}: expected auth/request, got {greeting.headers}")
        reply = self.command(f"auth {self.password}")
        if not (reply.get("Reply-Text") or "").startswith("+OK"):
            self.close()
            raise RealModeError(f"ESL {self.host}:{self.port}: authentication refused ({reply.get('Reply-Text')})")
        return self

    def send(self, command: str) -> None:
        assert self.sock is not None, "not connected"
        self.sock.sendall(command.rstrip("\n").encode("utf-8") + b"\n\n")

    def read(self) -> EslFrame:
        assert self.reader is not None, "not connected"
        return self.reader.read()

    def command(self, command: str) -> EslFrame:
        """Send a command and return its ``command/reply`` (events are not expected here)."""
        self.send(command)
        while True:
            frame = self.read()
            if frame.content_type == "command/reply":
                return frame
            if frame.content_type == "text/disconnect-notice":
                raise ConnectionError("FreeSWITCH sent a disconnect notice")

    def api(self, command: str) -> str:
        """``api <command>``: the synchronous reply body (``+OK ...`` / ``-ERR ...`` / data)."""
        with self.lock:
            self.send(f"api {command}")
            while True:
                frame = self.read()
                if frame.content_type == "api/response":
                    return frame.body
                if frame.content_type == "text/disconnect-notice":
                    raise ConnectionError("FreeSWITCH sent a disconnect notice")

    def close(self) -> None:
        """Shut the socket down first, which also wakes a reader blocked in recv()."""
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None


# --------------------------------------------------------------------------------------------
# Parsing FreeSWITCH replies
# --------------------------------------------------------------------------------------------

def parse_channels_json(text: str) -> list[dict[str, str]]:
    """``show channels as json``: ``{"row_count": 0}`` when empty, else ``rows``."""
    text = (text or "").strip()
    if not text.startswith("{"):
        raise RealModeError(f"unexpected 'show channels as json' reply: {text[:200]!r}")
    data = json.loads(text)
    return list(data.get("rows") or [])


def pick_inbound_channel(rows: Iterable[Mapping[str, str]], caller: str, destination: str,
                         taken: Iterable[str] = ()) -> Optional[str]:
    """The uuid of our caller's channel: inbound, from ``caller`` to ``destination``, not taken.

    The destination may differ only by a leading ``+`` (providers send both forms).
    """
    taken = set(taken)
    dest = destination.lstrip("+")
    for row in rows:
        if row.get("uuid") in taken or row.get("direction") != "inbound":
            continue
        cid = row.get("cid_num") or row.get("initial_cid_num") or ""
        row_dest = (row.get("dest") or row.get("initial_dest") or "").lstrip("+")
        if cid == caller and row_dest == dest:
            return row.get("uuid")
    return None


@dataclasses.dataclass(frozen=True)
class GatewayStatus:
    """One gateway line of ``sofia status``."""

    name: str
    profile: str
    data: str
    state: str


def parse_sofia_status(text: str) -> dict[str, GatewayStatus]:
    """Gateways of ``sofia status`` by name (``external::voiceai_x`` -> ``voiceai_x``)."""
    out: dict[str, GatewayStatus] = {}
    for line in (text or "").splitlines():
        parts = [p.strip() for p in line.split("\t")]
        if len(parts) < 4 or parts[1] != "gateway":
            continue
        profile, _, name = parts[0].rpartition("::")
        out[name] = GatewayStatus(name=name, profile=profile, data=parts[2], state=parts[3])
    return out


def parse_uuid_dump_json(text: str) -> dict[str, str]:
    """Channel variables from ``uuid_dump <uuid> json`` (``variable_x`` -> ``x``)."""
    text = (text or "").strip()
    if not text.startswith("{"):
        return {}
    data = json.loads(text)
    return {k[len("variable_"):]: str(v) for k, v in data.items() if k.startswith("variable_")}


def variables_of(event: Any) -> dict[str, str]:
    """``variable_*`` headers of an event (FreeSWITCH adds them to channel events)."""
    return {k[len("variable_"):]: v for k, v in event.headers if k.startswith("variable_")}


def behavior_target(pattern: str) -> tuple[str, str]:
    """What ``set_behavior`` scripts: ``("phone", "1001")`` for ``user/1001@*``, else the trunk."""
    m = re.fullmatch(r"user/([0-9A-Za-z_.-]+)(@.*)?", pattern.strip())
    if m:
        return "phone", m.group(1)
    return "trunk", pattern


# --------------------------------------------------------------------------------------------
# Caller audio: PCMU RTP and RFC 2833 events in a pcap that SIPp's play_pcap_audio replays
# --------------------------------------------------------------------------------------------

DTMF_EVENTS = {**{str(d): d for d in range(10)}, "*": 10, "#": 11, "A": 12, "B": 13, "C": 14, "D": 15}


_ULAW_SEG_END = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)


def ulaw_encode(samples: Iterable[int]) -> bytes:
    """G.711 mu-law of 16-bit linear samples (the Sun reference coder that audioop used)."""
    out = bytearray()
    for s in samples:
        value = max(-32768, min(32767, int(s))) >> 2
        mask = 0xFF
        if value < 0:
            value, mask = -value, 0x7F
        value = min(value, 8159) + 0x21
        seg = next((i for i, end in enumerate(_ULAW_SEG_END) if value <= end), 8)
        code = 0x7F if seg >= 8 else (seg << 4) | ((value >> (seg + 1)) & 0x0F)
        out.append(code ^ mask)
    return bytes(out)


def ulaw_decode(data: bytes) -> list[int]:
    """Inverse of ``ulaw_encode`` (used by the tests to check the round trip)."""
    out = []
    for b in data:
        b = ~b & 0xFF
        sign, exponent, mantissa = b & 0x80, (b >> 4) & 0x07, b & 0x0F
        mag = ((mantissa << 3) + 0x84) << exponent
        out.append(-(mag - 0x84) if sign else mag - 0x84)
    return out


def rtp_packet(seq: int, timestamp: int, ssrc: int, payload_type: int, payload: bytes,
               marker: bool = False) -> bytes:
    """An RTP v2 packet without CSRCs or extensions."""
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | payload_type, seq & 0xFFFF,
                       timestamp & 0xFFFFFFFF, ssrc) + payload


@dataclasses.dataclass(frozen=True)
class RtpOut:
    """One packet of the caller's stream and when (seconds from the start) it is sent."""

    at: float
    data: bytes


def build_rtp_stream(pcm8k: Sequence[int], dtmf: Sequence[tuple[int, str]] = (), ssrc: Optional[int] = None,
                     event_ms: int = 160, gap_ms: int = 100) -> list[RtpOut]:
    """20 ms PCMU packets (payload 0) with RFC 2833 keys (payload 101) at the given offsets.

    ``dtmf`` is ``[(offset_ms, "5#"), ...]``; keys replace the audio while they last, as phones
    do; one event is ``event_ms`` long (updates every 20 ms, three end packets) and keys of one
    group are ``gap_ms`` apart. The stream is at least as long as the last key.
    """
    ssrc = random.getrandbits(32) if ssrc is None else ssrc
    frames: dict[int, tuple[str, Any]] = {}  # 20 ms slot -> ("audio", bytes) | ("dtmf", (code, first, n))
    key_slots: dict[int, tuple[int, int, int]] = {}
    for offset_ms, digits in dtmf:
        slot = offset_ms // 20
        for d in digits:
            code = DTMF_EVENTS.get(d.upper())
            if code is None:
                raise ValueError(f"not a DTMF key: {d!r}")
            n = max(3, event_ms // 20)
            for i in range(n):
                key_slots[slot + i] = (code, slot, i)
            slot += n + max(1, gap_ms // 20)
    total_slots = max(math.ceil(len(pcm8k) / 160), max(key_slots, default=-1) + 1)
    packets: list[RtpOut] = []
    seq = random.getrandbits(16)
    ts0 = random.getrandbits(32)
    for slot in range(total_slots):
        at = slot * 0.020
        if slot in key_slots:
            code, first, i = key_slots[slot]
            n = sum(1 for s, v in key_slots.items() if v[1] == first and v[0] == code)
            duration = (i + 1) * 160
            end = i == n - 1
            payload = struct.pack("!BBH", code, (0x80 if end else 0) | 10, duration)
            repeats = 3 if end else 1
            for _ in range(repeats):
                packets.append(RtpOut(at, rtp_packet(seq, ts0 + first * 160, ssrc, 101, payload, marker=i == 0)))
                seq += 1
            continue
        chunk = list(pcm8k[slot * 160:(slot + 1) * 160])
        chunk += [0] * (160 - len(chunk))
        packets.append(RtpOut(at, rtp_packet(seq, ts0 + slot * 160, ssrc, 0, ulaw_encode(chunk), marker=slot == 0)))
        seq += 1
    return packets


def _ip_checksum(header_bytes: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header_bytes) // 2}H", header_bytes))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def write_pcap(path: os.PathLike[str] | str, packets: Sequence[RtpOut], src: tuple[str, int] = ("10.0.0.1", 6000),
               dst: tuple[str, int] = ("10.0.0.2", 6000), start: float = 1_700_000_000.0) -> None:
    """A libpcap file (Ethernet/IPv4/UDP) of the packets; SIPp rewrites the addresses."""
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    src_ip, dst_ip = socket.inet_aton(src[0]), socket.inet_aton(dst[0])
    for ident, pkt in enumerate(packets):
        udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(pkt.data), 0) + pkt.data
        ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), ident & 0xFFFF, 0, 64, 17, 0,
                                   src_ip, dst_ip))
        ip[10:12] = struct.pack("!H", _ip_checksum(bytes(ip)))
        frame = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + bytes(ip) + udp
        t = start + pkt.at
        sec = int(t)
        usec = int(round((t - sec) * 1_000_000))
        if usec >= 1_000_000:
            sec, usec = sec + 1, usec - 1_000_000
        out += struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame
    Path(path).write_bytes(bytes(out))


def read_pcap_udp_payloads(path: os.PathLike[str] | str) -> list[tuple[float, bytes]]:
    """(time, UDP payload) of an Ethernet/IPv4 pcap written by ``write_pcap`` (for the tests)."""
    data = Path(path).read_bytes()
    if struct.unpack("<I", data[:4])[0] != 0xA1B2C3D4:
        raise ValueError("not a little-endian microsecond pcap")
    pos, out = 24, []
    while pos + 16 <= len(data):
        sec, usec, incl, _orig = struct.unpack("<IIII", data[pos:pos + 16])
        frame = data[pos + 16:pos + 16 + incl]
        pos += 16 + incl
        ihl = (frame[14] & 0x0F) * 4
        out.append((sec + usec / 1e6, frame[14 + ihl + 8:]))
    return out


def caller_pcm8k(audio: Any = None, seconds_if_none: float = 2.0) -> array:
    """The caller's speech as 8 kHz 16-bit samples, from the same ``audio`` forms fssim takes."""
    from tests.fssim.audio import INTERNAL_RATE, resample, segments_to_pcm
    if audio is None:
        return array("h", bytes(2 * int(8000 * seconds_if_none)))
    return resample(segments_to_pcm(audio), INTERNAL_RATE, 8000)


def make_caller_pcap(path: os.PathLike[str] | str, audio: Any = None,
                     dtmf: Sequence[tuple[int, str]] = ()) -> Path:
    """Write what inbound_caller.xml plays: the caller's audio and keys as one RTP stream."""
    write_pcap(path, build_rtp_stream(caller_pcm8k(audio), dtmf))
    return Path(path)


# --------------------------------------------------------------------------------------------
# Ports and SIPp processes
# --------------------------------------------------------------------------------------------

def udp_port_free(host: str, port: int) -> bool:
    """True when ``port`` can be bound on ``host`` (UDP) right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def udp_port_bound(port: int) -> Optional[bool]:
    """Whether some socket is bound to UDP ``port`` (from /proc/net/udp*), None off Linux.

    Unlike trying to bind it, looking does not race the process that is about to bind it.
    """
    found = None
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        found = bool(found)
        for line in lines:
            local = line.split()[1]
            if int(local.rsplit(":", 1)[1], 16) == port:
                return True
    return found


def wait_udp_bound(run: "SippRun", port: int, timeout: float = 3.0) -> None:
    """Wait until a SIPp we started listens on ``port`` (or has died, which the caller checks)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and run.alive:
        bound = udp_port_bound(port)
        if bound is None:  # no /proc: give it a moment
            time.sleep(0.3)
            return
        if bound:
            return
        time.sleep(0.02)


class PortAllocator:
    """Hands out UDP ports from ``start`` upwards that are free on ``host`` and not yet given.

    A media port is the even start of four free ports: SIPp's ``-mp`` binds it and +2 (audio and
    video RTP), and the RTCP ports after each stay free for the peer's habits.
    """

    def __init__(self, host: str, start: int = 15060, end: int = 65000,
                 is_free: Callable[[str, int], bool] = udp_port_free) -> None:
        self.host, self.start, self.end, self.is_free = host, start, end, is_free
        self.given: set[int] = set()
        self._next = start
        self._lock = threading.Lock()

    def take(self, media: bool = False) -> int:
        """One SIP/control port, or with ``media`` the even start of four free ports."""
        with self._lock:
            port = self._next
            while port < self.end:
                if media and port % 2:
                    port += 1
                    continue
                wanted = tuple(range(port, port + 4)) if media else (port,)
                if all(p not in self.given and self.is_free(self.host, p) for p in wanted):
                    self.given.update(wanted)
                    self._next = wanted[-1] + 1
                    return port
                port += 1
            raise RealModeError(f"no free UDP port between {self.start} and {self.end} on {self.host}")


def sipp_command(sipp: str, scenario: os.PathLike[str] | str, *, local_ip: str, port: int,
                 remote: Optional[str] = None, service: Optional[str] = None,
                 keys: Optional[Mapping[str, Any]] = None, calls: Optional[int] = None,
                 media_port: Optional[int] = None, rtp_echo: bool = False,
                 recv_timeout_ms: Optional[int] = None, control_port: Optional[int] = None,
                 auth: Optional[tuple[str, str]] = None, logs: Optional[os.PathLike[str] | str] = None,
                 timeout_s: Optional[int] = None) -> list[str]:
    """The SIPp command line for one of our scenarios (argument list, no shell).

    ``remote`` makes it a UAC (``host:port``); ``keys`` become ``-key name value``;
    ``recv_timeout_ms`` is the hold/talk time of the scenarios that wait for BYE;
    ``logs`` is a file prefix for SIPp's error, message and <log> traces.
    """
    cmd = [sipp]
    if remote:
        cmd.append(remote)
    cmd += ["-sf", str(scenario), "-i", local_ip, "-p", str(port), "-nostdin"]
    if service is not None:
        cmd += ["-s", str(service)]
    for name, value in (keys or {}).items():
        cmd += ["-key", str(name), str(value)]
    if media_port is not None:
        cmd += ["-mi", local_ip, "-mp", str(media_port)]
    if rtp_echo:
        cmd.append("-rtp_echo")
    if recv_timeout_ms is not None:
        cmd += ["-recv_timeout", str(int(recv_timeout_ms))]
    if calls is not None:
        cmd += ["-m", str(calls)]
    if control_port is not None:
        cmd += ["-cp", str(control_port)]
    if auth is not None:
        cmd += ["-au", auth[0], "-ap", auth[1]]
    if timeout_s is not None:
        cmd += ["-timeout", f"{int(timeout_s)}s", "-timeout_error"]
    if logs is not None:
        prefix = str(logs)
        cmd += ["-trace_err", "-error_file", f"{prefix}.errors.log", "-trace_msg", "-message_file",
                f"{prefix}.messages.log", "-trace_logs", "-log_file", f"{prefix}.logs.log"]
    return cmd


class SippRun:
    """One SIPp process started by the tests: its command, working directory and logs."""

    def __init__(self, name: str, cmd: list[str], cwd: Path, ports: Sequence[int] = ()) -> None:
        self.name, self.cmd, self.cwd, self.ports = name, cmd, cwd, tuple(ports)
        self.proc: Optional[subprocess.Popen] = None
        self.output = cwd / f"{name}.out"

    def start(self) -> "SippRun":
        self.cwd.mkdir(parents=True, exist_ok=True)
        (self.cwd / f"{self.name}.cmd").write_text(" ".join(self.cmd) + "\n")
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(self.cmd, cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> Optional[int]:
        return None if self.proc is None else self.proc.poll()

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, grace: float = 2.0) -> None:
        """SIGTERM this process (only it: its own session), then SIGKILL if it lingers."""
        if not self.alive:
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def evidence(self, limit: int = 3000) -> str:
        """The tail of SIPp's output and error log, for assertion messages."""
        parts = [f"$ {' '.join(self.cmd)} (cwd {self.cwd}, rc {self.returncode})"]
        for path in [self.output, *sorted(self.cwd.glob(f"{self.name}*.errors.log"))]:
            if path.exists():
                text = path.read_text(errors="replace")
                parts.append(f"--- {path.name}\n{text[-limit:]}")
        return "\n".join(parts)


# --------------------------------------------------------------------------------------------
# Calls
# --------------------------------------------------------------------------------------------

class RealCall:
    """Test-side handle of one FreeSWITCH channel, with the SimCall calls the e2e tests use."""

    def __init__(self, fs: "RealFreeSwitch", uuid: str, sipp: Optional[SippRun] = None) -> None:
        self.fs = fs
        self._uuid = uuid
        self.sipp = sipp

    def __repr__(self) -> str:
        return f"<RealCall {self.uuid}>"

    @property
    def uuid(self) -> str:
        return self._uuid

    # ---- what FreeSWITCH told us ----
    @property
    def events(self) -> list[Any]:
        return self.fs.events_of(self.uuid)

    def event_names(self) -> list[str]:
        """Event names (CUSTOM ones by subclass), as SimCall.event_names."""
        return [e.subclass or e.name for e in self.events]

    @property
    def hung_up(self) -> bool:
        return any(e.name in ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY") for e in self.events)

    @property
    def alive(self) -> bool:
        """Not hung up according to the events, and FreeSWITCH still knows the uuid."""
        if self.hung_up:
            return False
        return self.fs.api(f"uuid_exists {self.uuid}").strip() == "true"

    @property
    def answered(self) -> bool:
        return any(e.name == "CHANNEL_ANSWER" for e in self.events)

    @property
    def hangup_cause(self) -> Optional[str]:
        for e in reversed(self.events):
            if e.name in ("CHANNEL_HANGUP_COMPLETE", "CHANNEL_HANGUP"):
                return e.get("Hangup-Cause")
        return None

    @property
    def variables(self) -> dict[str, str]:
        """Channel variables: from the channel's events, refreshed by ``uuid_dump`` while alive."""
        out: dict[str, str] = {}
        for e in self.events:
            out.update(variables_of(e))
        if not self.hung_up:
            with contextlib.suppress(Exception):
                out.update(parse_uuid_dump_json(self.fs.api(f"uuid_dump {self.uuid} json")))
        return out

    @property
    def heard(self) -> list[Any]:
        """Playbacks on this channel from PLAYBACK_START/STOP (path and done; no audio)."""
        from tests.fssim.channel import Playback
        out: list[Any] = []
        for e in self.events:
            path = e.get("Playback-File-Path") or ""
            if e.name == "PLAYBACK_START":
                out.append(Playback(path=path, start=time.time(), start_mono=e.mono, duration_ms=0))
            elif e.name == "PLAYBACK_STOP":
                for p in out:
                    if p.path == path and p.stop is None:
                        p.stop, p.stop_mono = time.time(), e.mono
                        p.reason = "done" if (e.get("Playback-Status") or "done") == "done" else "break"
                        p.broken = p.reason != "done"
                        break
        return out

    @property
    def recordings(self) -> list[Any]:
        """Recordings from RECORD_START/STOP (the file is on the FreeSWITCH host)."""
        from tests.fssim.channel import Recording
        out: list[Any] = []
        for e in self.events:
            path = e.get("Record-File-Path") or ""
            if e.name == "RECORD_START":
                out.append(Recording(path=path, start_mono=e.mono, start=time.time()))
            elif e.name == "RECORD_STOP":
                for r in out:
                    if r.path == path and r.stop is None:
                        r.stop, r.stop_mono = time.time(), e.mono
        return out

    @property
    def b_leg(self) -> Optional["RealCall"]:
        for e in reversed(self.events):
            other = e.get("Other-Leg-Unique-ID") or e.get("variable_bridge_uuid")
            if other:
                return self.fs.get_call(other)
        return None

    @property
    def received_dtmf(self) -> str:
        sim_only("received_dtmf (SIPp does not decode the RFC 2833 keys FreeSWITCH sends)")
        return ""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        sim_only(f"call.{name}")

    # ---- what the caller does ----
    def hangup(self, cause: str = "NORMAL_CLEARING") -> None:
        """End the call with ``cause`` (``uuid_kill``: FreeSWITCH sends BYE to the SIPp caller).

        The simulator models a remote hangup (recv_bye); here FreeSWITCH hangs up itself
        (send_bye), which gives the same CHANNEL_HANGUP_COMPLETE cause to esl_app.
        """
        reply = self.fs.api(f"uuid_kill {self.uuid} {cause}").strip()
        if reply.startswith("-ERR") and "No such channel" not in reply:
            raise RealModeError(f"uuid_kill {self.uuid}: {reply}")

    def send_dtmf(self, digits: str, duration_ms: int = 2000, gap_ms: int = 20) -> None:
        """The caller presses keys: ``uuid_recv_dtmf`` queues them as if received from the line.

        FreeSWITCH fires a DTMF event per key when the parked channel reads them. The keys sent
        as real RFC 2833 packets are given to ``inbound_call(dtmf=...)`` instead.
        """
        reply = self.fs.api(f"uuid_recv_dtmf {self.uuid} {digits}").strip()
        if reply.startswith("-ERR"):
            raise RealModeError(f"uuid_recv_dtmf {self.uuid} {digits}: {reply}")

    # ---- waiting ----
    def wait_for(self, what: str | Callable[..., bool], timeout: float = 5.0, after: int = 0,
                 **headers: str) -> Any:
        """Wait for an event name / CUSTOM subclass (optionally header values) or a predicate."""
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
            for ev in self.events[after:]:
                if ev.matches(what) and all(ev.get(k.replace("_", "-")) == v for k, v in headers.items()):
                    found.append(ev)
                    return True
            return False
        if not self.fs.wait_events(check, timeout):
            raise TimeoutError(f"{what!r} not seen on {self.uuid} within {timeout}s; "
                               f"events: {self.event_names()[-12:]}")
        return found[0]

    def wait_answered(self, timeout: float = 5.0) -> None:
        self.wait_for("CHANNEL_ANSWER", timeout)

    def wait_hangup(self, timeout: float = 5.0) -> Any:
        return self.wait_for("CHANNEL_HANGUP_COMPLETE", timeout)


# --------------------------------------------------------------------------------------------
# The simulator's stand-in
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass
class _Phone:
    """An operator extension we registered, and the SIPp phone answering on its port."""

    ext: str
    port: int
    media_port: int
    run: Optional[SippRun] = None


class RealFreeSwitch:
    """Drives a real FreeSWITCH with the calls the e2e tests make on ``FsSim``.

    >>> fs = RealFreeSwitch("10.0.0.5:8021:secret", local_ip="10.0.0.9").start()
    >>> call = fs.inbound_call(caller="79161234567", destination="74951234567")
    >>> call.hangup(); fs.stop()
    """

    def __init__(self, esl: str, sipp_path: str = "sipp", local_ip: Optional[str] = None,
                 sip_host: Optional[str] = None, external_port: int = 5080, internal_port: int = 5060,
                 work_dir: Optional[os.PathLike[str] | str] = None, base_port: int = 15060,
                 scenario_dir: os.PathLike[str] | str = SIPP_DIR, domain: Optional[str] = None) -> None:
        self.host, self.port, self.password = parse_esl_target(esl)
        self.sipp_path = sipp_path
        self.sip_host = sip_host or self.host
        self.local_ip = local_ip or local_ip_towards(self.sip_host)
        self.external_port, self.internal_port = external_port, internal_port
        self.scenario_dir = Path(scenario_dir)
        self.work_dir = Path(work_dir) if work_dir else Path(os.environ.get("TMPDIR", "/tmp")) / f"voiceai-realfs-{os.getpid()}"
        self.ports = PortAllocator(self.local_ip, base_port)
        self._domain = domain
        self.api_conn: Optional[EslClient] = None
        self.event_conn: Optional[EslClient] = None
        self._events: list[Any] = []
        self._by_uuid: dict[str, list[Any]] = {}
        self._order: list[str] = []
        self._cond = threading.Condition()
        self._reader: Optional[threading.Thread] = None
        self._running = False
        self._calls: dict[str, RealCall] = {}
        self._ours: list[RealCall] = []
        self._runs: list[SippRun] = []
        self._counter = itertools.count(1)
        self.far_end_port: Optional[int] = None
        self.far_end_media_port: Optional[int] = None
        self.far_end: Optional[SippRun] = None
        self.far_end_behavior: tuple[str, int, Optional[int]] = ("answer", 100, None)
        self.phones: dict[str, _Phone] = {}
        self.trunk_hook: Optional[Callable[[], None]] = None

    # ---- lifecycle ----
    @classmethod
    def from_config(cls, cfg: RealFsConfig, work_dir: Optional[os.PathLike[str] | str] = None) -> "RealFreeSwitch":
        return cls(cfg.esl, sipp_path=cfg.sipp_path, local_ip=cfg.local_ip, sip_host=cfg.sip_host,
                   external_port=cfg.external_port, internal_port=cfg.internal_port, work_dir=work_dir,
                   base_port=cfg.base_port)

    def start(self) -> "RealFreeSwitch":
        """Connect to FreeSWITCH and start the default trunk far end (answers after 100 ms)."""
        if shutil.which(self.sipp_path) is None:
            raise RealModeError(f"SIPp not found ({self.sipp_path!r}); Debian: apt-get install sip-tester, "
                                "or set VOICEAI_TEST_SIPP")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.connect()
        self.far_end_port = self.ports.take()
        self.far_end_media_port = self.ports.take(media=True)
        self._start_far_end("answer", 100, None)
        return self

    def connect(self) -> "RealFreeSwitch":
        """Two ESL links: one for ``api``, one subscribed to every event (read by a thread)."""
        self.api_conn = EslClient(self.host, self.port, self.password).connect()
        self.event_conn = EslClient(self.host, self.port, self.password).connect()
        self.event_conn.command("event plain ALL")
        assert self.event_conn.sock is not None
        self.event_conn.sock.settimeout(None)
        self._running = True
        self._reader = threading.Thread(target=self._read_events, name="realfs-events", daemon=True)
        self._reader.start()
        return self

    def stop(self) -> None:
        """Hang up the calls we placed, unregister our phones, stop our SIPp processes, close ESL."""
        for call in self._ours:
            with contextlib.suppress(Exception):
                if not call.hung_up:
                    self.api(f"uuid_kill {call.uuid} NORMAL_CLEARING")
        for phone in list(self.phones.values()):
            with contextlib.suppress(Exception):
                if phone.run:
                    phone.run.stop()
                self._register(phone, expires=0)
        for run in self._runs:
            run.stop()
        self._running = False
        for conn in (self.event_conn, self.api_conn):
            if conn is not None:
                conn.close()

    def __enter__(self) -> "RealFreeSwitch":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ---- Event Socket ----
    def api(self, command: str) -> str:
        """Run an API command on FreeSWITCH and return the reply body."""
        assert self.api_conn is not None, "start() first"
        return self.api_conn.api(command)

    def _read_events(self) -> None:
        conn = self.event_conn
        assert conn is not None
        while self._running:
            try:
                frame = conn.read()
            except (OSError, ConnectionError):
                break
            if frame.content_type != "text/event-plain":
                continue
            event = parse_plain_event(frame.body)
            with self._cond:
                self._events.append(event)
                uuid = event.uuid
                if uuid:
                    if uuid not in self._by_uuid:
                        self._by_uuid[uuid] = []
                        self._order.append(uuid)
                    self._by_uuid[uuid].append(event)
                self._cond.notify_all()

    def events_of(self, uuid: str) -> list[Any]:
        with self._cond:
            return list(self._by_uuid.get(uuid, ()))

    @property
    def events(self) -> list[Any]:
        """Every event received since start()."""
        with self._cond:
            return list(self._events)

    def wait_events(self, check: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``check()`` holds, re-checking whenever an event arrives (and every 0.2 s)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if check():
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.2))

    def wait_for_event(self, what: str | Callable[[Any], bool], timeout: float = 5.0, after: int = 0) -> Any:
        found: list[Any] = []

        def check() -> bool:
            for ev in self._events[after:]:
                if (what(ev) if callable(what) else ev.matches(what)):
                    found.append(ev)
                    return True
            return False
        if not self.wait_events(check, timeout):
            raise TimeoutError(f"{what!r} not seen within {timeout}s")
        return found[0]

    # ---- calls ----
    def get_call(self, uuid: str) -> RealCall:
        call = self._calls.get(uuid)
        if call is None:
            call = self._calls[uuid] = RealCall(self, uuid)
        return call

    @property
    def calls(self) -> list[RealCall]:
        """Every channel seen since start() (from its events), oldest first."""
        with self._cond:
            uuids = [u for u in self._order if any(e.name == "CHANNEL_CREATE" for e in self._by_uuid[u])]
        return [self.get_call(u) for u in uuids]

    def wait_for_call(self, predicate: Callable[[RealCall], bool] = lambda c: True, timeout: float = 5.0,
                      after: int = 0) -> RealCall:
        deadline = time.monotonic() + timeout
        while True:
            for call in self.calls[after:]:
                if predicate(call):
                    return call
            if time.monotonic() >= deadline:
                raise TimeoutError("no matching call")
            time.sleep(0.05)

    def inbound_call(self, caller: str = "79161234567", destination: str = "74951234567", audio: Any = None,
                     dtmf: Sequence[tuple[int, str]] = (), hold_s: float = 600.0, timeout: float = 15.0,
                     **sim_options: Any) -> RealCall:
        """A SIPp caller dials ``destination`` on the external profile; returns its channel.

        ``audio`` takes fssim's forms (WAV path, silence ms, raw L16, list); ``dtmf`` puts real
        RFC 2833 keys into the stream at ``[(offset_ms, digits)]``; the caller hangs up by
        itself after ``hold_s`` unless FreeSWITCH does first.
        """
        if sim_options:
            sim_only(f"inbound_call({', '.join(sorted(sim_options))}=...)")
        run = self.start_caller(caller, destination, audio, dtmf, hold_s)
        uuid = self.find_inbound(caller, destination, run, timeout)
        call = self.get_call(uuid)
        call.sipp = run
        self._ours.append(call)
        return call

    def start_caller(self, caller: str, destination: str, audio: Any = None, dtmf: Sequence[tuple[int, str]] = (),
                     hold_s: float = 600.0) -> SippRun:
        """Start the SIPp caller (inbound_caller.xml) towards the external profile."""
        n = next(self._counter)
        workdir = self.work_dir / f"caller-{n}-{caller}"
        workdir.mkdir(parents=True, exist_ok=True)
        make_caller_pcap(workdir / CALLER_PCAP, audio, dtmf)
        port, media = self.ports.take(), self.ports.take(media=True)
        cmd = sipp_command(self.sipp_path, self.scenario_dir / "inbound_caller.xml",
                           remote=self._sip_target(self.external_port), local_ip=self.local_ip, port=port,
                           service=destination, keys={"caller": caller}, calls=1, media_port=media,
                           recv_timeout_ms=int(hold_s * 1000), control_port=self.ports.take(),
                           logs=workdir / "inbound_caller")
        run = SippRun("inbound_caller", cmd, workdir, (port, media)).start()
        self._runs.append(run)
        return run

    def _sip_target(self, port: int) -> str:
        host = f"[{self.sip_host}]" if ":" in self.sip_host else self.sip_host
        return f"{host}:{port}"

    def find_inbound(self, caller: str, destination: str, run: Optional[SippRun], timeout: float) -> str:
        """The new channel of our caller: CHANNEL_CREATE events first, ``show channels`` too."""
        taken = {c.uuid for c in self._ours}
        dest = destination.lstrip("+")
        deadline = time.monotonic() + timeout
        dead_since: Optional[float] = None
        while time.monotonic() < deadline:
            with self._cond:
                for ev in self._events:
                    if (ev.name == "CHANNEL_CREATE" and ev.uuid not in taken
                            and ev.get("Call-Direction") == "inbound"
                            and ev.get("Caller-Caller-ID-Number") == caller
                            and (ev.get("Caller-Destination-Number") or "").lstrip("+") == dest):
                        return ev.uuid
            uuid = pick_inbound_channel(parse_channels_json(self.api("show channels as json")), caller,
                                        destination, taken)
            if uuid:
                return uuid
            if run is not None and not run.alive:
                # a call refused at once still had its CHANNEL_CREATE: give the event a moment
                if dead_since is None:
                    dead_since = time.monotonic()
                elif time.monotonic() - dead_since > 1.0:
                    raise RealModeError(f"the SIPp caller {caller} -> {destination} ended before FreeSWITCH "
                                        f"created its channel\n{run.evidence()}")
            time.sleep(0.1)
        raise RealModeError(f"no channel for {caller} -> {destination} within {timeout}s\n"
                            f"{run.evidence() if run else ''}")

    # ---- far ends ----
    def set_behavior(self, pattern: str, outcome: str = "answer", ring_ms: int = 100, answer_audio: Any = None,
                     hangup_after_ms: Optional[int] = None) -> tuple[str, str]:
        """Script what a dialled far end does, like ``FsSim.set_behavior``.

        ``user/<ext>@*`` registers that operator extension from a SIPp phone that answers / rings
        / rejects; anything else (a number, a gateway glob) restarts the one trunk far end the
        test gateways point at, so the last call wins for every number.
        """
        if answer_audio is not None:
            sim_only("set_behavior(answer_audio=...)")
        kind, target = behavior_target(pattern)
        if kind == "phone":
            self._set_phone(target, outcome, ring_ms, hangup_after_ms)
        else:
            if outcome not in TRUNK_SCENARIOS:
                sim_only(f"set_behavior(outcome={outcome!r}) on a trunk")
            self._start_far_end(outcome, ring_ms, hangup_after_ms)
            if self.trunk_hook is not None:
                self.trunk_hook()
        return kind, target

    def clear_behaviors(self) -> None:
        """Back to the default: the trunk far end answers after 100 ms; phones are unregistered."""
        for phone in list(self.phones.values()):
            if phone.run:
                phone.run.stop()
            with contextlib.suppress(Exception):
                self._register(phone, expires=0)
        self.phones.clear()
        self._start_far_end("answer", 100, None)

    def _start_far_end(self, outcome: str, ring_ms: int, hangup_after_ms: Optional[int]) -> None:
        assert self.far_end_port is not None and self.far_end_media_port is not None
        if self.far_end is not None:
            self.far_end.stop()
        scenario, code = TRUNK_SCENARIOS[outcome]
        n = next(self._counter)
        workdir = self.work_dir / f"far-end-{n}-{outcome}"
        keys: dict[str, Any] = {}
        if scenario != "trunk_uas_no_answer.xml":
            keys["ring_ms"] = int(ring_ms)
        if scenario == "trunk_uas_reject.xml":
            keys["code"] = code
        answer = outcome == "answer"
        cmd = sipp_command(self.sipp_path, self.scenario_dir / scenario, local_ip=self.local_ip, port=self.far_end_port,
                           keys=keys, media_port=self.far_end_media_port if answer else None, rtp_echo=answer,
                           recv_timeout_ms=(hangup_after_ms if hangup_after_ms is not None else FOREVER_MS) if answer else None,
                           control_port=self.ports.take(), logs=workdir / "far_end")
        self.far_end = SippRun("far_end", cmd, workdir, (self.far_end_port,)).start()
        self._runs.append(self.far_end)
        self.far_end_behavior = (outcome, ring_ms, hangup_after_ms)
        wait_udp_bound(self.far_end, self.far_end_port)
        if not self.far_end.alive:
            raise RealModeError(f"the trunk far end did not start\n{self.far_end.evidence()}")

    @property
    def domain(self) -> str:
        """FreeSWITCH's ``$${domain}``: the realm operator phones register in."""
        if self._domain is None:
            self._domain = self.api("global_getvar domain").strip() or self.sip_host
        return self._domain

    def operator_password(self, ext: str) -> str:
        """The password install.sh generated for an operator extension (voiceai_vars.xml)."""
        env = os.environ.get(f"VOICEAI_TEST_FS_OPERATOR_{ext}_PASSWORD")
        if env:
            return env
        value = self.api(f"global_getvar voiceai_operator_{ext}_password").strip()
        if not value or value.startswith("-ERR"):
            raise RealModeError(f"no password for operator extension {ext}: run freeswitch_conf/install.sh "
                                f"on the FreeSWITCH host or set VOICEAI_TEST_FS_OPERATOR_{ext}_PASSWORD")
        return value

    def _register(self, phone: _Phone, expires: int = 3600) -> None:
        """REGISTER the extension from its own port (operator_phone_register.xml, -m 1)."""
        n = next(self._counter)
        workdir = self.work_dir / f"phone-{phone.ext}-register-{n}"
        cmd = sipp_command(self.sipp_path, self.scenario_dir / "operator_phone_register.xml",
                           remote=self._sip_target(self.internal_port), local_ip=self.local_ip, port=phone.port,
                           keys={"user": phone.ext, "domain": self.domain, "expires": expires}, calls=1,
                           auth=(phone.ext, self.operator_password(phone.ext)), control_port=self.ports.take(),
                           logs=workdir / "register", timeout_s=20)
        run = SippRun("register", cmd, workdir, (phone.port,)).start()
        try:
            rc = run.wait(25)
        except subprocess.TimeoutExpired:
            run.stop()
            rc = -1
        if rc != 0:
            raise RealModeError(f"operator {phone.ext} could not register (expires={expires})\n{run.evidence()}")

    def _set_phone(self, ext: str, outcome: str, ring_ms: int, hangup_after_ms: Optional[int]) -> None:
        phone = self.phones.get(ext)
        if phone is None:
            phone = self.phones[ext] = _Phone(ext, self.ports.take(), self.ports.take(media=True))
        if phone.run is not None:
            phone.run.stop()
            phone.run = None
        if outcome == "unregistered":
            self._register(phone, expires=0)
            return
        self._register(phone)
        n = next(self._counter)
        workdir = self.work_dir / f"phone-{phone.ext}-{n}-{outcome}"
        if outcome in PHONE_SCENARIOS:
            scenario = PHONE_SCENARIOS[outcome]
            keys: dict[str, Any] = {"ring_ms": int(ring_ms)} if outcome == "answer" else {}
            answer = outcome == "answer"
            cmd = sipp_command(self.sipp_path, self.scenario_dir / scenario, local_ip=self.local_ip, port=phone.port,
                               service="operator", keys=keys, media_port=phone.media_port if answer else None,
                               rtp_echo=answer,
                               recv_timeout_ms=(hangup_after_ms if hangup_after_ms is not None else FOREVER_MS)
                               if answer else None, control_port=self.ports.take(), logs=workdir / "phone")
        elif outcome in TRUNK_SCENARIOS:  # a phone that is busy / rejects: the same far-end scenarios
            scenario, code = TRUNK_SCENARIOS[outcome]
            keys = {"ring_ms": int(ring_ms)}
            if code is not None and scenario == "trunk_uas_reject.xml":
                keys["code"] = code
            cmd = sipp_command(self.sipp_path, self.scenario_dir / scenario, local_ip=self.local_ip, port=phone.port,
                               keys=keys, control_port=self.ports.take(), logs=workdir / "phone")
        else:
            sim_only(f"set_behavior(outcome={outcome!r}) on an operator phone")
            return
        phone.run = SippRun("phone", cmd, workdir, (phone.port,)).start()
        self._runs.append(phone.run)
        wait_udp_bound(phone.run, phone.port)
        if not phone.run.alive:
            raise RealModeError(f"operator phone {ext} did not start\n{phone.run.evidence()}")

    # ---- gateways ----
    @property
    def gateways(self) -> dict[str, GatewayStatus]:
        """Loaded gateways (``sofia status``) by name."""
        return parse_sofia_status(self.api("sofia status"))

    # ---- what only the simulator can do ----
    @property
    def now(self) -> Callable[[], datetime]:
        return datetime.now

    @now.setter
    def now(self, value: Callable[[], datetime]) -> None:
        sim_only("sim.now (moving FreeSWITCH's clock for time-of-day routing)")

    def restart(self, down_s: float = 0.5, keep_calls: bool = True) -> None:
        sim_only("sim.restart() (dropping and restoring the Event Socket)")

    def drop_clients(self) -> None:
        sim_only("sim.drop_clients()")

    def set_gateway_behavior(self, name: str, *args: Any, **kwargs: Any) -> None:
        sim_only("sim.set_gateway_behavior() (the provider decides a real registration)")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        sim_only(f"sim.{name}")


# --------------------------------------------------------------------------------------------
# The rig in real mode
# --------------------------------------------------------------------------------------------

def point_sip_connections_at(host: str, port: int) -> int:
    """Make every SIP connection in the test database reach the SIPp far end.

    The test tenants use made-up providers (``sip.example.net``); in real mode their gateways
    must point at the SIPp far end, and its address must be in the trunk ACL so the SIPp caller
    (same address) may call in. Returns how many rows changed.
    """
    from models.telephony import SipConnection
    changed = 0
    for conn in SipConnection.select():
        allowed = list(conn.allowed_ips_json or [])
        if conn.provider_host != host or conn.port != port or host not in allowed:
            conn.provider_host, conn.port = host, port
            if host not in allowed:
                allowed.append(host)
            conn.allowed_ips_json = allowed
            conn.save()
            changed += 1
    return changed


def _rig_class() -> type:
    from tests.support.telephony import Rig

    class RealRig(Rig):
        """The telephony rig on a real FreeSWITCH: ``sim`` is a ``RealFreeSwitch``."""

        def apply(self) -> None:
            """Point the SIP connections at the SIPp far end first, then apply as usual."""
            assert self.sim.far_end_port is not None
            point_sip_connections_at(self.sim.local_ip, self.sim.far_end_port)
            super().apply()

    return RealRig


def real_settings(base: Any, dirs: Any, cfg: RealFsConfig) -> Any:
    """Test settings for esl_app and the API on the real FreeSWITCH (ESL, conf, media dirs)."""
    from tests.support.telephony import telephony_settings
    settings = telephony_settings(base, dirs, cfg.esl_port)
    extra: dict[str, Any] = {"esl_host": cfg.esl_host, "esl_password": cfg.esl_password,
                             "audio_ws_host": cfg.audio_ws_host, "fs_tts_dir": cfg.tts_dir}
    if cfg.audio_ws_port is not None:
        extra["audio_ws_port"] = cfg.audio_ws_port
    return dataclasses.replace(settings, **extra)


@contextlib.contextmanager
def real_rig(test_settings: Any, redis_client: Any, tmp_path: Path, prompt_files: Mapping[str, str],
             cfg: Optional[RealFsConfig] = None) -> Iterator[Any]:
    """The ``rig`` fixture's body in real mode: RealFreeSwitch, a real esl_app, RealRig."""
    from tests.support.telephony import EslProcess, TelephonyDirs
    cfg = cfg or real_fs_config()
    if cfg is None:
        raise RealModeError(f"{ENV_ESL} is not set")
    storage = tmp_path / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    dirs = TelephonyDirs(conf=Path(cfg.conf_dir), recordings=Path(cfg.recordings_dir), storage=storage,
                         sounds=Path(cfg.sounds_dir))
    for name, path in prompt_files.items():
        shutil.copy(path, dirs.sounds / name)
    fs = RealFreeSwitch.from_config(cfg, work_dir=tmp_path / "sipp").start()
    esl: Any = None
    rig: Any = None
    try:
        settings = real_settings(test_settings, dirs, cfg)
        esl = EslProcess(settings, tmp_path / "esl.log").start()
        esl.wait_log("connected to FreeSWITCH")
        rig = _rig_class()(fs, esl, settings, dirs, redis_client, tmp_path)
        fs.trunk_hook = rig.apply
        yield rig
    finally:
        # tests may replace rig.esl (kill and restart esl_app): close both
        for proc in {id(p): p for p in (esl, getattr(rig, "esl", None)) if p is not None}.values():
            proc.close()
        fs.stop()


# --------------------------------------------------------------------------------------------
# Command line: the caller's pcap for manual SIPp runs
# --------------------------------------------------------------------------------------------

def _parse_dtmf_arg(text: str) -> tuple[int, str]:
    digits, _, at = text.partition("@")
    return int(at or 0), digits


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m tests.support.real_fs pcap OUT [--wav F] [--silence-ms N] [--dtmf 5#@2000]``."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.real_fs", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pcap", help="write caller_audio.pcap for tests/sipp/inbound_caller.xml")
    p.add_argument("out", nargs="?", default=CALLER_PCAP)
    p.add_argument("--wav", action="append", default=[], help="caller speech (8/16 kHz mono WAV); repeatable")
    p.add_argument("--silence-ms", type=int, default=None, help="silence instead of / before the WAVs")
    p.add_argument("--dtmf", action="append", default=[], help="keys as RFC 2833 events: DIGITS@OFFSET_MS")
    args = parser.parse_args(argv)
    audio: list[Any] = []
    if args.silence_ms:
        audio.append(args.silence_ms)
    audio += args.wav
    path = make_caller_pcap(args.out, audio or None, [_parse_dtmf_arg(d) for d in args.dtmf])
    print(f"{path}: {len(read_pcap_udp_payloads(path))} RTP packets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
