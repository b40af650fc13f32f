"""The platform as a new user meets it: real processes, real HTTP, the admin CLI."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(test_settings, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEAI_")}
    env.update({"VOICEAI_DATABASE_URL": test_settings.database_url, "VOICEAI_REDIS_URL": test_settings.redis_url,
                "VOICEAI_SECRET_KEY": test_settings.secret_key,
                "VOICEAI_ENCRYPTION_KEYS": test_settings.encryption_keys, "VOICEAI_LOG_LEVEL": "INFO"})
    env.update(extra)
    return env


def _cli(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "voiceai"), *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_cli_help_lists_commands(test_settings):
    out = _cli(_env(test_settings), "--help")
    assert out.returncode == 0
    for word in ("db", "org", "user", "project", "bootstrap", "secrets", "rbac", "config"):
        assert word in out.stdout


def test_cli_org_user_and_bootstrap(db, test_settings, tmp_path):
    env = _env(test_settings)
    assert _cli(env, "db", "migrate").returncode == 0
    assert "0 migration(s) applied now" in _cli(env, "db", "migrate").stdout  # twice is safe
    assert _cli(env, "db", "status").returncode == 0
    org = _cli(env, "org", "create", "ООО Ромашка", "--slug", "romashka")
    assert org.returncode == 0 and "romashka" in org.stdout
    assert _cli(env, "org", "create", "ООО Ромашка", "--slug", "romashka").returncode == 0  # idempotent
    assert _cli(env, "project", "create", "--org", "romashka", "Продажи").returncode == 0
    user = _cli(env, "user", "create", "--org", "romashka", "--email", "boss@romashka.test", "--role", "admin")
    assert user.returncode == 0 and "password:" in user.stdout
    dup = _cli(env, "user", "create", "--org", "romashka", "--email", "boss@romashka.test", "--role", "admin")
    assert dup.returncode == 2 and "already exists" in dup.stderr
    bad = _cli(env, "user", "create", "--org", "nope", "--email", "x@y.test", "--role", "admin")
    assert bad.returncode == 2
    scoped = _cli(env, "user", "create", "--org", "romashka", "--email", "op@romashka.test", "--role", "operator",
                  "--project", "Продажи", "--password", "Operat0r-pass")
    assert scoped.returncode == 0
    creds = tmp_path / "initial_admin.txt"
    first = _cli(env, "bootstrap", "--credentials-file", str(creds))
    # users already exist: no new admin is invented
    assert first.returncode == 0 and "already exist" in first.stdout and not creds.exists()


@pytest.fixture()
def web_server(db, redis_client, test_settings, tmp_path):
    port = _free_port()
    env = _env(test_settings, VOICEAI_HTTP_PORT=str(port), VOICEAI_HTTP_HOST="127.0.0.1")
    log_path = tmp_path / "web.log"
    log_file = open(log_path, "w")
    proc = subprocess.Popen([str(BIN / "voiceai-web")], env=env, cwd=ROOT, stdout=log_file,
                            stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(base + "/healthz", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise AssertionError("web server did not start: " + log_path.read_text())
    env["_LOG_PATH"] = str(log_path)
    yield base, env
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log_file.close()


def test_new_user_journey_over_http(web_server, tmp_path):
    base, env = web_server
    creds = tmp_path / "initial_admin.txt"
    boot = _cli(env, "bootstrap", "--credentials-file", str(creds))
    assert boot.returncode == 0 and "First admin:" in boot.stdout
    again = _cli(env, "bootstrap", "--credentials-file", str(creds))
    assert boot.stdout == again.stdout  # second run prints the same credentials, creates nothing
    kv = dict(line.split("=", 1) for line in creds.read_text().splitlines())
    assert oct(creds.stat().st_mode)[-3:] == "600"

    s = requests.Session()
    r = s.post(base + "/api/auth/login", json={"email": kv["email"], "password": kv["password"]})
    assert r.status_code == 200, r.text
    assert r.headers["X-Trace-Id"]
    s.headers["Authorization"] = "Bearer " + r.json()["access_token"]
    created = s.post(base + "/api/projects", json={"name": "Стоматология"})
    assert created.status_code == 201
    names = [p["name"] for p in s.get(base + "/api/projects").json()["items"]]
    assert "Стоматология" in names and "Основной проект" in names

    # a second org's owner sees nothing of the first
    assert _cli(env, "org", "create", "Другая", "--slug", "other").returncode == 0
    assert _cli(env, "user", "create", "--org", "other", "--email", "o@other.test", "--role", "owner",
                "--password", "0ther-owner-pw").returncode == 0
    s2 = requests.Session()
    s2.headers["Authorization"] = "Bearer " + s2.post(base + "/api/auth/login", json={
        "email": "o@other.test", "password": "0ther-owner-pw"}).json()["access_token"]
    assert s2.get(base + "/api/projects").json()["items"] == []
    stolen = s2.get(base + f"/api/projects/{created.json()['id']}")
    assert stolen.status_code == 404
    err = stolen.json()["error"]
    assert err["code"] == "NOT_FOUND" and err["details"]["trace_id"] == stolen.headers["X-Trace-Id"]

    # every error is in the catalog format, even for garbage
    for resp in (s.get(base + "/api/nope"), s.delete(base + "/api/projects"),
                 s.post(base + "/api/projects", data="x", headers={"Content-Type": "application/json"}),
                 requests.get(base + "/api/projects")):
        assert set(resp.json()) == {"error"} and resp.json()["error"]["human_title"]
    assert requests.get(base + "/readyz").json()["checks"] == {"database": "ok", "redis": "ok"}


def test_web_logs_are_json_with_trace_ids(web_server):
    import json
    base, env = web_server
    r = requests.get(base + "/api/projects", headers={"X-Trace-Id": "e2e-trace-0001"})
    assert r.status_code == 401 and r.headers["X-Trace-Id"] == "e2e-trace-0001"
    deadline = time.monotonic() + 5
    found = []
    while time.monotonic() < deadline and not found:
        lines = Path(env["_LOG_PATH"]).read_text().splitlines()
        found = [json.loads(l) for l in lines if "e2e-trace-0001" in l]
        time.sleep(0.1)
    assert found, "request log line with the trace id not found"
    line = found[0]
    assert line["trace_id"] == "e2e-trace-0001" and line["status"] == 401 and line["path"] == "/api/projects"


def test_esl_app_retries_when_freeswitch_is_down(test_settings):
    port = _free_port()  # nothing listens there
    env = _env(test_settings, VOICEAI_ESL_PORT=str(port), VOICEAI_VOICE_ENABLED="false")
    proc = subprocess.Popen([str(BIN / "voiceai-esl")], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    time.sleep(2.5)
    proc.terminate()
    out, _ = proc.communicate(timeout=15)
    lines = [l for l in out.splitlines() if l.startswith("{")]
    import json
    retries = [json.loads(l) for l in lines if "FreeSWITCH unreachable" in l]
    assert len(retries) >= 2 and retries[1]["retry_in_s"] > retries[0]["retry_in_s"]  # backoff grows
    assert proc.returncode == 0 and "esl_app stopped" in out
