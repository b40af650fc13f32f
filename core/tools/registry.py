"""The single entry point for tools: what exists, what the LLM is told, and running one.

``invoke`` never raises into the dialog: invalid arguments, expected failures (``ToolError``) and
unexpected exceptions all come back as a failed ``ToolResult`` with a catalog code and a Russian
message, after the ``tool_invocations`` row and the ``tool.*`` events are written.

The tool's own writes run in a transaction (a savepoint inside an outer one): a failure leaves
nothing half-done. In a sandbox (the playground's "do not touch real data") that transaction is
always rolled back, so the result is the real computed one but nothing persists except the
invocation row (its ``request_json.sandbox`` is true).
"""
from __future__ import annotations

import logging
import time
import uuid
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterator

import peewee as pw

from core.tools.base import Tool, ToolContext, ToolError, ToolResult
from core.tools.common import jsonable
from core.tools.journal import InvocationJournal, set_event_redis
from core.validation import field_errors
from models.base import database

__all__ = ["available_tools", "tool_specs", "invoke", "register", "set_event_redis"]

log = logging.getLogger("voiceai.tools")

_TOOLS: dict[str, Tool] = {}
_loaded = False


def register(tool: Tool) -> Tool:
    """Add a tool (providers of later issues call this at import); names are unique."""
    if not tool.name or tool.name in _TOOLS and _TOOLS[tool.name] is not tool:
        raise ValueError(f"tool name {tool.name!r} is empty or already registered")
    _TOOLS[tool.name] = tool
    return tool


def _load() -> None:
    global _loaded
    if _loaded:
        return
    from core.tools.calendar.tools import TOOLS as CALENDAR_TOOLS
    from core.tools.crm.tools import TOOLS as CRM_TOOLS
    for tool in CRM_TOOLS + CALENDAR_TOOLS:
        register(tool)
    _loaded = True


def available_tools(project_id: uuid.UUID | None = None) -> dict[str, Tool]:
    """Every registered tool by name (later filtered by the project's integrations)."""
    _load()
    return dict(_TOOLS)


def tool_specs(names: list[str]) -> list[dict[str, Any]]:
    """``{name, description, parameters}`` of the named tools, for the LLM; unknown name: ValueError."""
    tools = available_tools()
    unknown = [n for n in names if n not in tools]
    if unknown:
        raise ValueError(f"unknown tools: {', '.join(unknown)}")
    return [tools[n].spec() for n in names]


class _SandboxRollback(Exception):
    """Raised inside the tool's transaction to discard a sandbox run's writes."""


# Inside ``sandbox_turn``: the invocation rows of the turn (re-inserted after the rollback).
_turn_rows: ContextVar[list[Any] | None] = ContextVar("voiceai_sandbox_turn", default=None)


@contextmanager
def sandbox_turn() -> Iterator[None]:
    """One playground turn in a sandbox: the tools' writes stay visible to each other for the whole
    turn (a task can be attached to the deal the previous action created), then all of them are
    rolled back together. The turn's ``tool_invocations`` rows are kept: they are re-inserted."""
    rows: list[Any] = []
    token = _turn_rows.set(rows)
    try:
        with database.atomic() as txn:
            try:
                yield
            finally:
                txn.rollback()
    finally:
        _turn_rows.reset(token)
    for row in rows:
        row.save(force_insert=True)


def _failure(code: str, message: str, data: dict[str, Any] | None = None) -> tuple[bool, dict, str, str]:
    return False, dict(data or {}), code, message


def _run(tool: Tool, ctx: ToolContext, args: dict[str, Any]) -> tuple[bool, dict, str | None, str | None]:
    """Run the tool in its own transaction: (ok, data, error_code, error_message)."""
    problems = field_errors(tool.parameters, args)
    if problems:
        text = "; ".join(f"{k}: {v}" for k, v in problems.items())
        return _failure("VALIDATION_FAILED", f"Неверные параметры действия «{tool.title or tool.name}»: {text}",
                        {"fields": problems})
    result: dict[str, Any] = {}
    try:
        with database.atomic():
            result = jsonable(tool.run(ctx, args) or {})
            if ctx.sandbox and _turn_rows.get() is None:  # in a sandbox turn the turn rolls back
                raise _SandboxRollback()
    except _SandboxRollback:
        pass
    except ToolError as exc:
        return _failure(exc.code, exc.message, jsonable(exc.data))
    except (pw.OperationalError, pw.InterfaceError):
        log.exception("tool failed: database unavailable", extra={"trace_id": ctx.trace_id, "tool": tool.name})
        return _failure("SERVICE_UNAVAILABLE",
                        f"Не получилось выполнить действие «{tool.title or tool.name}»: база данных недоступна")
    except Exception as exc:  # noqa: BLE001 - a tool bug must not end the call
        log.exception("tool failed", extra={"trace_id": ctx.trace_id, "tool": tool.name})
        return _failure("INTERNAL_ERROR",
                        f"Не получилось выполнить действие «{tool.title or tool.name}» из-за технической ошибки",
                        {"exception": type(exc).__name__})
    return True, result, None, None


def invoke(ctx: ToolContext, name: str, args: dict[str, Any]) -> ToolResult:
    """Validate, run and record one tool call; always returns a ToolResult."""
    t0 = time.perf_counter()
    tool = available_tools(ctx.project_id).get(name)
    journal: InvocationJournal | None = None
    try:
        call = InvocationJournal.find_call(ctx)
        provider, integration_id = (tool.provider if tool else None), None
        if tool is not None and hasattr(tool, "provider_info"):
            provider, integration_id = tool.provider_info(ctx)
        journal = InvocationJournal(ctx, name, tool.title if tool else name, call)
        journal.start(args, provider, integration_id)
    except Exception:  # noqa: BLE001
        log.exception("tool invocation not recorded", extra={"trace_id": ctx.trace_id, "tool": name})
        return ToolResult(ok=False, error_code="SERVICE_UNAVAILABLE",
                          error_message="Не получилось выполнить действие: сервис временно недоступен",
                          duration_ms=int((time.perf_counter() - t0) * 1000))

    if tool is None:
        ok, data, code, message = _failure("NOT_FOUND", f"Действие «{name}» не подключено к агенту",
                                           {"tool_name": name})
    elif ctx.call_id is not None and journal.call is None:
        ok, data, code, message = _failure("NOT_FOUND", "Звонок не найден в этом проекте",
                                           {"call_id": str(ctx.call_id)})
    else:
        ok, data, code, message = _run(tool, ctx, args)
    duration_ms = int((time.perf_counter() - t0) * 1000)
    try:
        journal.finish(ok, duration_ms, data if ok else {"error": {"code": code, "message": message}, **data},
                       code, message)
    except Exception:  # noqa: BLE001
        log.exception("tool invocation result not recorded", extra={"trace_id": ctx.trace_id, "tool": name})
    turn_rows = _turn_rows.get()
    if ctx.sandbox and turn_rows is not None and journal.row is not None:
        turn_rows.append(journal.row)
    return ToolResult(ok=ok, data=data, error_code=code, error_message=message,
                      invocation_id=journal.row.id if journal.row else None, duration_ms=duration_ms)
