"""Realtime gateway: tokens, WebSocket and SSE delivery, resume, isolation, slow clients, Redis outages.

Everything runs against a real ``voiceai-web`` process (gevent WSGI server), real WebSocket clients
(websocket-client, plus a raw socket client that deliberately stops reading) and the real Redis
streams that producers write with ``core.events.bus.publish``.
"""
from __future__ import annotations

import base64
import json
import os
import re
import socket
import struct
import subprocess
import threading
import time
import uuid
from typing import Any

import pytest
import redis as redis_lib
import requests
import websocket

from core.events import bus
from core.events.human import LABELS
from core.events.schema import EventType, make_event
from core.security.rbac import ROLES, is_allowed
from tests.support.api import login
from web.realtime import tokens

SPEC_TYPES = ["call.started", "call.state_changed", "call.ended", "tool.started", "tool.succeeded", "tool.failed",
              "message.sent", "message.delivered", "message.failed", "campaign.progress", "campaign.finished",
              "integration.up", "integration.down", "budget.threshold_reached"]
CYRILLIC = re.compile(r"[А-Яа-яЁё]")
FAST = {"VOICEAI_REALTIME_HEARTBEAT": 1, "VOICEAI_REALTIME_BLOCK_MS": 300, "VOICEAI_REALTIME_MAX_LAG": 1000}


# ---------------------------------------------------------------- helpers

def _session(base: str, email: str, password: str, project_id: str) -> requests.Session:
    s = requests.Session()
    r = s.post(base + "/api/auth/login", json={"email": email, "password": password}, timeout=10)
    assert r.status_code == 200, r.text
    s.headers.update({"Authorization": "Bearer " + r.json()["access_token"], "X-Project-Id": project_id})
    return s


