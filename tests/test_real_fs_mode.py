"""Real-FreeSWITCH mode without a FreeSWITCH: its pure parts, its ESL client, its SIPp scenarios.

No FreeSWITCH can run here, so this checks what can be checked: parsing of what FreeSWITCH sends
(replayed from the real captures in shared/fixtures/freeswitch), the ESL client and the call
handles against the byte-exact simulator, the caller's RTP/DTMF pcap, the SIPp command lines,
port choice, and the SIPp scenarios of tests/sipp/ completing calls against each other (and
against a tiny Python phone that checks the caller's RTP) over loopback when SIPp is installed.
"""
from __future__ import annotations

import concurrent.futures
import os
import re
import shutil
import socket
import struct
import subprocess
import threading
import time
import uuid as uuidlib
import wave
import xml.etree.ElementTree as ET
from array import array
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from tests.support import real_fs as rf

SIPP = shutil.which(os.environ.get("VOICEAI_TEST_SIPP") or "sipp")
needs_sipp = pytest.mark.skipif(SIPP is None, reason="SIPp is not installed (Debian: apt-get install sip-tester)")
SCENARIOS = sorted(rf.SIPP_DIR.glob("*.xml"))


def _fixtures_dir() -> Optional[Path]:
    """shared/fixtures/freeswitch next to the checkout (CI lays shared/ beside the clone)."""
    env = os.environ.get("FSSIM_FIXTURES")
    candidates = [Path(env)] if env else []
    for parent in list(Path(__file__).resolve().parents)[:5]:
        candidates += [parent / "shared" / "fixtures" / "freeswitch", parent.parent / "shared" / "fixtures" / "freeswitch"]
    candidates.append(Path("/work/shared/fixtures/freeswitch"))
    return next((c for c in candidates if (c / "esl_api_session.txt").exists()), None)


FIXTURES = _fixtures_dir()
needs_captures = pytest.mark.skipif(FIXTURES is None, reason="FreeSWITCH captures not found")


def captured_wire(name: str) -> bytes:
    """The bytes FreeSWITCH sent on one captured ESL connection (every RECV block, in order)."""
    assert FIXTURES is not None
    data = (FIXTURES / name).read_bytes()
    out = bytearray()
    for m in re.finditer(rb"<<< RECV [\d.]+\n", data):
        start = m.end()
        hend = data.index(b"\n\n", start)
        head = data[start:hend]
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1)) if b"Content-Length" in head else 0
        out += data[start:hend + 2 + length]
    return bytes(out)


def frames_of(name: str) -> list[rf.EslFrame]:
    wire = captured_wire(name)
    pos = [0]

    def recv(n: int) -> bytes:
        chunk = wire[pos[0]:pos[0] + 7]  # tiny reads: framing must not depend on chunk boundaries
        pos[0] += len(chunk)
        return chunk
    reader = rf.FrameReader(recv)
    frames = []
    while True:
        try:
            frames.append(reader.read())
        except ConnectionError:
            return frames


# ---------------------------------------------------------------------------------- config

def test_parse_esl_target() -> None:
    assert rf.parse_esl_target("10.0.0.5:8021:s3cret") == ("10.0.0.5", 8021, "s3cret")
    assert rf.parse_esl_target(" fs.lan:8021:a:b:c ") == ("fs.lan", 8021, "a:b:c")  # ':' allowed in the password
    assert rf.parse_esl_target("[::1]:8021:pw") == ("::1", 8021, "pw")
    for bad in ("", "host", "host:8021", "host:8021:", "host:port:pw", "host:70000:pw", "[::1:8021:pw", ":8021:pw"):
        with pytest.raises(ValueError):
            rf.parse_esl_target(bad)


def test_config_only_when_the_variable_is_set() -> None:
    assert rf.RealFsConfig.from_env({}) is None
    assert rf.RealFsConfig.from_env({"VOICEAI_TEST_FS_ESL": "  "}) is None
    cfg = rf.RealFsConfig.from_env({"VOICEAI_TEST_FS_ESL": "127.0.0.1:8021:pw"})
    assert cfg is not None and (cfg.esl_host, cfg.esl_port, cfg.esl_password) == ("127.0.0.1", 8021, "pw")
    assert cfg.sip_host == "127.0.0.1" and cfg.local_ip == "127.0.0.1"  # loopback reaches loopback
    assert cfg.sipp_path == "sipp" and cfg.conf_dir == "/etc/freeswitch" and cfg.external_port == 5080
    assert cfg.esl == "127.0.0.1:8021:pw" and cfg.audio_ws_port is None
    cfg = rf.RealFsConfig.from_env({
        "VOICEAI_TEST_FS_ESL": "fs.lan:8022:pw", "VOICEAI_TEST_FS_SIP_HOST": "10.1.1.5",
        "VOICEAI_TEST_FS_LOCAL_IP": "10.1.1.9", "VOICEAI_TEST_SIPP": "/opt/sipp/bin/sipp",
        "VOICEAI_TEST_FS_CONF_DIR": "/usr/local/freeswitch/conf", "VOICEAI_TEST_SIPP_BASE_PORT": "20000",
        "VOICEAI_TEST_FS_AUDIO_WS_PORT": "8090"})
    assert cfg is not None
    assert (cfg.sip_host, cfg.local_ip, cfg.sipp_path) == ("10.1.1.5", "10.1.1.9", "/opt/sipp/bin/sipp")
    assert cfg.conf_dir == "/usr/local/freeswitch/conf" and cfg.base_port == 20000 and cfg.audio_ws_port == 8090
    with pytest.raises(ValueError):
        rf.RealFsConfig.from_env({"VOICEAI_TEST_FS_ESL": "fs.lan"})


