"""FreeSWITCH configuration: rendered gateways/ACL/dialplans, generated-file safety, the installer,
and the rendered dialplan running in the FreeSWITCH simulator (tests/fssim).

No database; the installer runs with bash against a fake /etc/freeswitch in tmp_path.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
import wave
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

import pytest

from core.telephony import fs_files
from core.telephony.config_types import GatewaySpec, NumberRoute, OperatorRouteSpec, SpecError
from core.telephony.fs_files import (MARKER, NotGeneratedFileError, remove_generated,
                                     sync_generated, write_generated)
from core.telephony.render import (dial_string, gateway_filename, number_filename,
                                   operator_extension, render_acl, render_gateway, render_number,
                                   render_operator_routes, validate_allowed_ips)

REPO = Path(__file__).resolve().parents[1]
INSTALLER = REPO / "freeswitch_conf" / "install.sh"
FIXTURE_DIALPLAN = Path("/work/shared/fixtures/freeswitch/dialplan_used.xml")

HOSTILE = 'lo"g<&in\'>'
OFFICE = {"timezone": "Europe/Moscow",
          "windows": [{"days": [1, 2, 3, 4, 5], "from": "09:00", "to": "18:00"},
                      {"days": [5], "from": "22:00", "to": "02:00"}],
          "holidays": ["2026-01-01", "2026-01-02"]}


def gw(**kw: object) -> GatewaySpec:
    base: dict[str, object] = dict(name="voiceai_trunk1", host="sip.example.ru", port=5060,
                                   transport="udp", login="74951234567", password="s3cret",
                                   register=True, caller_id="+74951234567", realm=None, expire_s=600,
                                   ping_s=30, connection_id="3f2a9c1e-0000-4000-8000-000000000001")
    base.update(kw)
    return GatewaySpec(**base)  # type: ignore[arg-type]


def route(**kw: object) -> NumberRoute:
    base: dict[str, object] = dict(
        number_id="n-1", project_id="p-1", e164="+74951234567", agent_id="a-1",
        gateway_name="voiceai_trunk1", schedule=OFFICE, timezone="Europe/Moscow",
        recording_enabled=True, after_hours_action="operator",
        after_hours_message_file="/var/lib/voiceai/sounds/after_hours.wav",
        operator_route_extension="voiceai_op_r-1", audio_ws_url="ws://127.0.0.1:8090/audio",
        sample_rate="8k", recording_notice_file="/var/lib/voiceai/sounds/notice.wav")
    base.update(kw)
    return NumberRoute(**base)  # type: ignore[arg-type]


def parse(xml_text: str) -> ET.Element:
    return ET.fromstring(xml_text)


def params(root: ET.Element) -> dict[str, str]:
    return {p.get("name", ""): p.get("value", "") for p in root.iter("param")}


def actions(ext: ET.Element) -> list[tuple[str, str]]:
    return [(a.get("application", ""), a.get("data", "")) for a in ext.iter("action")]


# ---------------------------------------------------------------- gateways and ACL

def test_render_gateway_register() -> None:
    root = parse(render_gateway(gw()))
    assert root.tag == "include"
    gateway = root.find("gateway")
    assert gateway is not None and gateway.get("name") == "voiceai_trunk1"
    p = params(root)
    assert p["username"] == "74951234567" and p["password"] == "s3cret"
    assert p["realm"] == "sip.example.ru" and p["proxy"] == "sip.example.ru:5060"
    assert p["register"] == "true" and p["register-transport"] == "udp"
    assert p["expire-seconds"] == "600" and p["ping"] == "30"
    assert p["caller-id-in-from"] == "true" and p["extension"] == "auto_to_user"
    variables = {v.get("name"): (v.get("value"), v.get("direction")) for v in root.iter("variable")}
    assert variables["voiceai_sip_connection_id"] == ("3f2a9c1e-0000-4000-8000-000000000001", "inbound")
    assert variables["effective_caller_id_number"] == ("+74951234567", "outbound")


def test_render_gateway_ip_auth() -> None:
    root = parse(render_gateway(gw(register=False, login=None, password=None, transport="TCP",
                                   caller_id=None, ping_s=None, host="203.0.113.10", port=5070)))
    p = params(root)
    assert p["register"] == "false" and p["register-transport"] == "tcp"
    assert p["proxy"] == "203.0.113.10:5070"
    assert "expire-seconds" not in p and "ping" not in p
    assert p["password"]  # sofia wants a non-empty password even without registration
    assert p["caller-id-in-from"] == "false"


def test_render_gateway_escapes_hostile_credentials() -> None:
    text = render_gateway(gw(login=HOSTILE, password='p"<&>\'w', auth_username="a&b", from_user="<x>"))
    root = parse(text)  # well-formed despite the quotes and angle brackets
    p = params(root)
    assert p["username"] == HOSTILE and p["password"] == 'p"<&>\'w'
    assert p["auth-username"] == "a&b" and p["from-user"] == "<x>"
    assert "&quot;" in text and "&lt;" in text and "&amp;" in text


@pytest.mark.parametrize("kw,field", [
    (dict(name="bad name"), "name"),
    (dict(name="../etc"), "name"),
    (dict(host="sip:provider.ru"), "host"),
    (dict(host="a b"), "host"),
    (dict(port=70000), "port"),
    (dict(transport="sctp"), "transport"),
    (dict(login=None), "login"),
    (dict(password=""), "password"),
    (dict(password="x$${ldap_password}"), "password"),
    (dict(login="a\nb"), "login"),
    (dict(expire_s=10), "expire_s"),
    (dict(ping_s=2), "ping_s"),
    (dict(caller_id="84951234567"), "caller_id"),
    (dict(connection_id="${system(rm)}"), "connection_id"),
])
def test_render_gateway_rejects(kw: dict[str, object], field: str) -> None:
    with pytest.raises(SpecError) as exc:
        render_gateway(gw(**kw))
    assert exc.value.field == field
    assert any("а" <= ch <= "я" for ch in exc.value.message.lower())


def test_render_gateway_ipv6_host() -> None:
    p = params(parse(render_gateway(gw(host="2001:db8::10"))))
    assert p["proxy"] == "[2001:db8::10]:5060"


def test_gateway_filename() -> None:
    assert gateway_filename(gw()) == "voiceai_trunk1.xml"


def test_render_acl() -> None:
    text = render_acl([
        gw(allowed_ips=("203.0.113.0/24", "198.51.100.7")),
        gw(name="voiceai_ip", host="192.0.2.10", register=False, allowed_ips=("192.0.2.10/32",)),
        gw(name="voiceai_v6", allowed_ips=("2001:db8::/48", "203.0.113.5")),  # inside the /24: kept
    ])
    root = parse(text)
    lst = root.find("list")
    assert lst is not None
    assert lst.get("name") == "voiceai_trunks" and lst.get("default") == "deny"
    cidrs = [n.get("cidr") for n in lst.findall("node")]
    assert all(n.get("type") == "allow" for n in lst.findall("node"))
    assert cidrs == ["203.0.113.0/24", "198.51.100.7/32", "192.0.2.10/32", "2001:db8::/48",
                     "203.0.113.5/32"]


def test_render_acl_empty_is_deny_all() -> None:
    lst = parse(render_acl([])).find("list")
    assert lst is not None and lst.get("default") == "deny" and not lst.findall("node")


@pytest.mark.parametrize("bad", ["not-an-ip", "0.0.0.0/0", "10.0.0.0/4", "::/0", '1.2.3.4"/>'])
def test_render_acl_rejects(bad: str) -> None:
    with pytest.raises(SpecError):
        render_acl([gw(allowed_ips=(bad,))])


def test_validate_allowed_ips() -> None:
    assert validate_allowed_ips(["203.0.113.10", "198.51.100.0/24"]) == {}
    errors = validate_allowed_ips(["203.0.113.10", "nope", "0.0.0.0/0"])
    assert set(errors) == {"allowed_ips.1", "allowed_ips.2"}
    assert validate_allowed_ips("1.2.3.4") == {"allowed_ips": "Ожидается список IP-адресов или подсетей"}
    assert validate_allowed_ips(None) == {}


# ---------------------------------------------------------------- number dialplan

def _extensions(text: str) -> list[ET.Element]:
    root = parse(text)
    assert root.tag == "include"
    return root.findall("extension")


def test_render_number_structure() -> None:
    exts = _extensions(render_number(route()))
    names = [e.get("name") for e in exts]
    assert names == ["voiceai_num_n-1_vars", "voiceai_num_n-1_holiday_0", "voiceai_num_n-1_open_0",
                     "voiceai_num_n-1_open_1", "voiceai_num_n-1_open_2", "voiceai_num_n-1_after_hours"]
    first = exts[0]
    assert first.get("continue") == "true"
    cond = first.find("condition")
    assert cond is not None
    assert cond.get("field") == "destination_number" and cond.get("expression") == r"^\+?74951234567$"
    inline = {a.get("data", "").split("=", 1)[0]: a.get("data", "").split("=", 1)[1]
              for a in cond.findall("action")}
    assert all(a.get("inline") == "true" and a.get("application") == "set" for a in cond.findall("action"))
    assert inline["voiceai_project_id"] == "p-1" and inline["voiceai_number_id"] == "n-1"
    assert inline["voiceai_agent_id"] == "a-1" and inline["voiceai_trace_id"] == "${uuid}"
    assert inline["timezone"] == "Europe/Moscow" and inline["voiceai_recording"] == "true"
    # Holidays: the after-hours flow under a year/mon/mday condition.
    holiday = exts[1].findall("condition")
    assert holiday[1].attrib == {"year": "2026", "mon": "1", "mday": "1-2"}
    # Windows: FreeSWITCH weekdays and the wrap-around window split in two.
    times = [e.findall("condition")[1].attrib for e in exts[2:5]]
    assert times == [{"wday": "2-6", "time-of-day": "09:00-18:00"},
                     {"wday": "6", "time-of-day": "22:00-24:00"},
                     {"wday": "7", "time-of-day": "00:00-02:00"}]
    for e in exts[1:]:
        assert e.get("continue") is None  # the first matching one ends the hunt


def test_render_number_in_hours_flow_matches_captured_shape() -> None:
    ext = _extensions(render_number(route()))[2]
    acts = actions(ext)
    apps = [a for a, _ in acts]
    assert apps == ["set", "set", "answer", "playback", "park"]
    fork = acts[1][1]
    assert fork == ('api_on_answer=uuid_audio_fork ${uuid} start ws://127.0.0.1:8090/audio mono 8k '
                    'voiceai {"callId":"${uuid}","projectId":"p-1","numberId":"n-1"}')
    assert acts[3][1] == "/var/lib/voiceai/sounds/notice.wav"
    # The captured dialplan writes the JSON quotes as &quot;; so does the renderer.
    raw = render_number(route())
    assert ('voiceai {&quot;callId&quot;:&quot;${uuid}&quot;,&quot;projectId&quot;:&quot;p-1&quot;'
            in raw)
    captured = FIXTURE_DIALPLAN.read_text() if FIXTURE_DIALPLAN.exists() else ""
    if captured:
        assert "voiceai {&quot;callId&quot;:&quot;${uuid}&quot;" in captured


def test_render_number_no_notice_without_recording() -> None:
    for r in (route(recording_enabled=False), route(recording_notice_file=None)):
        ext = _extensions(render_number(r))[2]
        assert "playback" not in [a for a, _ in actions(ext)]


def test_render_number_16k_and_wss() -> None:
    ext = _extensions(render_number(route(sample_rate="16k", audio_ws_url="wss://ai.local:8443/audio")))[2]
    assert " start wss://ai.local:8443/audio mono 16k voiceai " in actions(ext)[1][1]


def test_render_number_after_hours_actions() -> None:
    op = actions(_extensions(render_number(route()))[-1])
    assert op == [("set", "voiceai_route=after_hours"),
                  ("transfer", "voiceai_op_r-1 XML voiceai_operators")]
    msg = actions(_extensions(render_number(route(after_hours_action="message")))[-1])
    assert msg == [("set", "voiceai_route=after_hours"), ("answer", ""),
                   ("playback", "/var/lib/voiceai/sounds/after_hours.wav"),
                   ("hangup", "NORMAL_CLEARING")]
    hang = actions(_extensions(render_number(route(after_hours_action="hangup",
                                                   after_hours_message_file=None)))[-1])
    assert hang == [("set", "voiceai_route=after_hours"), ("hangup", "NORMAL_CLEARING")]
    hang_msg = actions(_extensions(render_number(route(after_hours_action="hangup")))[-1])
    assert [a for a, _ in hang_msg] == ["set", "answer", "playback", "hangup"]
    # Holidays run the same after-hours flow.
    holiday = actions(_extensions(render_number(route(after_hours_action="message")))[1])
    assert holiday == msg


@pytest.mark.parametrize("schedule", [None, {}, {"always_open": True, "windows": OFFICE["windows"]}])
def test_render_number_without_schedule_is_only_in_hours(schedule: object) -> None:
    exts = _extensions(render_number(route(schedule=schedule, operator_route_extension=None)))
    assert [e.get("name") for e in exts] == ["voiceai_num_n-1_vars", "voiceai_num_n-1_open"]
    assert [a for a, _ in actions(exts[1])] == ["set", "set", "answer", "playback", "park"]


def test_render_number_schedule_timezone_wins() -> None:
    text = render_number(route(schedule=dict(OFFICE, timezone="Asia/Vladivostok")))
    assert 'data="timezone=Asia/Vladivostok"' in text
    text = render_number(route(schedule={"windows": OFFICE["windows"]}, timezone="Asia/Yekaterinburg"))
    assert 'data="timezone=Asia/Yekaterinburg"' in text


@pytest.mark.parametrize("kw,field", [
    (dict(e164="84951234567"), "e164"),
    (dict(number_id="n 1"), "number_id"),
    (dict(project_id="p}1"), "project_id"),
    (dict(agent_id="${system(id)}"), "agent_id"),
    (dict(audio_ws_url="http://x/audio"), "audio_ws_url"),
    (dict(audio_ws_url="ws://x/a b"), "audio_ws_url"),
    (dict(audio_ws_url="ws://x/${uuid}"), "audio_ws_url"),
    (dict(sample_rate="48k"), "sample_rate"),
    (dict(recording_notice_file="relative.wav"), "recording_notice_file"),
    (dict(recording_notice_file="/tmp/${x}.wav"), "recording_notice_file"),
    (dict(after_hours_action="voicemail"), "after_hours_action"),
    (dict(operator_route_extension=None), "operator_route_extension"),
    (dict(after_hours_action="message", after_hours_message_file=None), "after_hours_message_file"),
    (dict(schedule={"windows": [{"days": [9], "from": "09:00", "to": "18:00"}]}), "schedule"),
    (dict(gateway_name="bad gw"), "gateway_name"),
])
def test_render_number_rejects(kw: dict[str, object], field: str) -> None:
    with pytest.raises(SpecError) as exc:
        render_number(route(**kw))
    assert exc.value.field == field


def test_number_filename() -> None:
    assert number_filename(route()) == "number_n-1.xml"


# ---------------------------------------------------------------- operator routes

def test_dial_string() -> None:
    ext = OperatorRouteSpec("r1", "Дежурный", "sip_extension", ("1001",))
    assert dial_string(ext) == "user/1001@${domain_name}"
    assert dial_string(ext, domain="pbx.local") == "user/1001@pbx.local"
    group = OperatorRouteSpec("r2", "Продажи", "ring_group", ["1001", " 1002 ", "1003"])
    assert dial_string(group) == "user/1001@${domain_name},user/1002@${domain_name},user/1003@${domain_name}"
    seq = OperatorRouteSpec("r3", "Очередь", "ring_group", ("1001", "1002"), ring_strategy="sequential")
    assert dial_string(seq, "d") == "user/1001@d|user/1002@d"
    external = OperatorRouteSpec("r4", "Мобильный", "external_number", ("+79161234567",),
                                 gateway_name="voiceai_trunk1", caller_id="+74951234567")
    assert dial_string(external) == ("[origination_caller_id_number=+74951234567]"
                                     "sofia/gateway/voiceai_trunk1/+79161234567")


@pytest.mark.parametrize("spec", [
    OperatorRouteSpec("r", "x", "sip_extension", ()),
    OperatorRouteSpec("r", "x", "sip_extension", ("1001", "1002")),
    OperatorRouteSpec("r", "x", "ring_group", ("10 01",)),
    OperatorRouteSpec("r", "x", "ring_group", ("1001@evil",)),
    OperatorRouteSpec("r", "x", "external_number", ("+79161234567",)),           # no gateway
    OperatorRouteSpec("r", "x", "external_number", ("89161234567",), gateway_name="gw"),
    OperatorRouteSpec("r", "x", "queue", ("1001",)),
    OperatorRouteSpec("r", "x", "ring_group", ("1001",), ring_strategy="random"),
])
def test_dial_string_rejects(spec: OperatorRouteSpec) -> None:
    with pytest.raises(SpecError):
        dial_string(spec)


def test_render_operator_routes() -> None:
    text = render_operator_routes([
        OperatorRouteSpec("r-1", "Продажи", "ring_group", ("1001", "1002"), ring_timeout_s=25),
        OperatorRouteSpec("r-2", "Мобильный", "external_number", ("+79161234567",),
                          gateway_name="voiceai_trunk1"),
    ])
    exts = _extensions(text)
    assert [e.get("name") for e in exts] == ["voiceai_operators_domain", "voiceai_op_r-1",
                                             "voiceai_op_r-2", "voiceai_operator_fallback"]
    cond = exts[1].find("condition")
    assert cond is not None and cond.get("expression") == "^voiceai_op_r-1$"
    assert actions(exts[1]) == [
        ("set", "voiceai_operator_route_id=r-1"), ("set", "call_timeout=25"),
        ("set", "continue_on_fail=true"), ("set", "hangup_after_bridge=true"),
        ("bridge", "user/1001@${domain_name},user/1002@${domain_name}"),
        ("transfer", "voiceai_operator_fallback XML voiceai_operators")]
    assert ("bridge", "sofia/gateway/voiceai_trunk1/+79161234567") in actions(exts[2])
    assert actions(exts[3]) == [("set", "voiceai_operator_fallback=true"),
                                ("set", "voiceai_operator_fail_cause=${originate_disposition}"),
                                ("park", "")]
    assert operator_extension("r-1") == "voiceai_op_r-1"


def test_render_operator_routes_rejects_duplicates_and_timeouts() -> None:
    r = OperatorRouteSpec("r-1", "x", "sip_extension", ("1001",))
    with pytest.raises(SpecError):
        render_operator_routes([r, r])
    with pytest.raises(SpecError):
        render_operator_routes([OperatorRouteSpec("r-1", "x", "sip_extension", ("1001",),
                                                  ring_timeout_s=1)])
    assert len(_extensions(render_operator_routes([]))) == 2  # domain default + fallback


# ---------------------------------------------------------------- generated files

def gen_dir(tmp_path: Path) -> Path:
    d = tmp_path / "dialplan" / "public" / "voiceai_generated"
    d.parent.mkdir(parents=True)
    return d


def test_write_generated_adds_marker_and_is_atomic(tmp_path: Path) -> None:
    d = gen_dir(tmp_path)
    assert write_generated(d, "number_n-1.xml", render_number(route())) is True
    text = (d / "number_n-1.xml").read_text()
    assert text.splitlines()[0] == MARKER
    ET.fromstring(text)  # the marker comment keeps the file well-formed
    assert oct((d / "number_n-1.xml").stat().st_mode & 0o777) == oct(fs_files.FILE_MODE)
    assert write_generated(d, "number_n-1.xml", render_number(route())) is False  # unchanged
    assert write_generated(d, "number_n-1.xml", render_number(route(agent_id="a-2"))) is True
    assert 'voiceai_agent_id=a-2' in (d / "number_n-1.xml").read_text()
    assert [p.name for p in d.iterdir()] == ["number_n-1.xml"]  # no temp files left


def test_write_generated_marker_not_duplicated(tmp_path: Path) -> None:
    d = gen_dir(tmp_path)
    write_generated(d, "a.xml", MARKER + "\n<include/>\n")
    assert (d / "a.xml").read_text().count(MARKER) == 1


def test_write_generated_refuses_admin_file(tmp_path: Path) -> None:
    d = gen_dir(tmp_path)
    d.mkdir()
    admin = d / "number_n-1.xml"
    admin.write_text("<include><!-- my own route --></include>\n")
    with pytest.raises(NotGeneratedFileError):
        write_generated(d, "number_n-1.xml", render_number(route()))
    assert admin.read_text() == "<include><!-- my own route --></include>\n"
    with pytest.raises(NotGeneratedFileError):
        remove_generated(d, "number_n-1.xml")
    assert admin.exists()


@pytest.mark.parametrize("dirname,filename", [
    ("voiceai_custom", "a.xml"), ("public", "a.xml"),
    ("voiceai_generated", "../a.xml"), ("voiceai_generated", "a.txt"),
    ("voiceai_generated", ".hidden.xml"), ("voiceai_generated", "sub/a.xml"),
])
def test_write_generated_only_into_generated_dir(tmp_path: Path, dirname: str, filename: str) -> None:
    with pytest.raises(ValueError):
        write_generated(tmp_path / dirname, filename, "<include/>")


def test_remove_generated(tmp_path: Path) -> None:
    d = gen_dir(tmp_path)
    write_generated(d, "a.xml", "<include/>")
    assert remove_generated(d, "a.xml") is True
    assert remove_generated(d, "a.xml") is False


def test_sync_generated_deletes_stale_generated_only(tmp_path: Path) -> None:
    d = gen_dir(tmp_path)
    write_generated(d, "number_old.xml", "<include/>")
    write_generated(d, "number_keep.xml", "<include/>")
    (d / "admin_route.xml").write_text("<include/>\n")          # an admin's file in our dir
    (d / "notes.txt").write_text("not xml\n")
    stale_tmp = d / ".voiceai-tmp-dead-number_x.xml"
    stale_tmp.write_text("half")
    os.utime(stale_tmp, (time.time() - 3600, time.time() - 3600))
    result = sync_generated(d, {"number_keep.xml": "<include/>", "number_new.xml": "<include/>"})
    assert result.written == ["number_new.xml"]
    assert result.unchanged == ["number_keep.xml"]
    assert result.removed == ["number_old.xml"]
    assert result.foreign == ["admin_route.xml"]
    assert result.changed
    assert sorted(p.name for p in d.iterdir()) == ["admin_route.xml", "notes.txt",
                                                  "number_keep.xml", "number_new.xml"]
    again = sync_generated(d, {"number_keep.xml": "<include/>", "number_new.xml": "<include/>"})
    assert not again.changed and again.unchanged == ["number_keep.xml", "number_new.xml"]


def test_sync_generated_refuses_clash_before_writing(tmp_path: Path) -> None:
    d = gen_dir(tmp_path)
    d.mkdir()
    (d / "number_b.xml").write_text("<include/>\n")  # admin's
    with pytest.raises(NotGeneratedFileError):
        sync_generated(d, {"number_a.xml": "<include/>", "number_b.xml": "<include/>"})
    assert not (d / "number_a.xml").exists()  # nothing half-applied


# ---------------------------------------------------------------- static configuration files

STATIC_FILES = sorted((REPO / "freeswitch_conf" / "conf").rglob("*.xml")) + \
    sorted((REPO / "freeswitch_conf" / "seed").rglob("*.xml"))


@pytest.mark.parametrize("path", STATIC_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_static_files_well_formed(path: Path) -> None:
    ET.parse(path)


def test_static_files_follow_freeswitch_preprocessor_rules() -> None:
    """switch_xml.c drops whole lines holding <include>/</include>/"<?" and handles X-PRE-PROCESS
    anywhere on a line, comments included: keep such tags alone on their lines."""
    for path in STATIC_FILES + sorted((REPO / "dialplan" / "templates").glob("*.j2")) + \
            sorted((REPO / "freeswitch_conf" / "templates").glob("*.j2")):
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if "<include>" in line or "</include>" in line:
                assert stripped in ("<include>", "</include>"), (path, line)
            if "X-PRE-PROCESS" in line:
                assert stripped.startswith("<X-PRE-PROCESS ") and stripped.endswith("/>"), (path, line)
            assert "<?" not in line, (path, line)


def test_static_config_contents() -> None:
    conf = REPO / "freeswitch_conf" / "conf"
    esl = params(ET.parse(conf / "autoload_configs/event_socket.conf.xml").getroot())
    assert esl == {"nat-map": "false", "listen-ip": "127.0.0.1", "listen-port": "8021",
                   "password": "$${voiceai_esl_password}", "apply-inbound-acl": "loopback.auto"}
    modules = {m.get("module") for m in ET.parse(conf / "autoload_configs/modules.conf.xml").iter("load")}
    for mod in ("mod_event_socket", "mod_sofia", "mod_dialplan_xml", "mod_audio_fork", "mod_sndfile",
                "mod_native_file", "mod_tone_stream", "mod_commands", "mod_dptools", "mod_loopback"):
        assert mod in modules
    assert "mod_avmd" in (conf / "autoload_configs/modules.conf.xml").read_text()  # optional
    switch = params(ET.parse(conf / "autoload_configs/switch.conf.xml").getroot())
    assert (switch["rtp-start-port"], switch["rtp-end-port"]) == ("16384", "32768")
    acl = ET.parse(conf / "autoload_configs/acl.conf.xml").getroot()
    lists = {lst.get("name"): lst for lst in acl.iter("list")}
    assert {"domains", "voiceai_phones", "voiceai_trunks_custom"} <= set(lists)
    ext = ET.parse(conf / "sip_profiles/external.xml").getroot()
    ext_acl = [p.get("value") for p in ext.iter("param") if p.get("name") == "apply-inbound-acl"]
    assert ext_acl == ["voiceai_trunks", "voiceai_trunks_custom"]
    assert params(ext)["sip-port"] == "5080" and params(ext)["context"] == "public"
    includes = [x.get("data") for x in ext.iter("X-PRE-PROCESS")]
    assert "external/voiceai_generated/*.xml" in includes
    internal = ET.parse(conf / "sip_profiles/internal.xml").getroot()
    ip = params(internal)
    assert ip["sip-port"] == "5060" and ip["auth-calls"] == "true"
    assert "apply-register-acl" not in ip  # that would let listed IPs register without a password
    users = ET.parse(conf / "directory/default/voiceai_operators.xml").getroot().findall("user")
    assert [u.get("id") for u in users] == ["1001", "1002", "1003"]
    for u in users:
        up = params(u)
        assert up["password"] == f"$${{voiceai_operator_{u.get('id')}_password}}"
        assert up["auth-acl"] == "voiceai_phones"
    public = [x.get("data") for x in ET.parse(conf / "dialplan/public/00_voiceai.xml").iter("X-PRE-PROCESS")]
    assert public == ["voiceai_custom/*.xml", "voiceai_generated/*.xml"]  # custom first
    ops = ET.parse(conf / "dialplan/voiceai_operators.xml").getroot().find("context")
    assert ops is not None and ops.get("name") == "voiceai_operators"


def test_seed_acl_is_a_generated_file() -> None:
    seed = REPO / "freeswitch_conf/seed/autoload_configs/voiceai_acl/voiceai_generated/voiceai_trunks.xml"
    assert seed.read_text().splitlines()[0] == MARKER
    assert fs_files.is_generated(seed)


# ---------------------------------------------------------------- installer

def fake_freeswitch(root: Path) -> Path:
    """A minimal stock-looking /etc/freeswitch."""
    for sub in ("autoload_configs", "sip_profiles/external", "directory/default", "dialplan/public"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "freeswitch.xml").write_text('<?xml version="1.0"?>\n<document type="freeswitch/xml">\n</document>\n')
    (root / "vars.xml").write_text('<include>\n  <X-PRE-PROCESS cmd="set" data="default_password=1234"/>\n'
                                   '  <X-PRE-PROCESS cmd="set" data="domain=$${local_ip_v4}"/>\n</include>\n')
    (root / "autoload_configs/event_socket.conf.xml").write_text(
        '<configuration name="event_socket.conf"><settings>'
        '<param name="password" value="ClueCon"/></settings></configuration>\n')
    (root / "sip_profiles/external.xml").write_text('<profile name="external"/>\n')
    (root / "sip_profiles/external/example.xml").write_text('<include>\n</include>\n')
    (root / "directory/default/1001.xml").write_text('<include>\n  <user id="1001"/>\n</include>\n')
    (root / "directory/default/1010.xml").write_text('<include>\n  <user id="1010"/>\n</include>\n')
    (root / "dialplan/public/00_inbound_did.xml").write_text('<include>\n</include>\n')
    return root


def run_installer(target: Path, *args: str, password: str | None = "VoiceAiEslPass_2026") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "VOICEAI_ESL_PASSWORD"}
    env["VOICEAI_APP_USER"] = "voiceai-test-no-such-user"
    if password is not None:
        env["VOICEAI_ESL_PASSWORD"] = password
    return subprocess.run(["bash", str(INSTALLER), "--target", str(target), *args], env=env,
                          capture_output=True, text=True, timeout=60)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def backups(root: Path) -> list[Path]:
    return sorted(root.glob("voiceai-backup-*"))


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is required")
def test_installer_installs_backs_up_and_is_idempotent(tmp_path: Path) -> None:
    root = fake_freeswitch(tmp_path / "freeswitch")
    stock_esl = (root / "autoload_configs/event_socket.conf.xml").read_text()
    stock_vars = (root / "vars.xml").read_text()
    first = run_installer(root)
    assert first.returncode == 0, first.stderr + first.stdout
    assert "fs_cli -x reloadxml" in first.stdout and "reloadacl" in first.stdout
    assert "sofia profile external rescan" in first.stdout

    # Installed files equal the repository's.
    src = REPO / "freeswitch_conf" / "conf"
    for path in src.rglob("*.xml"):
        assert (root / path.relative_to(src)).read_bytes() == path.read_bytes()

    # Every replaced or moved file is in one backup dir, with its path.
    [backup] = backups(root)
    assert (backup / "autoload_configs/event_socket.conf.xml").read_text() == stock_esl
    assert (backup / "sip_profiles/external.xml").exists()
    assert (backup / "vars.xml").read_text() == stock_vars
    assert (backup / "directory/default/1001.xml").exists()
    assert not (root / "directory/default/1001.xml").exists()  # shadowed operator 1001
    assert (root / "directory/default/1010.xml").exists()      # not ours: left, with a warning
    assert "1 stock demo users" in first.stdout

    # Secrets and the vars.xml include.
    vars_text = (root / "vars.xml").read_text()
    assert vars_text.count('data="voiceai_vars.xml"') == 1
    assert 'data="default_password=1234"' in vars_text
    secrets_file = root / "voiceai_vars.xml"
    secrets_text = secrets_file.read_text()
    assert 'data="voiceai_esl_password=VoiceAiEslPass_2026"' in secrets_text
    for ext in ("1001", "1002", "1003"):
        assert f'data="voiceai_operator_{ext}_password=' in secrets_text
    assert secrets_file.stat().st_mode & 0o777 == 0o640
    ET.fromstring(secrets_text)

    # Generated and custom directories, seeds.
    for rel in ("dialplan/public", "dialplan/voiceai_operators", "sip_profiles/external",
                "autoload_configs/voiceai_acl"):
        assert (root / rel / "voiceai_generated").is_dir()
        assert (root / rel / "voiceai_custom").is_dir()
    acl_seed = root / "autoload_configs/voiceai_acl/voiceai_generated/voiceai_trunks.xml"
    assert fs_files.is_generated(acl_seed)
    # The platform can take the seeded ACL over.
    assert write_generated(acl_seed.parent, "voiceai_trunks.xml", render_acl([gw(allowed_ips=("203.0.113.1",))]))
    # Untouched stock files.
    assert (root / "sip_profiles/external/example.xml").exists()
    assert (root / "dialplan/public/00_inbound_did.xml").exists()

    # Second run: nothing changes, no new backup.
    before = snapshot(root)
    second = run_installer(root)
    assert second.returncode == 0, second.stderr
    assert "Nothing to change" in second.stdout
    assert snapshot(root) == before
    assert len(backups(root)) == 1

    # Without VOICEAI_ESL_PASSWORD the installed password is kept.
    third = run_installer(root, password=None)
    assert third.returncode == 0 and "Nothing to change" in third.stdout
    assert snapshot(root) == before


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is required")
def test_installer_password_change_keeps_operator_passwords(tmp_path: Path) -> None:
    root = fake_freeswitch(tmp_path / "fs")
    assert run_installer(root).returncode == 0
    old = (root / "voiceai_vars.xml").read_text()
    time.sleep(1.1)  # a new backup directory name
    changed = run_installer(root, password="AnotherPassword_99")
    assert changed.returncode == 0, changed.stderr
    new = (root / "voiceai_vars.xml").read_text()
    assert "voiceai_esl_password=AnotherPassword_99" in new
    assert [l for l in old.splitlines() if "operator" in l] == [l for l in new.splitlines() if "operator" in l]
    assert "reload mod_event_socket" in changed.stdout
    assert len(backups(root)) == 2
    assert (backups(root)[-1] / "voiceai_vars.xml").read_text() == old


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is required")
def test_installer_generates_password_and_dry_run(tmp_path: Path) -> None:
    root = fake_freeswitch(tmp_path / "fs")
    before = snapshot(root)
    dry = run_installer(root, "--dry-run", password=None)
    assert dry.returncode == 0, dry.stderr
    assert "dry run" in dry.stdout.lower()
    assert "replace   autoload_configs/event_socket.conf.xml" in dry.stdout
    assert snapshot(root) == before and not backups(root)
    real = run_installer(root, password=None)
    assert real.returncode == 0
    assert "Generated an ESL password" in real.stdout
    text = (root / "voiceai_vars.xml").read_text()
    value = text.split("voiceai_esl_password=", 1)[1].split('"', 1)[0]
    assert len(value) == 24 and value.isalnum()
    assert value not in real.stdout  # the secret is not printed


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is required")
@pytest.mark.parametrize("password", ["short", "ClueCon", 'has"quote_and_more', "spa ce_password_1"])
def test_installer_rejects_bad_password(tmp_path: Path, password: str) -> None:
    root = fake_freeswitch(tmp_path / "fs")
    result = run_installer(root, password=password)
    assert result.returncode != 0
    assert "VOICEAI_ESL_PASSWORD" in result.stderr or "ClueCon" in result.stderr


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is required")
def test_installer_refuses_non_freeswitch_dir(tmp_path: Path) -> None:
    result = run_installer(tmp_path)
    assert result.returncode != 0 and "freeswitch.xml" in result.stderr


# ---------------------------------------------------------------- in the FreeSWITCH simulator

fssim = pytest.importorskip("tests.fssim", reason="FreeSWITCH simulator (tests/fssim) not available")


@pytest.fixture()
def installed_dialplan(tmp_path: Path):
    """install.sh into a fake /etc/freeswitch, then the platform's files written by fs_files."""
    root = fake_freeswitch(tmp_path / "freeswitch")
    assert run_installer(root).returncode == 0
    notice = tmp_path / "notice.wav"
    with wave.open(str(notice), "wb") as w:  # 0.2 s of silence, 8 kHz mono
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 1600)
    public = root / "dialplan/public/voiceai_generated"
    ops = root / "dialplan/voiceai_operators/voiceai_generated"
    gws = root / "sip_profiles/external/voiceai_generated"
    number = route(after_hours_action="operator", audio_ws_url="ws://127.0.0.1:9/audio",
                   recording_notice_file=str(notice))
    sync_generated(public, {number_filename(number): render_number(number),
                            "number_n-2.xml": render_number(route(
                                number_id="n-2", e164="+74951234568", schedule=None,
                                audio_ws_url="ws://127.0.0.1:9/audio",
                                recording_notice_file=str(notice)))})
    sync_generated(ops, {"operator_routes.xml": render_operator_routes([
        OperatorRouteSpec("r-1", "Продажи", "ring_group", ("1001", "1002"), ring_timeout_s=5)])})
    sync_generated(gws, {gateway_filename(gw()): render_gateway(gw())})
    sim = fssim.FsSim(dialplan_dir=str(root / "dialplan"), gateway_dir=str(gws), tz="UTC",
                      heartbeat_interval=None).start()
    sim.notice_file = str(notice)
    try:
        yield sim
    finally:
        sim.stop()


