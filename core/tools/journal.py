"""What a tool invocation leaves behind: the ``tool_invocations`` row, the call's timeline entry,
the realtime events ``tool.started/succeeded/failed`` and, for failures the platform must look at,
a ``call_issues`` row.

Journal writes never raise into the caller: a tool call during a phone call must not break the call
because Redis or the event timeline hiccuped (failures are logged with the trace id).
"""
from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

import redis

from core.audit import mask_secrets
from core.calls.store import CallRecorder
from core.config import get_settings
from core.events.bus import publish
from core.events.schema import EventType, make_event
from core.tools.base import ToolContext
from core.tools.common import jsonable
from models.base import utcnow
from models.calls import Call, CallEvent, CallIssue, IssueSource, ToolInvocation, ToolInvocationStatus

log = logging.getLogger("voiceai.tools")

# Failures that are the platform's or a provider's fault (not "slot taken"): worth a call issue.
ISSUE_CODES = frozenset({"INTERNAL_ERROR", "SERVICE_UNAVAILABLE", "INTEGRATION_TIMEOUT",
                         "INTEGRATION_AUTH_FAILED"})

_redis_lock = threading.Lock()
_redis_clients: dict[str, redis.Redis] = {}
_redis_override: redis.Redis | None = None


def set_event_redis(client: redis.Redis | None) -> None:
    """Use this Redis client for tool events (processes that already hold one); None: from settings."""
    global _redis_override
    _redis_override = client


def event_redis() -> redis.Redis:
    if _redis_override is not None:
        return _redis_override
    url = get_settings().redis_url
    with _redis_lock:
        client = _redis_clients.get(url)
        if client is None:
            client = _redis_clients[url] = redis.Redis.from_url(url, decode_responses=True)
        return client


class InvocationJournal:
    """Records one invocation from start to finish."""

    def __init__(self, ctx: ToolContext, tool_name: str, title: str, call: Call | None) -> None:
        self.ctx = ctx
        self.tool_name = tool_name
        self.title = title or tool_name
        self.call = call
        self.row: ToolInvocation | None = None

    @staticmethod
    def find_call(ctx: ToolContext) -> Call | None:
        """The context's call, only if it belongs to the context's project."""
        if ctx.call_id is None:
            return None
        return Call.for_project(ctx.project_id).where(Call.id == ctx.call_id).first()

    def start(self, args: Any, provider: str | None, integration_id: uuid.UUID | None) -> ToolInvocation:
        ctx = self.ctx
        request = {"args": mask_secrets(jsonable(args)), "sandbox": ctx.sandbox}
        if ctx.agent_version_id:
            request["agent_version_id"] = str(ctx.agent_version_id)
        if ctx.user_id:
            request["user_id"] = str(ctx.user_id)
        self.row = ToolInvocation.create(
            project=ctx.project_id, call=self.call.id if self.call else None, integration=integration_id,
            tool_name=self.tool_name[:100], provider=provider, request_json=request,
            status=ToolInvocationStatus.STARTED.value, trace_id=ctx.trace_id[:64], started_at=utcnow())
        self._emit(EventType.TOOL_STARTED, f"Выполняется: {self.title}", {})
        return self.row

    def finish(self, ok: bool, duration_ms: int, response: dict[str, Any], error_code: str | None = None,
               error_message: str | None = None) -> None:
        row = self.row
        if row is None:
            return
        status = ToolInvocationStatus.SUCCEEDED if ok else ToolInvocationStatus.FAILED
        row.status = status.value
        row.duration_ms = duration_ms
        row.response_json = mask_secrets(jsonable(response))
        row.error_code = error_code
        row.error_message = error_message
        row.external_id = _external_id(response) if ok else None
        row.finished_at = utcnow()
        row.save()
        if ok:
            self._emit(EventType.TOOL_SUCCEEDED, f"Готово: {self.title}", {"duration_ms": duration_ms})
        else:
            self._emit(EventType.TOOL_FAILED, f"Ошибка: {self.title} — {error_message}",
                       {"duration_ms": duration_ms, "error_code": error_code, "error_message": error_message})
            if error_code in ISSUE_CODES and self.call is not None and not self.ctx.sandbox:
                self._issue(error_code, error_message or "")

    def _payload(self, human_status: str, extra: dict[str, Any]) -> dict[str, Any]:
        row = self.row
        return {"human_status": human_status[:200], "tool_name": self.tool_name, "tool_title": self.title,
                "invocation_id": str(row.id) if row else None, "status": row.status if row else None,
                "trace_id": self.ctx.trace_id, "sandbox": self.ctx.sandbox,
                "call_id": str(self.call.id) if self.call else None, **extra}

    def _emit(self, etype: EventType, human_status: str, extra: dict[str, Any]) -> None:
        payload = self._payload(human_status, extra)
        try:
            r = event_redis()
            if self.call is not None:
                seq = CallEvent.select().where(CallEvent.call == self.call.id).count() + 1
                CallEvent.create(project=self.ctx.project_id, call=self.call.id, seq=seq, ts=utcnow(),
                                 type=etype.value, human_status=payload["human_status"], payload_json=payload,
                                 trace_id=self.ctx.trace_id[:64])
                CallRecorder(self.call, r).publish(etype.value, None, payload)
            else:
                publish(r, make_event(etype, self.ctx.project_id, "tool_invocation", self.row.id, payload))
        except Exception:  # noqa: BLE001 - events must never break the call
            log.exception("tool event not recorded",
                          extra={"trace_id": self.ctx.trace_id, "tool": self.tool_name, "event": etype.value})

    def _issue(self, code: str, message: str) -> None:
        try:
            CallIssue.create(project=self.ctx.project_id, call=self.call.id, code=code,
                             source=IssueSource.SYSTEM.value, comment=message,
                             details_json={"tool_name": self.tool_name,
                                           "invocation_id": str(self.row.id) if self.row else None},
                             trace_id=self.ctx.trace_id[:64])
            Call.update(has_errors=True, updated_at=utcnow()).where(Call.id == self.call.id).execute()
        except Exception:  # noqa: BLE001
            log.exception("call issue not recorded", extra={"trace_id": self.ctx.trace_id})


def _external_id(response: dict[str, Any]) -> str | None:
    """The id of what the tool created (contact, deal, appointment), for the Inbox link."""
    for key in ("appointment", "deal", "task", "note", "link", "contact"):
        value = response.get(key)
        if isinstance(value, dict) and value.get("id"):
            return str(value["id"])[:200]
    return None
