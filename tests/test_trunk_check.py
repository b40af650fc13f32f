"""«Проверить подключение» of a SIP trunk: the probe, the verdict and the CLI, over real sockets.

The provider is ``tests.fake_sip.FakeSipServer`` on 127.0.0.1 (UDP and TCP); DNS failures use the
reserved ``.invalid`` TLD (RFC 6761), which never resolves. Timeouts are short so the whole file
stays within a few seconds.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.telephony import sip_probe
from core.telephony.sip_probe import (build_authorization, digest_response, options_ping, parse_challenge,
                                      parse_message, register_probe)
from core.telephony.trunk_check import TrunkParams, check_trunk, parse_gateway_status
from scripts.trunk_check import main as cli_main
from tests.fake_sip import FakeSipServer, free_tcp_port

REPO_ROOT = Path(__file__).resolve().parents[1]
FAST = {"timeout": 0.4, "retries": 1}

# `sofia status gateway <name>` as mod_sofia prints it (sofia.c cmd_status): a rule of '=', then
# "Key<pad>\tValue" lines. The unknown-gateway reply is the one captured from FreeSWITCH 1.10.12
# (Content-Length: 17).
INVALID_GATEWAY = "Invalid Gateway!\n"
RULE = "=" * 97
REGED_OUTPUT = "\n".join([
    RULE,
    "Name    \tvoiceai_7",
    "Profile \texternal",
    "Scheme  \tDigest",
    "Realm   \tsip.provider.example",
    "Username\t100",
    "Password\tyes",
    "From    \t<sip:100@sip.provider.example>",
    "Contact \t<sip:gw+voiceai_7@10.0.0.5:5080;transport=udp;gw=voiceai_7>",
    "Exten   \t100",
    "To      \tsip:100@sip.provider.example",
    "Proxy   \tsip:sip.provider.example",
    "Context \tpublic",
    "Expires \t600",
    "Freq    \t600",
    "Ping    \t1795540240",
    "PingFreq\t30",
    "PingTime\t23.41",
    "PingState\t1/1/3",
    "State   \tREGED",
    "Status  \tUP (ping)",
    "Uptime  \t3721s",
    "CallsIN \t12",
    "CallsOUT\t40",
    "FailedCallsIN\t0",
    "FailedCallsOUT\t3",
    RULE,
    "",
])
FAIL_WAIT_OUTPUT = (REGED_OUTPUT.replace("State   \tREGED", "State   \tFAIL_WAIT")
                    .replace("Status  \tUP (ping)", "Status  \tDOWN")
                    .replace("Uptime  \t3721s", "Uptime  \t0s"))


def _params(srv: FakeSipServer, transport: str = "udp", login: str = "100", password: str = "secret",
            **kw) -> TrunkParams:
    return TrunkParams(host="localhost", port=srv.port, transport=transport, login=login,
                       password=password, **kw)


# ---------------------------------------------------------------------------------------------
# The four answers

@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_success_registers_with_digest_then_unregisters(transport):
    with FakeSipServer(users={"100": "secret"}) as srv:
        report = check_trunk(_params(srv, transport), **FAST)
        log = srv.requests()

    assert report.ok, report.to_dict()
    assert report.error_code is None and report.how_to_fix_ru == []
    assert report.reason_ru.startswith("Подключение работает: регистрация успешна, задержка ")
    assert report.reason_ru.endswith(" мс")
    assert [s.name for s in report.steps] == ["dns", "options", "register"]
    assert all(s.ok and s.status == "ok" for s in report.steps)
    assert "localhost → 127.0.0.1" in report.steps[0].detail_ru
    assert "проверочная регистрация снята" in report.steps[2].detail_ru
    assert report.sip_status == 200 and report.server_header.startswith("FakeSIP")

    assert [(r.method, r.transport, r.response_status) for r in log] == [
        ("OPTIONS", transport, 200), ("REGISTER", transport, 401),
        ("REGISTER", transport, 200), ("REGISTER", transport, 200)]
    first, authed, unreg = log[1], log[2], log[3]
    assert first.header("authorization") is None
    assert authed.header("authorization").startswith("Digest ") and authed.user == "100"
    assert 'qop=auth' in authed.header("authorization") and "nc=00000001" in authed.header("authorization")
    assert authed.expires and authed.expires > 0
    # The clean-up removes exactly our binding: Expires 0 on the same Contact, never "Contact: *".
    assert unreg.expires == 0 and unreg.header("expires") == "0"
    assert unreg.header("contact").split(";")[0] == authed.header("contact").split(";")[0]
    assert "*" not in unreg.header("contact")
    assert unreg.header("call-id") == first.header("call-id")
    cseqs = [int(r.header("cseq").split()[0]) for r in log[1:]]
    assert cseqs == sorted(cseqs) and len(set(cseqs)) == 3
    assert srv.bindings == {"100": {}}

    d = report.to_dict()
    json.dumps(d, ensure_ascii=False)
    assert d["ok"] is True and d["steps"][2]["name"] == "register" and d["error_title_ru"] is None


def test_options_request_is_well_formed():
    with FakeSipServer() as srv:
        res = options_ping("127.0.0.1", srv.port, "udp", timeout=0.5, retries=0)
        req = srv.requests("OPTIONS")[0]

    assert res.ok and res.status_code == 200 and res.reason == "OK" and res.error is None
    assert res.server_header == "FakeSIP/1.0 (voiceai tests)" and res.rtt_ms is not None
    raw = req.raw.decode()
    assert raw.startswith(f"OPTIONS sip:127.0.0.1:{srv.port} SIP/2.0\r\n")
    assert raw.endswith("\r\n\r\n")
    via = req.header("via")
    assert via.startswith("SIP/2.0/UDP 127.0.0.1:") and ";branch=z9hG4bK" in via and ";rport" in via
    assert req.header("max-forwards") == "70"
    assert ";tag=" in req.header("from") and req.header("to") == f"<sip:127.0.0.1:{srv.port}>"
    assert req.header("call-id") and req.header("cseq") == "1 OPTIONS"
    assert req.header("contact").startswith("<sip:") and req.header("accept") == "application/sdp"
    assert req.header("content-length") == "0"


def test_wrong_password_is_reported_as_rejected_credentials():
    with FakeSipServer(users={"100": "secret"}) as srv:
        report = check_trunk(_params(srv, password="wrong"), **FAST)
        statuses = [r.response_status for r in srv.requests("REGISTER")]

    assert not report.ok and report.error_code == "SIP_CONNECT_FAILED"
    assert report.reason_ru == "Провайдер отклонил логин или пароль (403 Forbidden)"
    assert "пароль" in report.reason_ru
    assert statuses == [401, 403]  # answered the challenge once, did not hammer the account
    assert report.steps[-1].name == "register" and report.steps[-1].status == "failed"
    assert any("пароль" in fix for fix in report.how_to_fix_ru)
    assert report.to_dict()["error_title_ru"] == "Не удалось подключить номер"


def test_unknown_user_points_at_the_login():
    with FakeSipServer(users={"100": "secret"}) as srv:
        report = check_trunk(_params(srv, login="999"), **FAST)

    assert not report.ok and report.error_code == "SIP_CONNECT_FAILED"
    assert "«999»" in report.reason_ru and "404 Not Found" in report.reason_ru and "логин" in report.reason_ru


def test_unreachable_provider_reason_is_no_answer():
    t0 = time.monotonic()
    with FakeSipServer(users={"100": "secret"}, silent=True) as srv:
        report = check_trunk(_params(srv), timeout=0.3, retries=1)
        seen = srv.requests()
    elapsed = time.monotonic() - t0

    assert not report.ok and report.error_code == "SIP_CONNECT_FAILED"
    assert report.reason_ru.startswith("Провайдер не ответил на SIP-запрос за ")
    assert "разрешён у провайдера" in report.reason_ru
    assert [s.status for s in report.steps] == ["ok", "failed", "failed"]
    assert "Нет ответа на OPTIONS" in report.steps[1].detail_ru
    assert {r.method for r in seen} == {"OPTIONS", "REGISTER"}  # the packets did arrive
    assert elapsed < 3


def test_udp_retransmits_with_t1_doubling_and_same_branch():
    with FakeSipServer(silent=True) as srv:
        res = options_ping("127.0.0.1", srv.port, "udp", timeout=1.7, retries=0)
        sent = srv.requests("OPTIONS")

    assert not res.ok and res.error == sip_probe.ERR_TIMEOUT and res.status_code is None
    assert len(sent) == 3  # t = 0, T1, 3*T1
    gaps = [b.at - a.at for a, b in zip(sent, sent[1:])]
    assert 0.4 < gaps[0] < 0.7 and 0.85 < gaps[1] < 1.2
    assert len({r.header("via") for r in sent}) == 1  # retransmissions, not new transactions


def test_wrong_host_fails_in_dns():
    report = check_trunk(TrunkParams(host="sip.example.invalid", login="100", password="x"), **FAST)

    assert not report.ok and report.error_code == "SIP_CONNECT_FAILED"
    assert report.reason_ru == "Адрес sip.example.invalid не найден в DNS — проверьте адрес провайдера"
    assert [s.name for s in report.steps] == ["dns"] and report.steps[0].status == "failed"
    with pytest.raises(sip_probe.ResolveError):
        sip_probe.resolve("sip.example.invalid")
    assert options_ping("sip.example.invalid", 5060).error == sip_probe.ERR_DNS


def test_tcp_refused_port():
    port = free_tcp_port()
    report = check_trunk(TrunkParams(host="127.0.0.1", port=port, transport="tcp", login="100",
                                     password="x"), **FAST)

    assert not report.ok and report.error_code == "SIP_CONNECT_FAILED"
    assert "отклонил TCP-соединение" in report.reason_ru and str(port) in report.reason_ru
    assert report.steps[1].name == "options" and report.steps[1].status == "failed"
    assert options_ping("127.0.0.1", port, "tcp").error == sip_probe.ERR_REFUSED


def test_closed_udp_port_is_reported_from_icmp_without_waiting():
    with FakeSipServer(transports=("tcp",)) as srv:  # the UDP port of that number is closed
        t0 = time.monotonic()
        report = check_trunk(TrunkParams(host="127.0.0.1", port=srv.port, login="100", password="x"),
                             timeout=2.0, retries=1)
        elapsed = time.monotonic() - t0

    assert not report.ok and "закрыт" in report.reason_ru and elapsed < 1.0


# ---------------------------------------------------------------------------------------------
# Provider variations

@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("variant", [
    {"compact": True},       # compact header names and a folded WWW-Authenticate
    {"qop": False},          # RFC 2069 challenge, no qop/nc/cnonce
    {"proxy_auth": True},    # 407 + Proxy-Authenticate / Proxy-Authorization
    {"send_trying": True},   # 100 Trying before each final answer
    {"min_expires": 300},    # 423 Interval Too Brief + Min-Expires
])
def test_register_probe_copes_with_provider_variants(variant, transport):
    with FakeSipServer(users={"100": "secret"}, **variant) as srv:
        res = register_probe("127.0.0.1", srv.port, transport, "100", "secret", timeout=0.5)
        opt = options_ping("127.0.0.1", srv.port, transport, timeout=0.5, retries=0)

    assert res.ok and res.status_code == 200 and res.challenged and res.realm == "fake.voiceai.test"
    assert res.unregister_status == 200 and srv.bindings == {"100": {}}
    assert opt.ok and opt.server_header.startswith("FakeSIP")


def test_provider_ignoring_options_still_passes_by_registration():
    with FakeSipServer(users={"100": "secret"}, options_status=None) as srv:
        report = check_trunk(_params(srv), timeout=0.3, retries=0)

    assert report.ok and report.steps[1].status == "warning" and report.steps[1].ok
    assert "регистрация прошла" in report.steps[1].detail_ru


def test_ip_auth_mode_uses_options_only():
    with FakeSipServer() as srv:
        ok = check_trunk(TrunkParams(host="127.0.0.1", port=srv.port, auth_mode="ip"), **FAST)
        assert srv.requests("REGISTER") == []
    with FakeSipServer(options_status=403) as srv:
        denied = check_trunk(TrunkParams(host="127.0.0.1", port=srv.port, auth_mode="ip"), **FAST)

    assert ok.ok and ok.reason_ru.startswith("Подключение работает: провайдер отвечает")
    assert [s.name for s in ok.steps] == ["dns", "options"]
    assert not denied.ok and "IP" in denied.reason_ru and "403 Forbidden" in denied.reason_ru


# ---------------------------------------------------------------------------------------------
# Digest and parsing

def test_digest_rfc2617_example():
    # RFC 2617 section 3.5.
    assert digest_response(username="Mufasa", password="Circle Of Life", realm="testrealm@host.com",
                           nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", method="GET",
                           uri="/dir/index.html", qop="auth", nc="00000001",
                           cnonce="0a4f113b") == "6629fae49393a05397450978507c4ef1"


def test_digest_rfc7616_examples_md5_and_sha256():
    common = dict(username="Mufasa", password="Circle of Life", realm="http-auth@example.org",
                  nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", method="GET",
                  uri="/dir/index.html", qop="auth", nc="00000001",
                  cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")
    assert digest_response(**common) == "8ca523f5e9506fed4657c9700eebdbec"
    assert digest_response(**common, algorithm="SHA-256") == (
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1")


def test_digest_without_qop_and_authorization_header():
    import hashlib
    md5 = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731
    expected = md5(f"{md5('100:r:pw')}:abc:{md5('REGISTER:sip:r')}")
    assert digest_response(username="100", password="pw", realm="r", nonce="abc", method="REGISTER",
                           uri="sip:r") == expected

    ch = parse_challenge('Digest realm="sip.example", nonce="n1", qop="auth,auth-int", '
                         'algorithm=MD5, opaque="o,1"')
    assert ch and ch.qop == ["auth", "auth-int"] and ch.opaque == "o,1" and not ch.stale
    header = build_authorization(ch, username="100", password="pw", method="REGISTER",
                                 uri="sip:sip.example", nc=1, cnonce="c1")
    assert header.startswith('Digest username="100", realm="sip.example", nonce="n1", uri="sip:sip.example"')
    assert "qop=auth, nc=00000001, cnonce=\"c1\"" in header and 'opaque="o,1"' in header
    assert parse_challenge('Basic realm="x"') is None


def test_parse_message_folded_and_compact_headers():
    raw = (b"SIP/2.0 401 Unauthorized\r\n"
           b"v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc;rport=5060;received=1.2.3.4, "
           b"SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKdef\r\n"
           b"i: call-1@x\r\n"
           b"f: <sip:100@x>;tag=1\r\n"
           b"t: <sip:100@x>;tag=2\r\n"
           b"CSeq: 7 REGISTER\r\n"
           b"WWW-Authenticate: Digest realm=\"x\",\r\n"
           b"   nonce=\"n\", qop=\"auth\"\r\n"
           b"l: 0\r\n\r\n")
    msg = parse_message(raw)
    assert msg.status_code == 401 and msg.reason == "Unauthorized"
    assert msg.get("call-id") == "call-1@x" and msg.get("I") == "call-1@x"
    assert sip_probe.via_branch(msg) == "z9hG4bKabc" and len(msg.get_all("via")) == 2
    assert sip_probe.cseq(msg) == (7, "REGISTER")
    ch = parse_challenge(msg.get("www-authenticate"))
    assert ch and ch.realm == "x" and ch.nonce == "n" and ch.qop == ["auth"]
    lf_only = parse_message(b"SIP/2.0 200 OK\nCall-ID: a\nContent-Length: 0\n\n")
    assert lf_only.status_code == 200 and lf_only.get("call-id") == "a"
    with pytest.raises(sip_probe.SipParseError):
        parse_message(b"garbage\r\n\r\n")


# ---------------------------------------------------------------------------------------------
# FreeSWITCH gateway status

def test_parse_gateway_status_invalid_gateway():
    gw = parse_gateway_status(INVALID_GATEWAY)
    assert not gw.found and gw.state is None
    esl = "Content-Type: api/response\nContent-Length: 17\n\n" + INVALID_GATEWAY
    assert not parse_gateway_status(esl).found


def test_parse_gateway_status_reged_and_fail_wait():
    gw = parse_gateway_status(REGED_OUTPUT)
    assert gw.found and gw.name == "voiceai_7" and gw.profile == "external"
    assert (gw.state, gw.status, gw.pinging) == ("REGED", "UP", True)
    assert gw.ping_time_ms == 23.41 and gw.uptime_s == 3721
    assert (gw.calls_in, gw.calls_out, gw.failed_calls_in, gw.failed_calls_out) == (12, 40, 0, 3)
    assert gw.fields["PingState"] == "1/1/3" and gw.fields["Username"] == "100"

    bad = parse_gateway_status(FAIL_WAIT_OUTPUT)
    assert (bad.state, bad.status, bad.pinging, bad.uptime_s) == ("FAIL_WAIT", "DOWN", False, 0)


def test_gateway_status_joins_the_verdict():
    with FakeSipServer(users={"100": "secret"}) as srv:
        good = check_trunk(_params(srv), REGED_OUTPUT, **FAST)
        missing = check_trunk(_params(srv), INVALID_GATEWAY, **FAST)
        failing = check_trunk(_params(srv), FAIL_WAIT_OUTPUT, **FAST)

    assert good.ok and good.steps[-1].name == "gateway" and "REGED" in good.steps[-1].detail_ru
    assert good.to_dict()["gateway"]["state"] == "REGED"
    assert not missing.ok and missing.error_code == "SIP_CONNECT_FAILED"
    assert "не загружен в FreeSWITCH" in missing.reason_ru
    assert not failing.ok and "FAIL_WAIT" in failing.reason_ru
    assert "принимает логин и пароль" in failing.reason_ru


# ---------------------------------------------------------------------------------------------
# CLI

def test_cli_in_process_exit_codes_and_output(capsys, monkeypatch):
    with FakeSipServer(users={"100": "secret"}) as srv:
        base = ["--host", "localhost", "--port", str(srv.port), "--timeout", "0.4", "--login", "100"]
        assert cli_main(base + ["--password", "secret"]) == 0
        out = capsys.readouterr().out
        assert "Проверка подключения localhost:" in out and "Итог: Подключение работает" in out
        assert "[ OK ] Регистрация (логин и пароль)" in out

        assert cli_main(base + ["--password", "nope", "--transport", "tcp"]) == 2
        out = capsys.readouterr().out
        assert "Ошибка: Провайдер отклонил логин или пароль (403 Forbidden)" in out
        assert "Что сделать:" in out

        monkeypatch.setenv("VOICEAI_TEST_SIP_PW", "secret")
        assert cli_main(base + ["--password-env", "VOICEAI_TEST_SIP_PW", "--json"]) == 0
        data = json.loads(capsys.readouterr().out)
        assert data["ok"] is True and [s["name"] for s in data["steps"]] == ["dns", "options", "register"]

    assert cli_main(["--host", "sip.example.invalid", "--ip-auth", "--json"]) == 2
    data = json.loads(capsys.readouterr().out)
    assert data["error_code"] == "SIP_CONNECT_FAILED" and "DNS" in data["reason_ru"]

    assert cli_main(["--host", "localhost"]) == 2  # register mode without credentials
    assert "--login" in capsys.readouterr().err
    assert cli_main(["--host", "x", "--login", "1", "--password-env", "VOICEAI_TEST_NO_SUCH_VAR"]) == 2
    assert "VOICEAI_TEST_NO_SUCH_VAR" in capsys.readouterr().err
    assert cli_main(["--transport", "udp"]) == 2  # --host missing: argparse usage error
    capsys.readouterr()


def test_cli_subprocess():
    with FakeSipServer(users={"100": "secret"}) as srv:
        env = dict(os.environ, SIP_PW="secret", PYTHONPATH=str(REPO_ROOT))
        proc = subprocess.run(
            [sys.executable, "-m", "scripts.trunk_check", "--host", "127.0.0.1", "--port", str(srv.port),
             "--login", "100", "--password-env", "SIP_PW", "--timeout", "0.5"],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=20)
        registered = [r.expires for r in srv.requests("REGISTER") if r.user == "100"]

    assert proc.returncode == 0, proc.stderr
    assert "Подключение работает: регистрация успешна" in proc.stdout
    assert registered[-1] == 0  # the subprocess cleaned up after itself

    bad = subprocess.run([sys.executable, "-m", "scripts.trunk_check", "--host", "sip.example.invalid",
                          "--ip-auth"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=20)
    assert bad.returncode == 2 and "не найден в DNS" in bad.stdout