def _token(s: requests.Session, base: str) -> dict:
    r = s.get(base + "/api/realtime/token", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


class Client:
    """A websocket-client subscriber that records every event it receives."""

    def __init__(self, web, session: requests.Session, last_event_id: str | None = None) -> None:
        tok = _token(session, web.base)
        url = web.ws_base + tok["stream_url"] + (f"&last_event_id={last_event_id}" if last_event_id else "")
        self.ws = websocket.create_connection(url, timeout=15, skip_utf8_validation=True)

    def next(self) -> dict:
        while True:
            opcode, data = self.ws.recv_data(control_frame=False)
            if opcode == websocket.ABNF.OPCODE_TEXT:
                return json.loads(data.decode("utf-8"))

    def take(self, n: int) -> list[dict]:
        return [self.next() for _ in range(n)]

    def close(self) -> None:
        self.ws.close()


def _publish(r: redis_lib.Redis, project_id: str, etype: str = "call.state_changed", **payload: Any) -> str:
    return bus.publish(r, make_event(etype, project_id, "call", uuid.uuid4(), payload))


@pytest.fixture()
def world(tenant, web_process, redis_client):
    """Two orgs with an operator each, a web process, and a way to publish into their streams."""
    a = tenant("rta", roles=("operator", "owner"))
    b = tenant("rtb", roles=("operator",))
    web = web_process(**FAST)
    sa = _session(web.base, *a["users"]["operator"], a["project_id"])
    sb = _session(web.base, *b["users"]["operator"], b["project_id"])
    return {"a": a, "b": b, "web": web, "sa": sa, "sb": sb, "r": redis_client}


# ---------------------------------------------------------------- tokens and RBAC (in-process API)

@pytest.mark.parametrize("role", sorted(ROLES))
def test_token_follows_the_permission_matrix(api, tenant, role):
    t = tenant("tok", roles=(role,))
    c = api.with_(token=login(api, *t["users"][role])["access_token"], project_id=t["project_id"])
    resp = c.get("/api/realtime/token")
    expected = 200 if is_allowed([role], "realtime.subscribe") else 403
    assert resp.status_code == expected
    if expected == 200:
        body = resp.get_json()
        assert body["stream_url"] == "/api/realtime/stream?token=" + body["token"]
        assert body["sse_url"] == "/api/realtime/sse?token=" + body["token"]
        assert body["expires_in"] == 60
        claims = tokens.verify(api.c.application.config["VOICEAI"].secret_key, body["token"])
        assert claims.project_id == t["project_id"] and claims.principal_kind == "user"


def test_operator_and_billing_manager_per_matrix():
    # The matrix (docs/rbac.md) lets both watch the Live Monitor stream.
    assert is_allowed(["operator"], "realtime.subscribe")
    assert is_allowed(["billing_manager"], "realtime.subscribe")


def test_token_needs_a_visible_project_and_auth(api, tenant):
    a = tenant("tka", roles=("operator",))
    b = tenant("tkb", roles=("owner",))
    c = api.with_(token=login(api, *a["users"]["operator"])["access_token"])
    assert c.get("/api/realtime/token", headers={"X-Project-Id": b["project_id"]}).status_code == 404
    assert c.get("/api/realtime/token").status_code == 422   # no project named
    assert api.get("/api/realtime/token", headers={"X-Project-Id": a["project_id"]}).status_code == 401


def test_api_key_gets_a_token_bound_to_its_project(api, tenant):
    t = tenant("tkk", roles=("owner",))
    owner = api.with_(token=login(api, *t["users"]["owner"])["access_token"], project_id=t["project_id"])
    key = owner.post("/api/api-keys", json={"name": "monitor", "role": "operator"}).get_json()["key"]
    resp = api.get("/api/realtime/token", headers={"X-Api-Key": key})
    assert resp.status_code == 200
    claims = tokens.verify(api.c.application.config["VOICEAI"].secret_key, resp.get_json()["token"])
    assert claims.principal_kind == "api_key" and claims.project_id == t["project_id"]


def test_realtime_token_is_not_an_access_token(api, tenant):
    t = tenant("tkx", roles=("operator",))
    c = api.with_(token=login(api, *t["users"]["operator"])["access_token"], project_id=t["project_id"])
    rt = c.get("/api/realtime/token").get_json()["token"]
    resp = api.get("/api/auth/me", headers={"Authorization": f"Bearer {rt}"})
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "AUTH_TOKEN_INVALID"


def test_openapi_describes_token_and_streams(api):
    doc = api.get("/api/openapi.json").get_json()
    token_op = doc["paths"]["/api/realtime/token"]["get"]
    assert token_op["x-permission"] == "realtime.subscribe"
    assert token_op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/RealtimeToken")
    for path in ("/api/realtime/sse", "/api/realtime/stream"):
        op = doc["paths"][path]["get"]
        assert op["security"] == [] and {p["name"] for p in op["parameters"]} == {"token", "last_event_id"}


# ---------------------------------------------------------------- connecting

def test_bad_tokens_are_refused_at_connect(world):
    web, a = world["web"], world["a"]
    secret = web.env["VOICEAI_SECRET_KEY"]
    user_id = str(_user_id(a["users"]["operator"][0]))
    expired, _ = tokens.issue(secret, "user", user_id, a["org_id"], a["project_id"], 60, now=time.time() - 3600)
    forged, _ = tokens.issue("not-the-signing-key-" + "x" * 32, "user", user_id, a["org_id"], a["project_id"], 60)
    other_project, _ = tokens.issue(secret, "user", user_id, a["org_id"], world["b"]["project_id"], 60)
    access = world["sa"].headers["Authorization"].split()[1]
    cases = {expired: (401, "AUTH_TOKEN_EXPIRED"), forged: (401, "AUTH_TOKEN_INVALID"),
             access: (401, "AUTH_TOKEN_INVALID"), "": (401, "AUTH_REQUIRED"),
             other_project: (404, "NOT_FOUND")}
    for tok, (status, code) in cases.items():
        with pytest.raises(websocket.WebSocketBadStatusException) as exc:
            websocket.create_connection(f"{web.ws_base}/api/realtime/stream?token={tok}", timeout=10)
        assert exc.value.status_code == status
        assert json.loads(exc.value.resp_body)["error"]["code"] == code
        sse = requests.get(f"{web.base}/api/realtime/sse?token={tok}", timeout=10)
        assert sse.status_code == status and sse.json()["error"]["code"] == code


def _user_id(email: str):
    from models.saas import User
    return User.get(User.email == email).id


def test_permission_is_checked_again_at_connect(world):
    from models.saas import User, UserRole
    web = world["web"]
    # a token issued before the user was disabled is refused when the stream is opened
    tok = _token(world["sa"], web.base)
    user = User.get(User.email == world["a"]["users"]["operator"][0])
    User.update(is_active=False).where(User.id == user.id).execute()
    with pytest.raises(websocket.WebSocketBadStatusException) as exc:
        websocket.create_connection(web.ws_base + tok["stream_url"], timeout=10)
    assert exc.value.status_code == 403
    assert json.loads(exc.value.resp_body)["error"]["code"] == "AUTH_USER_DISABLED"
    # a role withdrawn after the token was issued: the project is no longer visible
    owner = _session(web.base, *world["a"]["users"]["owner"], world["a"]["project_id"])
    tok = _token(owner, web.base)
    owner_user = User.get(User.email == world["a"]["users"]["owner"][0])
    UserRole.delete().where(UserRole.user == owner_user.id).execute()
    with pytest.raises(websocket.WebSocketBadStatusException) as exc:
        websocket.create_connection(web.ws_base + tok["stream_url"], timeout=10)
    assert exc.value.status_code == 404
    resp = requests.get(web.base + tok["sse_url"], timeout=10)
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "NOT_FOUND"


def test_plain_get_on_the_websocket_route_is_an_error_envelope(world):
    tok = _token(world["sa"], world["web"].base)
    resp = requests.get(world["web"].base + tok["stream_url"], timeout=10)
    assert resp.status_code == 400 and "error" in resp.json()


# ---------------------------------------------------------------- delivery

def test_every_event_type_arrives_in_spec_format_with_russian_status(world):
    r, pid = world["r"], world["a"]["project_id"]
    client = Client(world["web"], world["sa"])
    sent = []
    for i, etype in enumerate(SPEC_TYPES + ["handoff.requested"]):
        payload = {"cost_so_far": 0.12} if i % 2 else {"human_status": "Агент отвечает", "cost_so_far": 0.5}
        event = make_event(etype, pid, "call", uuid.uuid4(), payload)
        sent.append((bus.publish(r, event), event))
    got = client.take(len(sent))
    client.close()
    assert [g["id"] for g in got] == [eid for eid, _ in sent]
    for g, (eid, event) in zip(got, sent):
        assert set(g) == {"id", "type", "ts", "project_id", "entity", "payload"}
        assert (g["type"], g["ts"], g["project_id"], g["entity"]) == \
               (event["type"], event["ts"], event["project_id"], event["entity"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", g["ts"])
        status = g["payload"]["human_status"]
        assert CYRILLIC.search(status)
        if "human_status" in event["payload"]:
            assert status == event["payload"]["human_status"]
        else:
            assert status == LABELS[g["type"]]
        assert g["payload"]["cost_so_far"] == event["payload"]["cost_so_far"]


def test_resume_after_disconnect_gets_exactly_what_was_missed(world):
    r, pid, web = world["r"], world["a"]["project_id"], world["web"]
    client = Client(web, world["sa"])
    first = [_publish(r, pid, n=i) for i in range(3)]
    seen = client.take(3)
    assert [e["id"] for e in seen] == first
    client.close()
    missed = [_publish(r, pid, n=i) for i in range(3, 8)]
    again = Client(web, world["sa"], last_event_id=seen[-1]["id"])
    live = _publish(r, pid, n=8)
    got = again.take(6)
    again.close()
    assert [e["id"] for e in got] == missed + [live]
    assert [e["payload"]["n"] for e in got] == [3, 4, 5, 6, 7, 8]


def test_too_old_id_gets_stream_reset_then_live(world):
    r, pid, web = world["r"], world["a"]["project_id"], world["web"]
    ids = [_publish(r, pid, n=i) for i in range(10)]
    r.xtrim(bus.stream_key(pid), maxlen=3, approximate=False)   # retention passed the client's id
    client = Client(web, world["sa"], last_event_id=ids[2])
    reset = client.next()
    assert reset["type"] == "stream.reset" and reset["id"] == ids[-1]
    assert reset["payload"]["reason"] == "expired" and CYRILLIC.search(reset["payload"]["human_status"])
    assert reset["project_id"] == pid
    live = _publish(r, pid, n=10)
    assert client.next()["id"] == live
    client.close()
    # an id the stream is still holding resumes normally
    ok = Client(web, world["sa"], last_event_id=ids[7])
    assert [e["id"] for e in ok.take(3)] == ids[8:] + [live]
    ok.close()
    # an id from the future (Redis lost the stream) is a reset as well
    ahead = Client(web, world["sa"], last_event_id="99999999999999-0")
    assert ahead.next()["payload"]["reason"] == "ahead"
    ahead.close()


def _sse_lines(resp):
    return resp.iter_lines(chunk_size=1, decode_unicode=True)   # one iterator per response: it buffers


def _sse_events(lines, n: int) -> tuple[list[dict], list[str]]:
    """Read n SSE messages (id + JSON data); also the comment lines seen."""
    events, comments, cur = [], [], {}
    for line in lines:
        if line.startswith(":"):
            comments.append(line)
        elif line.startswith("id: "):
            cur["id"] = line[4:]
        elif line.startswith("data: "):
            cur["data"] = json.loads(line[6:])
        elif line == "" and cur:
            assert cur["id"] == cur["data"]["id"]
            events.append(cur["data"])
            cur = {}
            if len(events) == n:
                break
    return events, comments


def test_sse_fallback_with_last_event_id_header_and_query(world):
    r, pid, web = world["r"], world["a"]["project_id"], world["web"]
    ids = [_publish(r, pid, n=i) for i in range(4)]
    tok = _token(world["sa"], web.base)
    with requests.get(web.base + tok["sse_url"], headers={"Last-Event-ID": ids[1]}, stream=True, timeout=15) as resp:
        assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
        lines = _sse_lines(resp)
        got, _ = _sse_events(lines, 2)
        assert [e["id"] for e in got] == ids[2:]
        live = _publish(r, pid, n=4, human_status="Оператор подключился")
        got, comments = _sse_events(lines, 1)
        assert got[0]["id"] == live and got[0]["payload"]["human_status"] == "Оператор подключился"
        # idle: heartbeat comments (1 s in this server) keep the connection alive
        assert next(line for line in lines if line.startswith(":")) == ": ping"
    tok = _token(world["sa"], web.base)
    with requests.get(web.base + tok["sse_url"] + f"&last_event_id={ids[2]}", stream=True, timeout=15) as resp:
        got, _ = _sse_events(_sse_lines(resp), 2)
        assert [e["id"] for e in got] == [ids[3], live]


def test_websocket_heartbeat_pings(world):
    client = Client(world["web"], world["sa"])
    opcode, _ = client.ws.recv_data(control_frame=True)   # idle: the 1 s heartbeat arrives
    assert opcode == websocket.ABNF.OPCODE_PING
    client.close()


def test_no_event_of_another_project_ever_arrives(world):
    r, web = world["r"], world["web"]
    pa, pb = world["a"]["project_id"], world["b"]["project_id"]
    ca, cb = Client(web, world["sa"]), Client(web, world["sb"])
    sent = {pa: [], pb: []}
    for i in range(40):
        pid = pa if i % 3 else pb
        sent[pid].append(_publish(r, pid, n=i))
    # a producer bug: an event of project B written into A's stream must not reach A's clients
    bus_entry = make_event("call.started", pb, "call", uuid.uuid4(), {"human_status": "Чужое"})
    r.xadd(bus.stream_key(pa), {"event": json.dumps(bus_entry)})
    marker_a, marker_b = _publish(r, pa, n="end"), _publish(r, pb, n="end")
    got_a = _until(ca, marker_a)
    got_b = _until(cb, marker_b)
    ca.close()
    cb.close()
    assert [e["id"] for e in got_a] == sent[pa] + [marker_a]
    assert [e["id"] for e in got_b] == sent[pb] + [marker_b]
    assert {e["project_id"] for e in got_a} == {pa} and {e["project_id"] for e in got_b} == {pb}
    assert "event of another project" in web.log()


def _until(client: Client, last_id: str) -> list[dict]:
    out = []
    while not out or out[-1]["id"] != last_id:
        out.append(client.next())
    return out


# ---------------------------------------------------------------- slow clients

class StalledClient:
    """Opens the WebSocket by hand, then never reads: the kernel buffers fill and stay full."""

    def __init__(self, web, session: requests.Session) -> None:
        tok = _token(session, web.base)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", web.port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {tok['stream_url']} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)

    def drain(self) -> list[dict]:
        """Now read everything the server sent before it cut us off."""
        self.sock.settimeout(15)
        data = b""
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            data += chunk
        events, i = [], 0
        while i + 2 <= len(data):
            op, n = data[i] & 0x0F, data[i + 1] & 0x7F
            i += 2
            if n == 126:
                n, i = struct.unpack("!H", data[i:i + 2])[0], i + 2
            elif n == 127:
                n, i = struct.unpack("!Q", data[i:i + 8])[0], i + 8
            if i + n > len(data):
                break
            if op == 1:
                events.append(json.loads(data[i:i + n]))
            i += n
        self.sock.close()
        return events


def test_a_stalled_client_is_cut_off_without_delaying_others(world):
    r, pid, web = world["r"], world["a"]["project_id"], world["web"]
    stalled = StalledClient(web, world["sa"])
    fast = Client(web, world["sa"])
    received: list[dict] = []
    total = 3000

    def read_all() -> None:
        for _ in range(total):
            received.append(fast.next())

    reader = threading.Thread(target=read_all, daemon=True)
    reader.start()
    blob = "ж" * 1000    # ~2 KB per event: 6 MB in all, far more than the stalled client can buffer
    ids = [_publish(r, pid, n=i, blob=blob) for i in range(total)]
    reader.join(timeout=120)
    assert not reader.is_alive(), f"the fast client got {len(received)} of {total}"
    # the fast client got everything, in order, while the other one sat on its socket
    assert [e["id"] for e in received] == ids
    # the stalled one was disconnected (queue overflow) after a prefix, and resumes where it stopped
    prefix = stalled.drain()
    assert len(prefix) < total and [e["id"] for e in prefix] == ids[:len(prefix)]
    assert "too slow, disconnected" in web.log()
    resumed = Client(web, world["sa"], last_event_id=prefix[-1]["id"] if prefix else "0-0")
    rest = resumed.take(total - len(prefix))
    resumed.close()
    fast.close()
    assert [e["id"] for e in prefix + rest] == ids


# ---------------------------------------------------------------- Redis trouble

def test_stream_lost_by_redis_sends_reset_to_live_subscribers(world):
    r, pid, web = world["r"], world["a"]["project_id"], world["web"]
    client = Client(web, world["sa"])
    first = _publish(r, pid, n=1)
    assert client.next()["id"] == first
    r.delete(bus.stream_key(pid))                     # e.g. FLUSHALL or a restart without persistence
    r.xadd(bus.stream_key(pid), {"event": json.dumps(make_event("call.started", pid, "call", uuid.uuid4(),
                                                                {"n": 2}))}, id="1-1")
    reset = client.next()
    assert reset["type"] == "stream.reset" and reset["payload"]["reason"] == "lost"
    after = client.next()
    assert after["id"] == "1-1" and after["payload"]["n"] == 2
    client.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_redis(port: int, tmp) -> subprocess.Popen:
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    client = redis_lib.Redis(port=port)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            client.ping()
            return proc
        except redis_lib.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("redis-server did not start")


def test_gateway_survives_a_redis_restart(tenant, web_process, test_settings, tmp_path):
    from dataclasses import replace
    port = _free_port()
    redis_proc = _start_redis(port, tmp_path)
    try:
        settings = replace(test_settings, redis_url=f"redis://127.0.0.1:{port}/0")
        t = tenant("rtr", roles=("operator",))
        web = web_process(settings, **FAST)
        r = redis_lib.Redis.from_url(settings.redis_url, decode_responses=True)
        s = _session(web.base, *t["users"]["operator"], t["project_id"])
        client = Client(web, s)
        pid = t["project_id"]
        before = _publish(r, pid, n=1)
        assert client.next()["id"] == before
        redis_proc.kill()
        redis_proc.wait()
        deadline = time.monotonic() + 20
        while "Redis unavailable, retrying" not in web.log():
            assert time.monotonic() < deadline, web.log()
            time.sleep(0.1)
        redis_proc = _start_redis(port, tmp_path)
        # the reader reconnects by itself: events published after the restart reach the same socket
        after = _publish(r, pid, n=2)
        got = client.next()
        while got["type"] == "stream.reset":
            got = client.next()
        assert got["id"] == after and got["payload"]["n"] == 2
        client.close()
    finally:
        redis_proc.kill()
        redis_proc.wait()
