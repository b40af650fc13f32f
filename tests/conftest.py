"""Test fixtures: a real PostgreSQL database migrated to head, a real Redis DB, the Flask app.

The test database is recreated once per session through the real migrations; between tests the
tables are truncated. Redis uses a dedicated logical DB that is flushed before each test.
"""
from __future__ import annotations

import os
import tempfile
import uuid
from typing import Any, Iterator

import psycopg2
import pytest
import redis as redis_lib
from psycopg2 import sql
from urllib.parse import urlparse

from core.config import Settings, set_settings
from core.security.crypto import generate_key, reset_keyring
from tests.support.api import ApiClient
from tests.fssim import FsSim
from tests.support.telephony import EslProcess, Rig, TelephonyDirs, telephony_settings

# One database per test run (suffixed with the pid), dropped at the end: parallel runs on one
# machine never terminate each other's connections.
TEST_DB_URL = os.environ.get("VOICEAI_TEST_DATABASE_URL",
                             "postgresql://postgres@127.0.0.1:5432/voiceai_test") + f"_{os.getpid()}"
# A Redis logical DB per run (1..11 by pid) unless one is given: parallel runs must not flush
# each other's data.
TEST_REDIS_URL = os.environ.get("VOICEAI_TEST_REDIS_URL", f"redis://127.0.0.1:6379/{1 + os.getpid() % 11}")
_TMP = tempfile.mkdtemp(prefix="voiceai-test-")


def _recreate_database(url: str) -> None:
    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = psycopg2.connect(host=parsed.hostname, port=parsed.port or 5432,
                             user=parsed.username or "postgres", password=parsed.password, dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                    "AND pid <> pg_backend_pid()", (name,))
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    admin.close()


def _drop_database(url: str) -> None:
    parsed = urlparse(url)
    admin = psycopg2.connect(host=parsed.hostname, port=parsed.port or 5432,
                             user=parsed.username or "postgres", password=parsed.password, dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                    "AND pid <> pg_backend_pid()", (parsed.path.lstrip("/"),))
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(parsed.path.lstrip("/"))))
    admin.close()


@pytest.fixture(scope="session")
def test_settings() -> Settings:
    settings = Settings.from_env(overrides={
        "database_url": TEST_DB_URL, "redis_url": TEST_REDIS_URL,
        "secret_key": "test-secret-" + uuid.uuid4().hex, "encryption_keys": generate_key(),
        "log_level": "WARNING", "env_name": "test", "storage_dir": f"{_TMP}/storage",
        "freeswitch_conf_dir": f"{_TMP}/fsconf", "fs_recordings_dir": f"{_TMP}/recordings",
        "fs_sounds_dir": f"{_TMP}/sounds",
    }, environ={})
    for sub in ("fsconf/dialplan/public", "fsconf/sip_profiles/external", "fsconf/autoload_configs", "storage",
                "recordings", "sounds"):
        os.makedirs(f"{_TMP}/{sub}", exist_ok=True)
    set_settings(settings)
    reset_keyring()
    return settings


@pytest.fixture(scope="session")
def migrated_db(test_settings: Settings):
    from core.seed import sync_roles
    from models.base import bind_database
    from models.migrate import migrate
    _recreate_database(test_settings.database_url)
    db = bind_database(test_settings.database_url)
    migrate(db, log=lambda *_: None)
    with db.connection_context():
        sync_roles()
    yield db
    db.close()
    _drop_database(test_settings.database_url)


@pytest.fixture()
def db(migrated_db):
    """Clean tables (roles and migrations kept) before each test."""
    tables = [r[0] for r in migrated_db.execute_sql(
        "SELECT tablename FROM pg_tables WHERE schemaname='public' "
        "AND tablename NOT IN ('schema_migrations','roles')").fetchall()]
    if tables:
        migrated_db.execute_sql("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE")
    yield migrated_db
    if not migrated_db.is_closed():
        migrated_db.close()