def _at(sim, when: datetime) -> None:
    sim.now = lambda: when


def test_fssim_loads_rendered_files(installed_dialplan) -> None:
    sim = installed_dialplan
    assert sim.dialplan.errors == []
    names = [e.name for e in sim.dialplan.contexts["public"]]
    assert names[0] == "voiceai_num_n-1_vars"
    assert "voiceai_op_r-1" in [e.name for e in sim.dialplan.contexts["voiceai_operators"]]
    assert "voiceai_trunk1" in sim.gateways


def test_fssim_in_hours_call_is_answered_and_parked(installed_dialplan) -> None:
    sim = installed_dialplan
    _at(sim, datetime(2026, 11, 23, 7, 0, tzinfo=timezone.utc))  # Monday 10:00 Moscow
    call = sim.inbound_call(caller="79161234567", destination="74951234567")
    call.wait_for("CHANNEL_PARK", timeout=5)
    v = call.variables
    assert v["voiceai_route"] == "in_hours"
    assert v["voiceai_project_id"] == "p-1" and v["voiceai_number_id"] == "n-1"
    assert v["voiceai_trace_id"] == call.uuid and v["timezone"] == "Europe/Moscow"
    assert v["api_on_answer"].startswith(f"uuid_audio_fork {call.uuid} start ws://127.0.0.1:9/audio mono 8k")
    assert call.answered
    call.wait_playback_done(timeout=5)
    assert [p.path for p in call.heard] == [sim.notice_file]
    call.hangup()