def test_real_settings_point_esl_app_at_the_real_freeswitch(tmp_path: Path) -> None:
    from core.config import Settings
    from tests.support.telephony import TelephonyDirs
    cfg = rf.RealFsConfig.from_env({"VOICEAI_TEST_FS_ESL": "10.0.0.5:8022:long-secret",
                                    "VOICEAI_TEST_FS_LOCAL_IP": "10.0.0.9"})
    assert cfg is not None
    dirs = TelephonyDirs(conf=Path(cfg.conf_dir), recordings=Path(cfg.recordings_dir), storage=tmp_path,
                         sounds=Path(cfg.sounds_dir))
    settings = rf.real_settings(Settings.from_env(environ={}), dirs, cfg)
    assert (settings.esl_host, settings.esl_port, settings.esl_password) == ("10.0.0.5", 8022, "long-secret")
    assert settings.freeswitch_conf_dir == "/etc/freeswitch"
    assert settings.fs_recordings_dir == cfg.recordings_dir and settings.fs_sounds_dir == cfg.sounds_dir


# ---------------------------------------------------------------------------------- ESL parsing

@needs_captures
def test_frames_and_replies_of_a_real_api_session() -> None:
    frames = frames_of("esl_api_session.txt")
    assert frames[0].content_type == "auth/request"
    assert frames[1].content_type == "command/reply" and frames[1].get("Reply-Text") == "+OK accepted"
    bodies = [f.body for f in frames if f.content_type == "api/response"]
    assert bodies[0].startswith("UP 0 years")
    assert rf.parse_channels_json(next(b for b in bodies if b.startswith('{"row_count"'))) == []
    gateways = rf.parse_sofia_status(next(b for b in bodies if "profile" in b and "gateway" in b))
    assert gateways == {"example.com": rf.GatewayStatus("example.com", "external", "sip:joeuser@example.com", "NOREG")}
    assert "-ERR No such channel!\n" in bodies


@needs_captures
def test_show_channels_rows_find_the_inbound_leg() -> None:
    bodies = [f.body for f in frames_of("esl2_api_session.txt") if f.content_type == "api/response"]
    rows = rf.parse_channels_json(next(b for b in bodies if '"row_count":2' in b))
    assert len(rows) == 2
    # the capture: a loopback call from 79990001122 to 9001; only the b-leg is "inbound"
    uuid = rf.pick_inbound_channel(rows, "79990001122", "9001")
    assert uuid == "37fa2672-3642-45e3-928f-d8d14d2ce5a9"
    assert rf.pick_inbound_channel(rows, "79990001122", "+9001") == uuid  # '+' or not
    assert rf.pick_inbound_channel(rows, "79990001122", "9001", taken=[uuid]) is None
    assert rf.pick_inbound_channel(rows, "70000000000", "9001") is None
    with pytest.raises(rf.RealModeError):
        rf.parse_channels_json("-ERR no reply\n")


@needs_captures
def test_plain_events_of_a_real_session() -> None:
    events = [rf.parse_plain_event(f.body) for f in frames_of("esl_events_plain.txt")
              if f.content_type == "text/event-plain"]
    names = [e.name for e in events]
    assert {"CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_HANGUP_COMPLETE", "BACKGROUND_JOB"} <= set(names)
    create = next(e for e in events if e.name == "CHANNEL_CREATE" and (e.get("Channel-Name") or "").startswith("sofia/"))
    assert create.get("Call-Direction") == "inbound" and create.get("Caller-Destination-Number") == "9000"
    assert create.uuid and rf.variables_of(create)  # channel events carry variable_* headers
    job = next(e for e in events if e.name == "BACKGROUND_JOB")
    assert job.body is not None and job.body.startswith(("+OK", "-ERR")) and "Content-Length" not in dict(job.headers)
    custom = [e for e in events if e.name == "CUSTOM"]
    assert custom and all(e.subclass for e in custom)
    dtmf = [rf.parse_plain_event(f.body) for f in frames_of("esl2_events_plain.txt")
            if f.content_type == "text/event-plain" and "Event-Name: DTMF" in f.body]
    assert [e.get("DTMF-Digit") for e in dtmf][:2] == ["5", "#"]  # %23 decoded


def test_header_block_and_uuid_dump() -> None:
    headers = rf.parse_header_block("A: 1\nB-Name: x%20y\n\nignored-no-colon\n", decode=True)
    assert headers == [("A", "1"), ("B-Name", "x y")]
    assert rf.header(headers, "b-name") == "x y" and rf.header(headers, "C", "d") == "d"
    dump = '{"Unique-ID":"u1","variable_voiceai_call_id":"c-1","variable_x":"5"}'
    assert rf.parse_uuid_dump_json(dump) == {"voiceai_call_id": "c-1", "x": "5"}
    assert rf.parse_uuid_dump_json("-ERR No such channel!\n") == {}


