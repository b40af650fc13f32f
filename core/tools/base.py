"""The tool contract shared by the dialog runtime, the playground and every tool provider."""
from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ToolContext:
    """Who is acting: the project, the call (None in the text playground) and the trace id.

    ``sandbox`` is the playground's "do not touch real data": tools compute their real result
    inside a transaction that is rolled back, so a user sees what would happen and nothing persists.
    """

    project_id: uuid.UUID
    trace_id: str
    call_id: uuid.UUID | None = None
    agent_version_id: uuid.UUID | None = None
    caller_phone: str | None = None
    timezone: str = "Europe/Moscow"
    sandbox: bool = False
    user_id: uuid.UUID | None = None
    variables: dict[str, Any] = field(default_factory=dict)


@dataclass
class ToolResult:
    ok: bool
    data: dict[str, Any] = field(default_factory=dict)
    error_code: str | None = None      # error catalog code (core.errors)
    error_message: str | None = None   # Russian, safe to show to a user or say to a caller
    invocation_id: uuid.UUID | None = None
    duration_ms: int = 0


class ToolError(Exception):
    """An expected failure of a tool (slot taken, contact not found): becomes a failed ToolResult."""

    def __init__(self, code: str, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data or {}


class Tool(ABC):
    """One action the LLM may call. ``parameters`` is the JSON Schema its arguments must satisfy."""

    name: str = ""          # what the LLM sees, snake_case, unique
    title: str = ""         # Russian, shown in the cabinet
    description: str = ""   # for the LLM: when to use it
    parameters: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}
    provider: str = "builtin"

    @abstractmethod
    def run(self, ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
        """Do the action; raise ToolError for expected failures. Runs inside the caller's DB connection."""

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "parameters": self.parameters}