def test_fssim_plus_prefixed_did_matches(installed_dialplan) -> None:
    sim = installed_dialplan
    _at(sim, datetime(2026, 11, 23, 7, 0, tzinfo=timezone.utc))
    call = sim.inbound_call(destination="+74951234567")
    call.wait_for("CHANNEL_PARK", timeout=5)
    assert call.variables["voiceai_route"] == "in_hours"
    call.hangup()


@pytest.mark.parametrize("when", [
    datetime(2026, 11, 23, 16, 0, tzinfo=timezone.utc),  # Monday 19:00 Moscow: after hours
    datetime(2026, 11, 29, 9, 0, tzinfo=timezone.utc),   # Sunday
    datetime(2026, 1, 1, 9, 0, tzinfo=timezone.utc),     # holiday (a Thursday, 12:00 Moscow)
])
def test_fssim_after_hours_goes_to_operators(installed_dialplan, when: datetime) -> None:
    sim = installed_dialplan
    _at(sim, when)
    # The endpoint is matched with its domain: voiceai_operators_domain filled ${domain_name}
    # from $${domain} (127.0.0.1 in the simulator) for a call that came in from a trunk.
    sim.set_behavior("user/1001@127.0.0.1", "answer", ring_ms=50)
    call = sim.inbound_call(destination="74951234567")
    call.wait_for("CHANNEL_BRIDGE", timeout=5)
    v = call.variables
    assert v["voiceai_route"] == "after_hours"
    assert v["voiceai_operator_route_id"] == "r-1"
    assert "api_on_answer" not in v
    call.hangup()