def test_behavior_targets() -> None:
    assert rf.behavior_target("user/1001@*") == ("phone", "1001")
    assert rf.behavior_target("user/1002") == ("phone", "1002")
    assert rf.behavior_target("79990001122") == ("trunk", "79990001122")
    assert rf.behavior_target("sofia/gateway/voiceai_x/7916*") == ("trunk", "sofia/gateway/voiceai_x/7916*")
    assert set(rf.TRUNK_SCENARIOS) >= {"answer", "busy", "no_answer", "failed", "rejected", "unallocated"}
    for scenario, _code in rf.TRUNK_SCENARIOS.values():
        assert (rf.SIPP_DIR / scenario).exists()
    for scenario in rf.PHONE_SCENARIOS.values():
        assert (rf.SIPP_DIR / scenario).exists()


# ---------------------------------------------------------------------------------- the ESL client on fssim

@pytest.fixture()
def fssim(tmp_path: Path):
    from tests.fssim import FsSim
    public = tmp_path / "dialplan" / "public"
    public.mkdir(parents=True)
    (public / "park.xml").write_text(
        '<include>\n  <extension name="park">\n'
        '    <condition field="destination_number" expression="^74951234567$">\n'
        '      <action application="answer"/>\n      <action application="park"/>\n'
        '    </condition>\n  </extension>\n</include>\n')
    sim = FsSim(dialplan_dir=str(tmp_path / "dialplan"), heartbeat_interval=None).start()
    yield sim
    sim.stop()


def test_esl_client_refuses_a_wrong_password(fssim) -> None:
    with pytest.raises(rf.RealModeError, match="refused"):
        rf.EslClient("127.0.0.1", fssim.port, "wrong").connect()
    client = rf.EslClient("127.0.0.1", fssim.port, "ClueCon").connect()
    assert client.api("status").startswith("UP ")
    assert rf.parse_channels_json(client.api("show channels as json")) == []
    client.close()


def test_call_handles_over_esl_against_the_simulator(fssim, tmp_path: Path) -> None:
    fs = rf.RealFreeSwitch(f"127.0.0.1:{fssim.port}:ClueCon", local_ip="127.0.0.1", work_dir=tmp_path).connect()
    try:
        sim_call = fssim.inbound_call(caller="79160000001", destination="74951234567")
        uuid = fs.find_inbound("79160000001", "74951234567", None, timeout=5)
        assert uuid == sim_call.uuid
        call = fs.get_call(uuid)
        call.wait_for("CHANNEL_PARK", timeout=5)
        assert "CHANNEL_CREATE" in call.event_names() and call.answered and call.alive
        variables = call.variables  # from the events, refreshed by uuid_dump json while alive
        assert variables["direction"] == "inbound" and variables["sip_from_user"] == "79160000001"
        assert fs.calls and fs.calls[0].uuid == uuid
        assert fs.wait_for_call(lambda c: c.uuid == uuid, timeout=1) is call
        call.hangup("NORMAL_CLEARING")
        ev = call.wait_hangup(timeout=5)
        assert ev.get("Hangup-Cause") == "NORMAL_CLEARING" and call.hangup_cause == "NORMAL_CLEARING"
        assert not call.alive
        call.hangup()  # a second kill of a gone channel is not an error
        with pytest.raises(TimeoutError):
            call.wait_for("CHANNEL_BRIDGE", timeout=0.3)
        assert fs.gateways == {}  # nothing in the simulator's gateway dir
    finally:
        fs.stop()


def test_simulator_only_features_skip_with_a_reason(tmp_path: Path) -> None:
    fs = rf.RealFreeSwitch("127.0.0.1:1:pw", local_ip="127.0.0.1", work_dir=tmp_path)
    call = rf.RealCall(fs, "u-1")
    for action in (lambda: setattr(fs, "now", lambda: None), lambda: fs.restart(down_s=1.5),
                   lambda: fs.set_gateway_behavior("gw", state="FAIL_WAIT"), lambda: fs.dialplan,
                   lambda: call.received_dtmf, lambda: call.fork_stats,
                   lambda: fs.inbound_call("1", "2", gateway="gw"),
                   lambda: fs.set_behavior("79990001122", outcome="gateway_down")):
        with pytest.raises(pytest.skip.Exception, match="simulator only"):
            action()
    with pytest.raises(AttributeError):
        fs.__wrapped__  # dunder lookups stay AttributeErrors (copy, pickle, inspect)
    assert callable(fs.now)


# ---------------------------------------------------------------------------------- caller audio

