"""Publishing realtime events into per-project Redis streams.

Each project has a stream ``events:<project_id>`` capped at ``MAXLEN`` entries (approximate
trimming), so a client that reconnects with its last event id can be replayed what it missed. The
realtime gateway reads these streams; producers (esl_app, workers, web) only append.
"""
from __future__ import annotations

import json
from typing import Any

import redis

MAXLEN = 10_000


def stream_key(project_id: Any) -> str:
    return f"events:{project_id}"


def publish(r: redis.Redis, event: dict[str, Any]) -> str:
    """Append the event; returns its stream id (the id clients resume from)."""
    event_id = r.xadd(stream_key(event["project_id"]), {"event": json.dumps(event, ensure_ascii=False)},
                      maxlen=MAXLEN, approximate=True)
    return event_id.decode() if isinstance(event_id, bytes) else event_id


def read_since(r: redis.Redis, project_id: Any, last_id: str = "0-0", count: int = 1000) -> list[tuple[str, dict]]:
    """Events after ``last_id`` (exclusive), oldest first."""
    rows = r.xrange(stream_key(project_id), min=f"({last_id}" if last_id != "0-0" else "-", count=count)
    out = []
    for event_id, fields in rows:
        eid = event_id.decode() if isinstance(event_id, bytes) else event_id
        raw = fields.get("event") if "event" in fields else fields.get(b"event")
        out.append((eid, json.loads(raw)))
    return out
