"""The text playground: chat with any agent version (drafts too) through the real dialog runtime.

A session lives in Redis (``agent:playground:<id>``, refreshed TTL) as the version it talks to plus
``AgentSession.to_state()``; each message rebuilds the session, runs one turn and saves it back.
Tools run with ``sandbox=True`` unless a message asks for real data, so by default nothing the
playground does persists in the CRM or the calendar (``core.tools.registry`` rolls back).

The LLM is the agent's scripted mode when its config says so, else the process's platform LLM
(``core.engines.factory.build_llm``, loaded once per process) run in a small inference pool off
the gevent loop; never a model per request.
"""
from __future__ import annotations

import json
import secrets
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Iterator

import redis

from core.agent.session import AgentSession, LlmStream, SessionContext
from core.config import Settings
from core.engines.base import LlmChunk, LlmRequest

TTL_S = 3600
_KEY = "agent:playground:{}"
_pool_lock = threading.Lock()
_pool: Any = None


@dataclass
class PlaygroundSession:
    id: str
    project_id: str
    agent_id: str
    version_id: str
    version: int
    user_id: str | None
    caller_phone: str | None
    timezone: str
    variables: dict[str, Any]
    state: dict[str, Any]


def _inference_pool() -> Any:
    global _pool
    with _pool_lock:
        if _pool is None:
            from core.engines.pool import InferencePool
            _pool = InferencePool(1, max_queue=16)
        return _pool


def platform_llm(settings: Settings) -> LlmStream:
    """The platform LLM as a stream function, run in the process's inference pool."""
    from core.engines.factory import build_llm
    engine = _inference_pool().run(build_llm, settings)

    def stream(request: LlmRequest) -> Iterator[LlmChunk]:
        return _inference_pool().stream(engine.stream, request)
    return stream


def llm_for(config: dict[str, Any], settings: Settings) -> LlmStream | None:
    if (config.get("llm") or {}).get("engine") == "scripted":
        return None
    return platform_llm(settings)


def save(r: redis.Redis, ps: PlaygroundSession) -> None:
    r.set(_KEY.format(ps.id), json.dumps(ps.__dict__, ensure_ascii=False, default=str), ex=TTL_S)


def load(r: redis.Redis, session_id: str, project_id: uuid.UUID, agent_id: uuid.UUID) -> PlaygroundSession | None:
    """The session when it exists, belongs to this project and agent, and has not expired."""
    raw = r.get(_KEY.format(session_id))
    if raw is None:
        return None
    data = json.loads(raw)
    if data["project_id"] != str(project_id) or data["agent_id"] != str(agent_id):
        return None
    return PlaygroundSession(**data)


def new_id() -> str:
    return secrets.token_urlsafe(16)


def context(ps: PlaygroundSession, version_agent_id: uuid.UUID, trace_id: str, use_real_data: bool) -> SessionContext:
    return SessionContext(project_id=uuid.UUID(ps.project_id), agent_id=version_agent_id,
                          agent_version_id=uuid.UUID(ps.version_id), trace_id=trace_id, call_id=None,
                          caller_phone=ps.caller_phone, channel="playground", sandbox=not use_real_data,
                          variables=dict(ps.variables),
                          timezone=ps.timezone, user_id=uuid.UUID(ps.user_id) if ps.user_id else None)


def run_turn(session: AgentSession, text: str) -> str:
    """One playground turn: the whole reply as text. In a sandbox the turn's tool writes are visible
    to each other (chained actions work) and rolled back together at the end of the turn."""
    if not session.ctx.sandbox:
        return "".join(session.respond(text)).strip()
    from core.tools.registry import sandbox_turn
    with sandbox_turn():
        return "".join(session.respond(text)).strip()
