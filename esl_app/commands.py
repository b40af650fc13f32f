"""Executes telephony commands from the Redis queue (core.telephony.command_queue) against FreeSWITCH.

Each command runs in its own greenlet (bounded pool) so a ringing originate never blocks a hangup.
A command id runs at most once: after a crash, a command that had started but left no result is
not re-run (that could ring a contact twice); it is completed as interrupted and its call row is
closed, unless the channel it created is still alive (then the call was adopted by re-attach).
"""
from __future__ import annotations

import logging
import re
import uuid
from typing import TYPE_CHECKING, Any

import gevent
from gevent.pool import Pool

from core.events.bus import publish
from core.events.schema import make_event
from core.telephony.causes import describe_cause, originate_error_outcome
from core.telephony.command_queue import CommandQueue, CommandType, TelephonyCommand
from core.tracing import set_trace_id
from esl_app.esl import FsCommandError
from models.base import database, utcnow
from models.calls import Call

if TYPE_CHECKING:
    from esl_app.runtime import EslRuntime

log = logging.getLogger("voiceai.esl.commands")

# FreeSWITCH api commands the API may run through FS_API (everything else is refused).
_FS_API_ALLOWED = [re.compile(p) for p in (
    r"^sofia status gateway [A-Za-z0-9_.-]+$", r"^sofia status$",
    r"^sofia profile (external|internal) (rescan|killgw [A-Za-z0-9_.-]+|startgw [A-Za-z0-9_.-]+)$",
    r"^reloadxml$", r"^reloadacl$", r"^status$", r"^version$")]
_VAR_SAFE = re.compile(r"^[A-Za-z0-9_+.@:/ -]*$")


def _var(value: Any) -> str:
    """A channel-variable value safe inside ``{a=b,c=d}`` (no commas, braces or quotes)."""
    text = str(value)
    if not _VAR_SAFE.match(text):
        raise ValueError(f"unsafe channel variable value: {text!r}")
    return text