def test_ulaw_encoding() -> None:
    assert rf.ulaw_encode([0, 32767, -32768, 1000, -1000]) == bytes([0xFF, 0x80, 0x00, 0xCE, 0x4E])
    samples = [int(8000 * ((i % 40) - 20) / 20) for i in range(400)]
    back = rf.ulaw_decode(rf.ulaw_encode(samples))
    assert all(abs(a - b) <= max(16, abs(a) // 16) for a, b in zip(samples, back))


def test_rtp_stream_with_rfc2833_keys(tmp_path: Path) -> None:
    pcm = array("h", [0] * 8000)  # 1 s of silence
    packets = rf.build_rtp_stream(pcm, dtmf=[(200, "5#")], ssrc=0x1234)
    parsed = [struct.unpack("!BBHII", p.data[:12]) + (p.data[12:], p.at) for p in packets]
    assert all(v == 0x80 and ssrc == 0x1234 for v, _m, _s, _t, ssrc, _p, _a in parsed)
    seqs = [s for _v, _m, s, *_ in parsed]
    assert all((b - a) % 65536 == 1 for a, b in zip(seqs, seqs[1:]))
    audio = [x for x in parsed if x[1] & 0x7F == 0]
    events = [x for x in parsed if x[1] & 0x7F == 101]
    assert len(audio) == 50 - 2 * 8 and len(events) == 2 * (7 + 3)  # keys replace 8 audio frames each
    assert all(len(x[5]) == 160 for x in audio) and audio[0][1] & 0x80  # marker on the first packet
    codes = [x[5][0] for x in events]
    assert set(codes) == {5, 11}
    for code in (5, 11):
        mine = [x for x in events if x[5][0] == code]
        assert mine[0][1] & 0x80 and len({x[3] for x in mine}) == 1  # marker, one timestamp per key
        ends = [x for x in mine if x[5][1] & 0x80]
        assert len(ends) == 3 and ends[0][5] == ends[-1][5]  # end packet sent three times
        durations = [struct.unpack("!H", x[5][2:4])[0] for x in mine]
        assert durations == sorted(durations) and durations[-1] == 8 * 160
    key5 = next(x for x in events if x[5][0] == 5)
    assert abs(key5[6] - 0.2) < 0.001  # at its offset
    first_hash = next(x for x in events if x[5][0] == 11)
    assert first_hash[6] - key5[6] >= 0.160 + 0.100 - 0.001  # after the first key and the gap
    with pytest.raises(ValueError):
        rf.build_rtp_stream(pcm, dtmf=[(0, "x")])

    path = tmp_path / "caller.pcap"
    rf.write_pcap(path, packets)
    data = path.read_bytes()
    assert struct.unpack("<IHHiIII", data[:24]) == (0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    ip = data[24 + 16 + 14:24 + 16 + 34]
    assert rf._ip_checksum(ip) == 0  # a valid header sums to 0xFFFF
    replay = rf.read_pcap_udp_payloads(path)
    assert [p for _t, p in replay] == [p.data for p in packets]
    assert abs((replay[-1][0] - replay[0][0]) - (packets[-1].at - packets[0].at)) < 1e-5


def test_caller_pcap_from_the_audio_the_tests_pass(tmp_path: Path) -> None:
    wav = tmp_path / "tone.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(array("h", [4000, -4000] * 8000).tobytes())  # 1 s at 16 kHz
    path = rf.make_caller_pcap(tmp_path / rf.CALLER_PCAP, [wav, 500])
    packets = rf.read_pcap_udp_payloads(path)
    assert len(packets) == 75  # 1.5 s of 20 ms frames at 8 kHz
    assert len(rf.read_pcap_udp_payloads(rf.make_caller_pcap(tmp_path / "none.pcap"))) == 100  # 2 s default
    assert rf.main(["pcap", str(tmp_path / "cli.pcap"), "--silence-ms", "200", "--dtmf", "1@0"]) == 0
    assert any(p[1] & 0x7F == 101 for _t, p in rf.read_pcap_udp_payloads(tmp_path / "cli.pcap"))


# ---------------------------------------------------------------------------------- ports and command lines

def test_port_allocator() -> None:
    busy = {15060, 15063}
    ports = rf.PortAllocator("127.0.0.1", 15060, 15076, is_free=lambda _h, p: p not in busy)
    assert ports.take() == 15061
    assert ports.take(media=True) == 15064  # even, with 15065-15067 free too (15063 is busy)
    assert ports.take() == 15068
    assert ports.take(media=True) == 15070  # SIPp binds -mp .. -mp+3
    assert ports.take() == 15074  # ports are handed out upwards, never twice
    with pytest.raises(rf.RealModeError):
        ports.take(media=True)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        taken = s.getsockname()[1]
        assert not rf.udp_port_free("127.0.0.1", taken)
        assert rf.udp_port_bound(taken) in (True, None)  # None where there is no /proc
        real = rf.PortAllocator("127.0.0.1", taken, taken + 50)
        assert real.take() != taken
    assert rf.udp_port_bound(taken) in (False, None)


def test_sipp_command_lines(tmp_path: Path) -> None:
    caller = rf.sipp_command("sipp", rf.SIPP_DIR / "inbound_caller.xml", remote="10.0.0.5:5080", local_ip="10.0.0.9",
                             port=15062, service="74951234567", keys={"caller": "79161234567"}, calls=1,
                             media_port=16000, recv_timeout_ms=600000, control_port=15063, logs=tmp_path / "c")
    assert caller[:2] == ["sipp", "10.0.0.5:5080"]
    joined = " ".join(caller)
    for part in ("-sf " + str(rf.SIPP_DIR / "inbound_caller.xml"), "-i 10.0.0.9 -p 15062", "-s 74951234567",
                 "-key caller 79161234567", "-mi 10.0.0.9 -mp 16000", "-recv_timeout 600000", "-m 1",
                 "-cp 15063", "-nostdin", f"-error_file {tmp_path}/c.errors.log", "-trace_err"):
        assert part in joined, part
    phone = rf.sipp_command("/usr/bin/sipp", "operator_phone_answer.xml", local_ip="127.0.0.1", port=15070,
                            keys={"ring_ms": 300}, media_port=16010, rtp_echo=True, recv_timeout_ms=rf.FOREVER_MS)
    assert phone[1] == "-sf" and "-rtp_echo" in phone and "-m" not in phone and "-key" in phone
    register = rf.sipp_command("sipp", "operator_phone_register.xml", remote="10.0.0.5:5060", local_ip="10.0.0.9",
                               port=15070, keys={"user": "1001", "domain": "10.0.0.5", "expires": 3600}, calls=1,
                               auth=("1001", "p@ss w0rd"), timeout_s=20)
    assert register[register.index("-au") + 1] == "1001" and register[register.index("-ap") + 1] == "p@ss w0rd"
    assert "-timeout" in register and "20s" in register and "-timeout_error" in register


# ---------------------------------------------------------------------------------- scenario files

BUILTIN_KEYWORDS = {"remote_ip", "remote_port", "local_ip", "local_ip_type", "local_port", "transport", "media_ip",
                    "media_ip_type", "media_port", "call_number", "call_id", "cseq", "pid", "service", "branch",
                    "next_url", "len", "peer_tag_param", "authentication"}


def generic_keys(scenario: Path) -> set[str]:
    """The -key keywords a scenario needs: [name] that SIPp does not define itself."""
    found = set(re.findall(r"\[([A-Za-z_][A-Za-z0-9_]*)\]", scenario.read_text()))
    return {k for k in found if k not in BUILTIN_KEYWORDS and not k.startswith(("last_", "field"))}


def test_scenario_files_are_wellformed_and_documented() -> None:
    names = {p.name for p in SCENARIOS}
    assert {"inbound_caller.xml", "operator_phone_register.xml", "operator_phone_answer.xml",
            "operator_phone_no_answer.xml", "trunk_uas_busy.xml", "trunk_uas_no_answer.xml",
            "trunk_uas_answer.xml"} <= names
    readme = (rf.SIPP_DIR / "README.md").read_text()
    for path in SCENARIOS:
        root = ET.parse(path).getroot()
        assert root.tag == "scenario" and root.get("name"), path.name
        assert path.name in readme, f"{path.name} is not described in tests/sipp/README.md"
        text = path.read_text()
        assert text.startswith('<?xml version="1.0" encoding="ISO-8859-1" ?>'), path.name
        text.encode("ascii")  # SIPp reads Latin-1: keep the files ASCII
        for key in generic_keys(path):
            assert re.search(rf"-sf \S*{re.escape(path.name)}\b[^\n]*(\n +[^\n]*)*-key {key}\b", readme), \
                f"README's command for {path.name} lacks -key {key}"
    assert not (rf.SIPP_DIR / rf.CALLER_PCAP).exists()  # SIPp would prefer it over the working directory's


def test_adapter_passes_every_key_the_scenarios_need(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[list[str]] = []

    class FakeRun(rf.SippRun):
        def start(self) -> "FakeRun":
            started.append(self.cmd)
            return self

        @property
        def alive(self) -> bool:
            return True

        def wait(self, timeout: float) -> int:
            return 0

        def stop(self, grace: float = 2.0) -> None:
            pass

    monkeypatch.setattr(rf, "SippRun", FakeRun)
    monkeypatch.setattr(rf, "wait_udp_bound", lambda run, port, timeout=3.0: None)
    monkeypatch.setenv("VOICEAI_TEST_FS_OPERATOR_1001_PASSWORD", "pw")
    fs = rf.RealFreeSwitch("127.0.0.1:1:pw", local_ip="127.0.0.1", work_dir=tmp_path, domain="127.0.0.1")
    fs.far_end_port, fs.far_end_media_port = 15080, 16080
    for outcome in rf.TRUNK_SCENARIOS:
        fs.set_behavior("79990001122", outcome=outcome, ring_ms=0, hangup_after_ms=500)
    for outcome in ("answer", "no_answer", "busy", "unregistered"):
        fs.set_behavior("user/1001@*", outcome=outcome)
    fs.start_caller("79161234567", "74951234567")
    for cmd in started:
        scenario = Path(cmd[cmd.index("-sf") + 1])
        given = {cmd[i + 1] for i, a in enumerate(cmd) if a == "-key"}
        assert generic_keys(scenario) <= given, (scenario.name, cmd)


# ---------------------------------------------------------------------------------- SIPp against SIPp

PAIR_PORTS = rf.PortAllocator("127.0.0.1", 15100, 15999)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every scenario pair, run at once over loopback (keeps the whole check to a few seconds)."""
    if SIPP is None:
        pytest.skip("SIPp is not installed (Debian: apt-get install sip-tester)")
    base = tmp_path_factory.mktemp("sipp-pairs")
    plans: dict[str, Callable[[Path], dict[str, Any]]] = {
        "caller_vs_phone_that_hangs_up": lambda d: run_pair(
            d, uas=("operator_phone_answer.xml", {"keys": {"ring_ms": 100}, "recv_timeout_ms": 600, "media": True,
                                                  "rtp_echo": True}),
            uac=("inbound_caller.xml", {"service": "74951234567", "keys": {"caller": "79161234567"},
                                        "recv_timeout_ms": 8000, "media": True, "pcap": True})),
        "caller_hangs_up_on_trunk_far_end": lambda d: run_pair(
            d, uas=("trunk_uas_answer.xml", {"keys": {"ring_ms": 0}, "recv_timeout_ms": rf.FOREVER_MS, "media": True,
                                             "rtp_echo": True}),
            uac=("inbound_caller.xml", {"service": "74951234567", "keys": {"caller": "79161234567"},
                                        "recv_timeout_ms": 700, "media": True, "pcap": True})),
        "register_with_digest": lambda d: run_pair(
            d, uas=("loopback_registrar.xml", {"keys": {"user": "1001", "password": "s3cret-Pw"}}),
            uac=("operator_phone_register.xml", {"keys": {"user": "1001", "domain": "127.0.0.1", "expires": 3600},
                                                 "auth": ("1001", "s3cret-Pw")})),
        "register_with_a_wrong_password": lambda d: run_pair(
            d, uas=("loopback_registrar.xml", {"keys": {"user": "1001", "password": "s3cret-Pw"}}),
            uac=("operator_phone_register.xml", {"keys": {"user": "1001", "domain": "127.0.0.1", "expires": 3600},
                                                 "auth": ("1001", "guess")})),
        "gateway_registers_at_the_far_end": lambda d: run_pair(
            d, uas=("trunk_uas_busy.xml", {"keys": {"ring_ms": 0}}),
            uac=("operator_phone_register.xml", {"keys": {"user": "voiceai", "domain": "127.0.0.1", "expires": 600},
                                                 "auth": ("voiceai", "unused")})),
        "options_ping_to_a_phone": lambda d: run_pair(
            d, uas=("operator_phone_no_answer.xml", {}), uac=("loopback_options.xml", {"service": "1001"})),
        "trunk_busy": lambda d: fs_leg_against(d, "trunk_uas_busy.xml", {"keys": {"ring_ms": 200}}),
        "trunk_no_answer": lambda d: fs_leg_against(d, "trunk_uas_no_answer.xml", {}),
        "phone_no_answer": lambda d: fs_leg_against(d, "operator_phone_no_answer.xml", {}),
        "trunk_answers_then_hangs_up": lambda d: fs_leg_against(
            d, "trunk_uas_answer.xml", {"keys": {"ring_ms": 100}, "recv_timeout_ms": 500, "media": True,
                                        "rtp_echo": True}),
        "phone_answers_freeswitch_hangs_up": lambda d: fs_leg_against(
            d, "operator_phone_answer.xml", {"keys": {"ring_ms": 100}, "recv_timeout_ms": rf.FOREVER_MS,
                                             "media": True, "rtp_echo": True}),
        **{f"trunk_rejects_{code}": (lambda d, code=code: fs_leg_against(
            d, "trunk_uas_reject.xml", {"keys": {"ring_ms": 0, "code": code}})) for code in (503, 603, 404, 480, 999)},
        "caller_rtp_and_keys_reach_a_phone": lambda d: caller_against_python_phone(d),
    }
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(plans)) as pool:
        futures = {name: pool.submit(plan, base / name) for name, plan in plans.items()}
        return {name: f.result() for name, f in futures.items()}


def _sipp(workdir: Path, name: str, scenario: str, remote: Optional[str], opts: dict[str, Any]) -> tuple[rf.SippRun, int]:
    workdir.mkdir(parents=True, exist_ok=True)
    if opts.get("pcap"):
        rf.make_caller_pcap(workdir / rf.CALLER_PCAP, 400, dtmf=[(100, "1")])
    port = PAIR_PORTS.take()
    media = PAIR_PORTS.take(media=True) if opts.get("media") else None
    cmd = rf.sipp_command(SIPP or "sipp", rf.SIPP_DIR / scenario, remote=remote, local_ip="127.0.0.1", port=port,
                          service=opts.get("service"), keys=opts.get("keys"), calls=1, media_port=media,
                          rtp_echo=bool(opts.get("rtp_echo")), recv_timeout_ms=opts.get("recv_timeout_ms"),
                          control_port=PAIR_PORTS.take(), auth=opts.get("auth"), logs=workdir / name, timeout_s=15)
    return rf.SippRun(name, cmd, workdir).start(), port


def _wait_listening(run: rf.SippRun, port: int) -> None:
    rf.wait_udp_bound(run, port)  # looks in /proc: probing with bind() would steal the port
    time.sleep(0.05)


def _finish(*runs: rf.SippRun, timeout: float = 18.0) -> list[Optional[int]]:
    codes = []
    for run in runs:
        try:
            codes.append(run.wait(timeout))
        except subprocess.TimeoutExpired:
            run.stop()
            codes.append(None)
    return codes


def run_pair(workdir: Path, uas: tuple[str, dict[str, Any]], uac: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    server, port = _sipp(workdir, "uas", uas[0], None, uas[1])
    _wait_listening(server, port)
    client, _ = _sipp(workdir, "uac", uac[0], f"127.0.0.1:{port}", uac[1])
    uac_rc, uas_rc = _finish(client, server)
    return {"uac": uac_rc, "uas": uas_rc, "evidence": client.evidence() + "\n" + server.evidence(),
            "uac_messages": _read(workdir / "uac.messages.log")}


def fs_leg_against(workdir: Path, scenario: str, opts: dict[str, Any]) -> dict[str, Any]:
    server, port = _sipp(workdir, "uas", scenario, None, opts)
    _wait_listening(server, port)
    client, _ = _sipp(workdir, "leg", "loopback_fs_leg.xml", f"127.0.0.1:{port}",
                      {"service": "79990001122", "media": True})
    leg_rc, uas_rc = _finish(client, server)
    outcomes = re.findall(r"outcome=(\w+)", _read(workdir / "leg.logs.log"))
    return {"uac": leg_rc, "uas": uas_rc, "outcomes": outcomes, "evidence": client.evidence() + "\n" + server.evidence()}


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def caller_against_python_phone(workdir: Path) -> dict[str, Any]:
    """inbound_caller.xml against a minimal Python UAS that records the RTP it is sent."""
    sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sip.bind(("127.0.0.1", 0))
    rtp.bind(("127.0.0.1", 0))
    sip.settimeout(5)
    rtp.settimeout(0.2)
    result: dict[str, Any] = {"rtp": []}

    def phone() -> None:
        invite, peer = sip.recvfrom(65535)
        text = invite.decode()
        head = text.split("\r\n\r\n", 1)[0].split("\r\n")
        hdr = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in head[1:] if ":" in l}
        tag = uuidlib.uuid4().hex[:8]
        sdp = (f"v=0\r\no=py 1 1 IN IP4 127.0.0.1\r\ns=py\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
               f"m=audio {rtp.getsockname()[1]} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
               f"a=rtpmap:101 telephone-event/8000\r\n")
        ok = (f"SIP/2.0 200 OK\r\nVia: {hdr['via']}\r\nFrom: {hdr['from']}\r\nTo: {hdr['to']};tag={tag}\r\n"
              f"Call-ID: {hdr['call-id']}\r\nCSeq: {hdr['cseq']}\r\n"
              f"Contact: <sip:py@127.0.0.1:{sip.getsockname()[1]}>\r\nContent-Type: application/sdp\r\n"
              f"Content-Length: {len(sdp)}\r\n\r\n{sdp}")
        sip.sendto(ok.encode(), peer)
        ack, _ = sip.recvfrom(65535)
        result["ack"] = ack.decode().split(" ", 1)[0]
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            try:
                result["rtp"].append(rtp.recvfrom(2048)[0])
            except socket.timeout:
                pass
        contact = re.search(r"<([^>]+)>", hdr["contact"]).group(1)
        bye = (f"BYE {contact} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{sip.getsockname()[1]};branch=z9hG4bK{tag}\r\n"
               f"From: {hdr['to']};tag={tag}\r\nTo: {hdr['from']}\r\nCall-ID: {hdr['call-id']}\r\n"
               f"CSeq: 1 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
        sip.sendto(bye.encode(), peer)
        result["bye_reply"] = sip.recvfrom(65535)[0].decode().split("\r\n", 1)[0]

    thread = threading.Thread(target=phone, daemon=True)
    thread.start()
    client, _ = _sipp(workdir, "uac", "inbound_caller.xml", f"127.0.0.1:{sip.getsockname()[1]}",
                      {"service": "74951234567", "keys": {"caller": "79161234567"}, "recv_timeout_ms": 10000,
                       "media": True, "pcap": True})
    (rc,) = _finish(client)
    thread.join(6)
    sip.close()
    rtp.close()
    result.update(uac=rc, evidence=client.evidence())
    return result


@needs_sipp
@pytest.mark.parametrize("name", ["caller_vs_phone_that_hangs_up", "caller_hangs_up_on_trunk_far_end",
                                  "register_with_digest", "gateway_registers_at_the_far_end",
                                  "options_ping_to_a_phone"])
def test_scenario_pairs_complete_a_call(pairs, name: str) -> None:
    result = pairs[name]
    assert (result["uac"], result["uas"]) == (0, 0), result["evidence"]


@needs_sipp
def test_who_hangs_up(pairs) -> None:
    phone_hung_up = pairs["caller_vs_phone_that_hangs_up"]["uac_messages"]
    assert re.search(r"received.*\n+BYE ", phone_hung_up), "the caller should have received the phone's BYE"
    caller_hung_up = pairs["caller_hangs_up_on_trunk_far_end"]["uac_messages"]
    assert re.search(r"sent.*\n+BYE ", caller_hung_up), "the caller should have sent BYE itself"


@needs_sipp
def test_wrong_password_does_not_register(pairs) -> None:
    result = pairs["register_with_a_wrong_password"]
    assert result["uac"] not in (0, None), result["evidence"]


@needs_sipp
@pytest.mark.parametrize("name,outcomes", [
    ("trunk_busy", ["486"]),
    ("trunk_no_answer", ["cancelled"]),
    ("phone_no_answer", ["cancelled"]),
    ("trunk_answers_then_hangs_up", ["answered", "far_end_hung_up"]),
    ("phone_answers_freeswitch_hangs_up", ["answered", "we_hung_up"]),
    ("trunk_rejects_503", ["503"]),
    ("trunk_rejects_603", ["603"]),
    ("trunk_rejects_404", ["404"]),
    ("trunk_rejects_480", ["480"]),
    ("trunk_rejects_999", ["503"]),  # unknown codes fall back to 503
])
def test_far_ends_as_freeswitch_sees_them(pairs, name: str, outcomes: list[str]) -> None:
    result = pairs[name]
    assert result["outcomes"] == outcomes and (result["uac"], result["uas"]) == (0, 0), result["evidence"]


@needs_sipp
def test_caller_sends_pcmu_and_rfc2833_keys(pairs) -> None:
    result = pairs["caller_rtp_and_keys_reach_a_phone"]
    assert result["uac"] == 0 and result.get("ack") == "ACK" and result.get("bye_reply") == "SIP/2.0 200 OK", \
        result["evidence"]
    packets = result["rtp"]
    audio = [p for p in packets if p[1] & 0x7F == 0]
    keys = [p for p in packets if p[1] & 0x7F == 101]
    assert len(audio) >= 10 and all(len(p) == 12 + 160 for p in audio)
    assert {p[12] for p in keys} == {1} and sum(1 for p in keys if p[13] & 0x80) == 3


@needs_sipp
def test_adapter_far_ends_and_phones_over_loopback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """RealFreeSwitch's own SIPp command lines, with a loopback registrar in FreeSWITCH's place."""
    registrar_port = PAIR_PORTS.take()
    registrar = rf.SippRun("registrar", rf.sipp_command(
        SIPP or "sipp", rf.SIPP_DIR / "loopback_registrar.xml", local_ip="127.0.0.1", port=registrar_port,
        keys={"user": "1001", "password": "op-pw"}, control_port=PAIR_PORTS.take(),
        logs=tmp_path / "registrar"), tmp_path).start()
    monkeypatch.setenv("VOICEAI_TEST_FS_OPERATOR_1001_PASSWORD", "op-pw")
    fs = rf.RealFreeSwitch("127.0.0.1:1:unused", sipp_path=SIPP or "sipp", local_ip="127.0.0.1", sip_host="127.0.0.1",
                           internal_port=registrar_port, work_dir=tmp_path / "fs", base_port=16100, domain="127.0.0.1")
    fs.far_end_port, fs.far_end_media_port = fs.ports.take(), fs.ports.take(media=True)
    try:
        _wait_listening(registrar, registrar_port)
        checks = [("79990001122", "busy", {}, fs.far_end_port, ["486"]),
                  ("7999*", "failed", {}, fs.far_end_port, ["503"]),
                  ("79990002233", "answer", {"hangup_after_ms": 300}, fs.far_end_port, ["answered", "far_end_hung_up"]),
                  ("user/1001@*", "answer", {"hangup_after_ms": 300}, None, ["answered", "far_end_hung_up"]),
                  ("user/1001@*", "no_answer", {}, None, ["cancelled"])]
        for i, (pattern, outcome, extra, port, expected) in enumerate(checks):
            fs.set_behavior(pattern, outcome=outcome, ring_ms=50, **extra)
            target = port or fs.phones["1001"].port
            leg, _ = _sipp(tmp_path / f"leg{i}", "leg", "loopback_fs_leg.xml", f"127.0.0.1:{target}",
                           {"service": "79990001122", "media": True})
            (rc,) = _finish(leg)
            outcomes = re.findall(r"outcome=(\w+)", _read(tmp_path / f"leg{i}" / "leg.logs.log"))
            assert (rc, outcomes) == (0, expected), (pattern, outcome, leg.evidence())
    finally:
        fs.stop()  # also unregisters 1001 through the registrar
        registrar.stop()
    assert not any(run.alive for run in fs._runs)


@needs_sipp
def test_real_rig_wiring_against_the_simulator(db, redis_client, test_settings, tmp_path: Path, prompt_files) -> None:
    """real_rig end to end except SIP: the simulator stands in for FreeSWITCH's ESL and conf dir."""
    from models.telephony import SipConnection
    from tests.fssim import FsSim
    from tests.support.telephony import make_telephony_tenant, wait_until
    conf = tmp_path / "fsconf"
    for sub in ("dialplan/public", "sip_profiles/external", "autoload_configs"):
        (conf / sub).mkdir(parents=True)
    for sub in ("recordings", "sounds", "rig"):
        (tmp_path / sub).mkdir()
    sim = FsSim(dialplan_dir=str(conf / "dialplan"), gateway_dir=str(conf / "sip_profiles/external/voiceai_generated"),
                tz="Europe/Moscow", heartbeat_interval=None).start()
    cfg = rf.RealFsConfig.from_env({
        "VOICEAI_TEST_FS_ESL": f"127.0.0.1:{sim.port}:ClueCon", "VOICEAI_TEST_FS_CONF_DIR": str(conf),
        "VOICEAI_TEST_FS_RECORDINGS_DIR": str(tmp_path / "recordings"), "VOICEAI_TEST_FS_SOUNDS_DIR": str(tmp_path / "sounds"),
        "VOICEAI_TEST_SIPP": SIPP or "sipp", "VOICEAI_TEST_SIPP_BASE_PORT": "17100"})
    assert cfg is not None
    try:
        with rf.real_rig(test_settings, redis_client, tmp_path / "rig", prompt_files, cfg) as rig:
            assert (rig.settings.esl_host, rig.settings.esl_port) == ("127.0.0.1", sim.port)
            assert rig.settings.freeswitch_conf_dir == str(conf) and rig.esl.proc.poll() is None
            assert all((tmp_path / "sounds" / name).exists() for name in prompt_files)
            t = make_telephony_tenant("realwire", recording=False)
            rig.apply()
            conn = SipConnection.get_by_id(t["conn"].id)
            far_end = rig.sim.far_end_port
            assert (conn.provider_host, conn.port) == ("127.0.0.1", far_end) and "127.0.0.1" in conn.allowed_ips_json
            gateway = conf / "sip_profiles/external/voiceai_generated" / f"{conn.gateway_name}.xml"
            assert f'value="127.0.0.1:{far_end}"' in gateway.read_text()
            wait_until(lambda: conn.gateway_name in rig.sim.gateways, message="the gateway in sofia status")
            rig.sim.set_behavior("79990001122", outcome="busy", ring_ms=0)  # restarts the far end, re-applies
            assert rig.sim.far_end_behavior[0] == "busy" and rig.sim.far_end is not None and rig.sim.far_end.alive
        assert rig.esl.proc.poll() is not None and not any(run.alive for run in rig.sim._runs)
    finally:
        sim.stop()
