"""The telephony command queue: how the API and workers ask esl_app to act on calls.

Commands (originate, hangup, transfer, FreeSWITCH api calls) are JSON objects in a Redis list per
FreeSWITCH node. esl_app moves each one atomically into a processing list (BLMOVE) before acting, so
a crash leaves it there for recovery rather than losing it; every command has an id, and a command
id is executed at most once (submission is de-duplicated, execution is marked, the result is kept).
Results go to ``tel:cmd:<id>:result`` and a reply list a submitter can block on.
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

import redis

RESULT_TTL_S = 7 * 86400


class CommandType(str, Enum):
    ORIGINATE = "originate"
    HANGUP = "hangup"
    TRANSFER = "transfer"
    SEND_DTMF = "send_dtmf"
    FS_API = "fs_api"


@dataclass
class TelephonyCommand:
    type: str
    args: dict[str, Any]
    project_id: str | None = None
    trace_id: str | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created_at: float = field(default_factory=time.time)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str | bytes) -> "TelephonyCommand":
        data = json.loads(raw)
        return cls(**data)


class CommandQueue:
    def __init__(self, r: redis.Redis, node: str = "default") -> None:
        self.r = r
        self.node = node
        self.queue_key = f"tel:cmd:queue:{node}"
        self.processing_key = f"tel:cmd:processing:{node}"

    # -- submitter side -------------------------------------------------------------------
    def submit(self, cmd: TelephonyCommand) -> bool:
        """Queue the command unless this id was submitted before (returns False then)."""
        CommandType(cmd.type)
        if not self.r.set(f"tel:cmd:{cmd.id}:seen", "1", nx=True, ex=RESULT_TTL_S):
            return False
        self.r.lpush(self.queue_key, cmd.to_json())
        return True

    def wait_result(self, cmd_id: str, timeout_s: float) -> dict[str, Any] | None:
        """Block until esl_app reports the result (None on timeout).

        Waits in slices shorter than the Redis client's socket timeout (5 s by default), so a long
        originate does not look like a dead Redis connection.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            existing = self.result(cmd_id)
            if existing is not None:
                return existing
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            popped = self.r.blpop([f"tel:cmd:{cmd_id}:reply"], timeout=max(1, min(3, int(remaining))))
            if popped is not None:
                return json.loads(popped[1])

    def result(self, cmd_id: str) -> dict[str, Any] | None:
        raw = self.r.get(f"tel:cmd:{cmd_id}:result")
        return json.loads(raw) if raw else None

    # -- executor side --------------------------------------------------------------------
    def claim(self, timeout_s: float = 1.0) -> TelephonyCommand | None:
        raw = self.r.blmove(self.queue_key, self.processing_key, timeout_s, "RIGHT", "LEFT")
        if raw is None:
            return None
        cmd = TelephonyCommand.from_json(raw)
        cmd._raw = raw  # type: ignore[attr-defined]
        return cmd

    def mark_started(self, cmd: TelephonyCommand) -> bool:
        """True the first time; False when an earlier run already started executing this id."""
        return bool(self.r.set(f"tel:cmd:{cmd.id}:started", "1", nx=True, ex=RESULT_TTL_S))

    def complete(self, cmd: TelephonyCommand, result: dict[str, Any]) -> None:
        payload = json.dumps({"id": cmd.id, "type": cmd.type, **result}, ensure_ascii=False)
        pipe = self.r.pipeline()
        pipe.set(f"tel:cmd:{cmd.id}:result", payload, ex=RESULT_TTL_S)
        pipe.rpush(f"tel:cmd:{cmd.id}:reply", payload)
        pipe.expire(f"tel:cmd:{cmd.id}:reply", 300)
        pipe.lrem(self.processing_key, 1, getattr(cmd, "_raw", cmd.to_json()))
        pipe.execute()

    def recover(self) -> list[TelephonyCommand]:
        """Commands a previous esl_app run claimed but never completed (oldest first)."""
        out = []
        for raw in reversed(self.r.lrange(self.processing_key, 0, -1)):
            cmd = TelephonyCommand.from_json(raw)
            cmd._raw = raw  # type: ignore[attr-defined]
            out.append(cmd)
        return out