class CommandExecutor:
    def __init__(self, runtime: "EslRuntime", queue: CommandQueue, concurrency: int = 200) -> None:
        self.runtime = runtime
        self.queue = queue
        self.pool = Pool(concurrency)
        self.running = True

    def recover(self) -> int:
        """Settle commands a previous run claimed but did not finish."""
        count = 0
        for cmd in self.queue.recover():
            count += 1
            if self.queue.result(cmd.id) is not None:
                self.queue.complete(cmd, self.queue.result(cmd.id) or {})
                continue
            if not self.queue.mark_started(cmd):  # it had started: never run it twice
                self._settle_interrupted(cmd)
            else:
                self.pool.spawn(self._execute, cmd)
        return count

    def _settle_interrupted(self, cmd: TelephonyCommand) -> None:
        result: dict[str, Any] = {"ok": False, "error": "interrupted",
                                  "detail": "esl_app перезапустился во время выполнения команды"}
        if cmd.type == CommandType.ORIGINATE.value:
            fs_uuid = cmd.args.get("fs_uuid")
            alive = fs_uuid and self.runtime.fs.api(f"uuid_exists {fs_uuid}").strip() == "true"
            if alive:
                result = {"ok": True, "recovered": True, "fs_uuid": fs_uuid}
            else:
                with database.connection_context():
                    self._close_call(cmd.args.get("call_id"), "failed", "INTERRUPTED",
                                     "Исходящий звонок прерван перезапуском телефонного модуля")
        self.queue.complete(cmd, result)

    def run_until(self, should_stop) -> None:  # type: ignore[no-untyped-def]
        """Claim and execute commands until ``should_stop()`` or ``stop()``."""
        while self.running and not should_stop():
            try:
                cmd = self.queue.claim(timeout_s=1.0)
            except Exception:  # noqa: BLE001 - Redis hiccup: wait and retry
                log.exception("command queue unavailable")
                gevent.sleep(1)
                continue
            if cmd is None:
                continue
            if not self.queue.mark_started(cmd):
                self._settle_interrupted(cmd)
                continue
            self.pool.spawn(self._execute, cmd)

    def stop(self) -> None:
        self.running = False

    def _execute(self, cmd: TelephonyCommand) -> None:
        set_trace_id(cmd.trace_id)
        try:
            handler = getattr(self, f"_do_{cmd.type}")
            with database.connection_context():
                result = handler(cmd)
        except (FsCommandError, ValueError, KeyError) as exc:
            log.warning("telephony command failed", extra={"command": cmd.type, "error": str(exc)})
            result = {"ok": False, "error": "command_failed", "detail": str(exc)}
        except Exception as exc:  # noqa: BLE001
            log.exception("telephony command crashed", extra={"command": cmd.type})
            result = {"ok": False, "error": "internal", "detail": type(exc).__name__}
        self.queue.complete(cmd, result)

    # -- handlers ------------------------------------------------------------------------------
    def _do_fs_api(self, cmd: TelephonyCommand) -> dict[str, Any]:
        """One FreeSWITCH api command, or a list run in order (reloadxml before rescan)."""
        texts = cmd.args.get("commands") or [cmd.args["command"]]
        texts = [str(t).strip() for t in texts]
        for text in texts:
            if not any(p.match(text) for p in _FS_API_ALLOWED):
                raise ValueError(f"FreeSWITCH command not allowed: {text!r}")
        bodies = [self.runtime.fs.api(text) for text in texts]
        ok = all(not b.startswith("-ERR") for t, b in zip(texts, bodies) if " killgw " not in t)
        return {"ok": ok, "body": bodies[0] if len(bodies) == 1 else None, "bodies": bodies}

    def _do_hangup(self, cmd: TelephonyCommand) -> dict[str, Any]:
        fs_uuid = self._fs_uuid(cmd)
        cause = str(cmd.args.get("cause", "NORMAL_CLEARING"))
        if not re.match(r"^[A-Z_]+$", cause):
            raise ValueError("bad hangup cause")
        body = self.runtime.fs.api(f"uuid_kill {fs_uuid} {cause}")
        return {"ok": body.startswith("+OK"), "body": body.strip()}

    def _do_send_dtmf(self, cmd: TelephonyCommand) -> dict[str, Any]:
        digits = str(cmd.args["digits"])
        if not re.match(r"^[0-9*#A-Dw]{1,64}$", digits):
            raise ValueError("bad DTMF digits")
        body = self.runtime.fs.api(f"uuid_send_dtmf {self._fs_uuid(cmd)} {digits}")
        return {"ok": body.startswith("+OK"), "body": body.strip()}

    def _do_transfer(self, cmd: TelephonyCommand) -> dict[str, Any]:
        return self.runtime.transfers.transfer(cmd.args)

    def _fs_uuid(self, cmd: TelephonyCommand) -> str:
        if cmd.args.get("fs_uuid"):
            return _var(cmd.args["fs_uuid"])
        call = Call.get_or_none(Call.id == uuid.UUID(str(cmd.args["call_id"])))
        if call is None or not call.fs_uuid:
            raise ValueError("call has no live channel")
        if cmd.project_id and str(call.project_id) != str(cmd.project_id):
            raise ValueError("call belongs to another project")
        return call.fs_uuid

    def _do_originate(self, cmd: TelephonyCommand) -> dict[str, Any]:
        a = cmd.args
        call_id = str(a["call_id"])
        fs_uuid = _var(a["fs_uuid"])
        variables = {
            "origination_uuid": fs_uuid,
            "origination_caller_id_number": _var(a.get("caller_id") or "0000000000"),
            "origination_caller_id_name": _var(a.get("caller_id") or "VoiceAI"),
            "originate_timeout": int(a.get("timeout_s", 30)),
            "ignore_early_media": "true",
            "voiceai_call_id": call_id,
            "voiceai_project_id": _var(cmd.project_id or a.get("project_id", "")),
            "voiceai_trace_id": _var(cmd.trace_id or call_id.replace("-", "")),
            "voiceai_recording": "true" if a.get("recording") else "false",
        }
        for key, value in (a.get("variables") or {}).items():
            if not re.match(r"^[a-z0-9_]{1,40}$", key):
                raise ValueError(f"bad variable name {key!r}")
            variables[f"voiceai_var_{key}"] = _var(value)
        if a.get("agent") and self.runtime.settings.voice_enabled:
            # The agent talks on answer: the answered leg streams its audio to this esl_app, as inbound calls do.
            variables["api_on_answer"] = f"'{self._audio_fork(fs_uuid)}'"
        dial = a.get("dial_string") or f"sofia/gateway/{_var(a['gateway'])}/{_var(a['to'])}"
        app = a.get("app", "&park()")
        vars_text = ",".join(f"{k}={v}" for k, v in variables.items())
        Call.update(state="ringing", human_status="Набор номера", fs_uuid=fs_uuid, fs_node=self.runtime.node,
                    updated_at=utcnow()).where(Call.id == uuid.UUID(call_id)).execute()
        reply = self.runtime.fs.bgapi(f"originate {{{vars_text}}}{dial} {app}",
                                      timeout_s=int(a.get("timeout_s", 30)) + 30).strip()
        if reply.startswith("+OK"):
            return {"ok": True, "outcome": "answered", "fs_uuid": fs_uuid}
        info = originate_error_outcome(reply)
        # The result is reported only once the call row is final: let the channel's worker finish
        # (it has the full hangup event); without a channel (unknown gateway) close the row here.
        worker = self.runtime.calls.workers.get(fs_uuid)
        if worker is not None:
            worker.greenlet.join(timeout=5)
        self._close_call(call_id, info.outcome.value, reply.removeprefix("-ERR").strip() or "FAILED", info.title)
        return {"ok": False, "outcome": info.outcome.value, "reply": reply, "reason_ru": info.title}

    def _audio_fork(self, fs_uuid: str) -> str:
        """The answered outbound leg's audio stream (the channel uuid is known: no variable expansion;
        the metadata has no comma, which would split the originate variable block)."""
        from core.telephony.render import audio_fork_command
        s = self.runtime.settings
        return audio_fork_command(fs_uuid, f"ws://{s.audio_ws_host}:{s.audio_ws_port}/audio", "8k", {"callId": fs_uuid})

    def _close_call(self, call_id: str | None, outcome: str, cause: str, text: str) -> None:
        if not call_id:
            return
        call = Call.get_or_none(Call.id == uuid.UUID(str(call_id)))
        if call is None or call.ended_at is not None:
            return
        now = utcnow()
        Call.update(ended_at=now, state="ended", human_status="Завершён", outcome=outcome, hangup_cause=cause,
                    hangup_cause_text=text, updated_at=now).where(Call.id == call.id).execute()
        try:
            publish(self.runtime.redis, make_event("call.ended", call.project_id, "call", call.id,
                                                   {"outcome": outcome, "hangup_cause": cause,
                                                    "hangup_cause_text": text, "human_status": "Завершён",
                                                    "direction": call.direction, "to_number": call.to_number}))
        except Exception:  # noqa: BLE001
            log.exception("realtime publish failed")
