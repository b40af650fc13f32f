"""Trace ids: one per request, call, tool invocation and message, carried into every log line."""
from __future__ import annotations

import contextvars
import re
import uuid

_trace_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("voiceai_trace_id", default=None)
_SAFE = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def new_trace_id() -> str:
    return uuid.uuid4().hex


def accept_trace_id(candidate: str | None) -> str:
    """Keep a caller-supplied trace id when it is safe to log, else mint one."""
    if candidate and _SAFE.match(candidate):
        return candidate
    return new_trace_id()


def set_trace_id(trace_id: str | None) -> contextvars.Token:
    return _trace_id.set(trace_id)


def current_trace_id() -> str | None:
    return _trace_id.get()