def test_fssim_wrap_around_window_after_midnight(installed_dialplan) -> None:
    sim = installed_dialplan
    _at(sim, datetime(2026, 11, 27, 22, 30, tzinfo=timezone.utc))  # Saturday 01:30 Moscow
    call = sim.inbound_call(destination="74951234567")
    call.wait_for("CHANNEL_PARK", timeout=5)
    assert call.variables["voiceai_route"] == "in_hours"
    call.hangup()


def test_fssim_operator_no_answer_falls_back_to_park(installed_dialplan) -> None:
    sim = installed_dialplan
    _at(sim, datetime(2026, 11, 23, 16, 0, tzinfo=timezone.utc))
    # No behaviour for user/1001, 1002: not registered, the bridge fails.
    call = sim.inbound_call(destination="74951234567")
    call.wait_for("CHANNEL_PARK", timeout=5)
    v = call.variables
    assert v["voiceai_operator_fallback"] == "true"
    assert v["voiceai_operator_fail_cause"]
    call.hangup()


def test_fssim_number_without_schedule_always_in_hours(installed_dialplan) -> None:
    sim = installed_dialplan
    _at(sim, datetime(2026, 1, 1, 23, 0, tzinfo=timezone.utc))
    call = sim.inbound_call(destination="74951234568")
    call.wait_for("CHANNEL_PARK", timeout=5)
    assert call.variables["voiceai_route"] == "in_hours"
    assert call.variables["voiceai_number_id"] == "n-2"
    call.hangup()


def test_fssim_unknown_number_has_no_route(installed_dialplan) -> None:
    sim = installed_dialplan
    call = sim.inbound_call(destination="74950000000")
    call.wait_hangup(timeout=5)
    assert call.hangup_cause == "NO_ROUTE_DESTINATION"