@pytest.fixture()
def redis_client(test_settings: Settings) -> Iterator[redis_lib.Redis]:
    client = redis_lib.Redis.from_url(test_settings.redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture()
def app(db, redis_client, test_settings):
    from web.app import create_app
    application = create_app(test_settings)
    application.config["TESTING"] = True
    return application


@pytest.fixture(scope="session")
def openapi_checker(test_settings, migrated_db):
    from tests.support.openapi_check import OpenApiChecker
    from web.app import create_app
    from web.openapi import build_openapi
    application = create_app(test_settings)
    with application.app_context():
        return OpenApiChecker(build_openapi(application))


@pytest.fixture()
def api(app, openapi_checker) -> ApiClient:
    return ApiClient(app.test_client(), openapi_checker)


@pytest.fixture()
def tenant(db):
    """Factory: an org with a project and users of the given roles; returns plain data."""
    from core.seed import create_org, create_project, create_user

    def make(slug: str, roles: tuple[str, ...] = ("owner",), project_name: str = "Проект") -> dict:
        org = create_org(f"Org {slug}", slug)
        project = create_project(org, project_name)
        users = {}
        for role in roles:
            email = f"{role}@{slug}.test"
            create_user(org, email, f"Passw0rd-{role}", role)
            users[role] = (email, f"Passw0rd-{role}")
        return {"org_id": str(org.id), "project_id": str(project.id), "users": users, "slug": slug}

    return make


class _AppClients:
    """API clients on an app built with specific settings (e.g. a telephony rig's directories)."""

    def __init__(self, settings, checker):
        from web.app import create_app
        self.app = create_app(settings)
        self.checker = checker
        self.base = ApiClient(self.app.test_client(), checker)

    def login_as(self, role: str, tenant: dict) -> ApiClient:
        from core.seed import create_user
        from tests.support.api import login
        org, project = tenant["org"], tenant["project"]
        email = f"{role}-{uuid.uuid4().hex[:6]}@{org.slug}.test"
        create_user(org, email, "Passw0rd-" + role, role)
        token = login(self.base, email, "Passw0rd-" + role)["access_token"]
        return self.base.with_(token=token, project_id=str(project.id))

    def stranger(self) -> ApiClient:
        from core.seed import create_org, create_project, create_user
        from tests.support.api import login
        org = create_org("Stranger", "stranger-" + uuid.uuid4().hex[:6])
        create_project(org, "Чужой")
        email = f"owner@{org.slug}.test"
        create_user(org, email, "Passw0rd-owner", "owner")
        return self.base.with_(token=login(self.base, email, "Passw0rd-owner")["access_token"])


@pytest.fixture()
def app_for(redis_client, openapi_checker):
    return lambda settings: _AppClients(settings, openapi_checker)


@pytest.fixture(scope="session")
def prompt_files() -> dict[str, str]:
    """The fixed Russian prompts, synthesized once per session (Festival, else espeak-ng)."""
    from core.telephony.prompts import render_prompts
    target = os.path.join(_TMP, "prompts")
    render_prompts(target)
    return {name: os.path.join(target, name) for name in os.listdir(target)}


@pytest.fixture()
def rig_factory(db, redis_client, test_settings, tmp_path, prompt_files):
    """Start the simulator and a real esl_app; ``voice=True`` also runs the audio server and engines."""
    import shutil
    started: list[Rig] = []

    def make(voice: bool = False, sim_options: dict | None = None, **overrides) -> Rig:
        base = tmp_path / f"rig{len(started)}"
        dirs = TelephonyDirs.make(base)
        for name, path in prompt_files.items():
            shutil.copy(path, dirs.sounds / name)
        sim = FsSim(dialplan_dir=str(dirs.conf / "dialplan"),
                    gateway_dir=str(dirs.conf / "sip_profiles" / "external" / "voiceai_generated"),
                    tz="Europe/Moscow", **(sim_options or {})).start()
        settings = telephony_settings(test_settings, dirs, sim.port, voice=voice, **overrides)
        esl = EslProcess(settings, base / "esl.log").start()
        esl.wait_log("connected to FreeSWITCH")
        if voice:
            esl.wait_log("voice engines ready", timeout=120)
        r = Rig(sim, esl, settings, dirs, redis_client, base)
        started.append(r)
        return r

    yield make
    for r in started:
        r.esl.close()
        r.sim.stop()


def pytest_configure(config):
    config.addinivalue_line("markers", "sim_only: needs the FreeSWITCH simulator; skipped when VOICEAI_TEST_FS_ESL is set")


@pytest.fixture()
def rig(request, rig_factory, redis_client, test_settings, tmp_path, prompt_files):
    """The simulator rig, or with VOICEAI_TEST_FS_ESL=host:port:password a real FreeSWITCH (docs/testing.md)."""
    from tests.support.real_fs import real_fs_config, real_rig
    if real_fs_config() is None:
        yield rig_factory()
        return
    if request.node.get_closest_marker("sim_only"):
        pytest.skip("simulator only (VOICEAI_TEST_FS_ESL is set)")
    with real_rig(test_settings, redis_client, tmp_path, prompt_files) as real:
        yield real


@pytest.fixture()
def tool_world(db, redis_client):
    """Tool tests: projects (in a chosen time zone), calls in them and ToolContexts (core.tools)."""
    from core.events.bus import read_since
    from core.seed import create_org, create_project
    from core.tools.base import ToolContext
    from core.tools.journal import set_event_redis
    from models.calls import Call
    set_event_redis(redis_client)

    class World:
        redis = redis_client

        def project(self, timezone: str = "Europe/Moscow", slug: str | None = None):
            slug = slug or "tools-" + uuid.uuid4().hex[:8]
            return create_project(create_org(f"Org {slug}", slug), "Проект", timezone=timezone)

        def call(self, project, caller: str = "+79991234567") -> Call:
            return Call.create(project=project.id, direction="inbound", from_number=caller,
                               to_number="+74951234567", state="in_progress", trace_id=uuid.uuid4().hex)

        def ctx(self, project, call=None, **kw) -> ToolContext:
            kw.setdefault("caller_phone", call.from_number if call is not None else None)
            return ToolContext(project_id=project.id, trace_id=kw.pop("trace_id", uuid.uuid4().hex),
                               call_id=call.id if call is not None else None, timezone=project.timezone, **kw)

        def events(self, project) -> list[dict]:
            return [e for _, e in read_since(redis_client, project.id)]

    yield World()
    set_event_redis(None)


class WebProcess:
    """A real ``voiceai-web`` process (gevent WSGI server) on a free port; see ``web_process``."""

    def __init__(self, settings, log_path, **env_extra):
        import socket
        import subprocess
        import sys
        import time
        import requests
        from pathlib import Path
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEAI_")}
        env.update({"VOICEAI_DATABASE_URL": settings.database_url, "VOICEAI_REDIS_URL": settings.redis_url,
                    "VOICEAI_SECRET_KEY": settings.secret_key, "VOICEAI_ENCRYPTION_KEYS": settings.encryption_keys,
                    "VOICEAI_LOG_LEVEL": "INFO", "VOICEAI_HTTP_HOST": "127.0.0.1", "VOICEAI_HTTP_PORT": str(self.port),
                    "VOICEAI_ENV": "test"})
        env.update({k: str(v) for k, v in env_extra.items()})
        self.env, self.log_path = env, log_path
        self.base = f"http://127.0.0.1:{self.port}"
        self.ws_base = f"ws://127.0.0.1:{self.port}"
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen([str(Path(sys.executable).parent / "voiceai-web")], env=env,
                                     cwd=str(Path(__file__).resolve().parent.parent),
                                     stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                time.sleep(0.1)
        self.close()
        raise AssertionError("web server did not start: " + log_path.read_text())

    def log(self) -> str:
        return self.log_path.read_text()

    def close(self) -> None:
        import subprocess
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture()
def web_process(db, redis_client, test_settings, tmp_path):
    """Factory: start a real web process with extra VOICEAI_* variables; stopped after the test."""
    started: list[WebProcess] = []

    def start(settings=None, **env_extra) -> WebProcess:
        proc = WebProcess(settings or test_settings, tmp_path / f"web{len(started)}.log", **env_extra)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.close()


# Headless Chromium for the cabinet's browser tests (fixtures `chromium`, `cabinet`): registered once
# here, so no test module defines its own copy (see tests/support/browser.py).
from tests.support.browser import cabinet, chromium  # noqa: E402,F401
