"""Telephony test rig: the FreeSWITCH simulator, a real ``voiceai-esl`` process, tenant fixtures.

esl_app runs as its own process (as in production) so tests can kill and restart it; the simulator
runs in the test process on real TCP. Everything esl_app needs (database, Redis, FreeSWITCH conf,
recordings and storage directories) points at the test instances and temporary directories.
"""
from __future__ import annotations

import array
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path
from typing import Any, Callable

from core.config import Settings
from core.events.bus import read_since
from core.telephony.command_queue import CommandQueue
from core.telephony.fs_apply import apply_telephony

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05,
               message: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {message}")


@dataclasses.dataclass
class TelephonyDirs:
    conf: Path
    recordings: Path
    storage: Path
    sounds: Path

    @classmethod
    def make(cls, base: Path) -> "TelephonyDirs":
        dirs = cls(conf=base / "fsconf", recordings=base / "recordings", storage=base / "storage",
                   sounds=base / "sounds")
        for p in (dirs.conf / "dialplan" / "public", dirs.conf / "sip_profiles" / "external",
                  dirs.conf / "autoload_configs", dirs.recordings, dirs.storage, dirs.sounds):
            p.mkdir(parents=True, exist_ok=True)
        return dirs


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def telephony_settings(base: Settings, dirs: TelephonyDirs, esl_port: int, voice: bool = False,
                       **overrides: Any) -> Settings:
    """Settings for an esl_app under test; the voice loop (models) only when a test needs it."""
    return dataclasses.replace(base, esl_port=esl_port, esl_password="ClueCon", freeswitch_conf_dir=str(dirs.conf),
                               fs_recordings_dir=str(dirs.recordings), storage_dir=str(dirs.storage),
                               fs_sounds_dir=str(dirs.sounds), audio_ws_port=free_port() if voice else 1,
                               drain_timeout_s=30, voice_enabled=voice, fs_tts_dir=str(dirs.conf.parent / "tts"),
                               **overrides)


def settings_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEAI_")}
    for var, name, _default in Settings.env_table():
        value = getattr(settings, name)
        env[var] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    env["VOICEAI_LOG_LEVEL"] = "INFO"
    return env


class EslProcess:
    """A real ``voiceai-esl`` process with its JSON log captured to a file."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self._log = None

    def start(self) -> "EslProcess":
        self._log = open(self.log_path, "a")
        self.proc = subprocess.Popen([str(BIN / "voiceai-esl")], env=settings_env(self.settings), cwd=ROOT,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        return self

    def logs(self) -> list[dict]:
        out = []
        for line in self.log_path.read_text().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def wait_log(self, text: str, timeout: float = 15.0, after: int = 0) -> dict:
        return wait_until(lambda: next((l for l in self.logs()[after:] if text in l.get("msg", "")), None),
                          timeout, message=f"esl_app log {text!r}")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def terminate(self, timeout: float = 40.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self._log:
            self._log.close()


def make_telephony_tenant(slug: str = "tel", recording: bool = True, schedule: dict | None = None,
                          after_hours_action: str = "hangup", operator_target: str = "1001",
                          ring_timeout_s: int = 5, fallback_action: str = "back_to_agent",
                          whisper: bool = True) -> dict[str, Any]:
    """Org, project, SIP trunk, agent with a published version, operator route and a number."""
    from core.security.crypto import encrypt_secret
    from core.seed import create_org, create_project
    from models.agents import Agent, AgentVersion
    from models.telephony import OperatorRoute, PhoneNumber, SipConnection
    org = create_org(f"Org {slug}", slug)
    project = create_project(org, "Телефония")
    conn = SipConnection.create(project=project.id, name="Основной транк", provider_host="sip.example.net",
                                login="100", password_encrypted=encrypt_secret("s3cret", "sip_connections.password_encrypted"),
                                gateway_name=f"voiceai_{slug}", caller_id="+74950000000")
    agent = Agent.create(project=project.id, name="Администратор клиники")
    version = AgentVersion.create(project=project.id, agent=agent.id, version=1, state="published",
                                  config_json={"greeting": "Здравствуйте"})
    agent.published_version = version.id
    agent.save()
    route = OperatorRoute.create(project=project.id, name="Ресепшн", kind="sip_extension", target=operator_target,
                                 ring_timeout_s=ring_timeout_s, fallback_action=fallback_action,
                                 whisper_enabled=whisper)
    number = PhoneNumber.create(project=project.id, e164_number="+74951234567", sip_connection=conn.id,
                                agent=agent.id, recording_enabled=recording, schedule_json=schedule or {},
                                after_hours_action=after_hours_action, operator_route=route.id,
                                timezone="Europe/Moscow")
    return {"org": org, "project": project, "conn": conn, "agent": agent, "version": version, "route": route,
            "number": number}


def tone_wav(path: Path, seconds: float = 2.0, rate: int = 8000) -> str:
    samples = array.array("h", (int(8000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(int(rate * seconds))))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return str(path)


class Rig:
    def __init__(self, sim: Any, esl: EslProcess, settings, dirs: TelephonyDirs, redis_client, tmp: Path):
        self.sim, self.esl, self.settings, self.dirs, self.redis, self.tmp = sim, esl, settings, dirs, redis_client, tmp

    def apply(self) -> None:
        result = apply_telephony(self.redis, self.settings)
        assert not result.errors, result.errors
        if result.command_id:
            reply = CommandQueue(self.redis, self.settings.fs_node).wait_result(result.command_id, 15)
            assert reply and reply["ok"], reply.get("bodies")

    def call_row(self, fs_uuid: str, timeout: float = 45.0, **conds) -> "Call":
        from models.calls import Call
        def find():
            row = Call.get_or_none(Call.fs_uuid == fs_uuid)
            if row is None:
                return None
            for key, value in conds.items():
                if key == "ended" and (row.ended_at is not None) != value:
                    return None
                if key != "ended" and getattr(row, key) != value:
                    return None
            return row
        return wait_until(find, timeout, message=f"call row {conds}")

    def events(self, project_id) -> list[dict]:
        return [e for _id, e in read_since(self.redis, project_id)]
