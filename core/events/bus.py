"""Publishing realtime events into per-project Redis streams.

Each project has a stream ``events:<project_id>`` capped at ``MAXLEN`` entries (approximate
trimming), so a client that reconnects with its last event id can be replayed what it missed. The
realtime gateway reads these streams; producers (esl_app, workers, web) only append.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
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


def parse_id(event_id: str) -> tuple[int, int]:
    """A stream id as a comparable (ms, seq) pair; ValueError when it is not ``<ms>-<seq>``."""
    ms, sep, seq = str(event_id).partition("-")
    if not ms.isdigit() or (sep and not seq.isdigit()):
        raise ValueError(f"not a stream id: {event_id!r}")
    return int(ms), int(seq or 0)


@dataclass(frozen=True)
class StreamState:
    """Where a project's stream stands."""
    exists: bool
    last_id: str                    # last generated id ("0-0" when there is no stream)
    first_id: str | None            # oldest kept entry
    max_deleted_id: str | None      # newest deleted id (Redis 7+; 7.0 does not count XTRIM/MAXLEN)
    trimmed: bool                   # entries were ever removed (Redis < 7: assumed)


def stream_state(r: redis.Redis, project_id: Any) -> StreamState:
    """Where the project's stream stands: its newest id and how far trimming has gone."""
    try:
        info = r.xinfo_stream(stream_key(project_id))
    except redis.ResponseError:  # no such key: nothing was ever published (or Redis lost it)
        return StreamState(exists=False, last_id="0-0", first_id=None, max_deleted_id=None, trimmed=False)

    def _s(v: Any) -> str | None:
        return v.decode() if isinstance(v, bytes) else v

    first = info.get("first-entry")
    added = info.get("entries-added")
    return StreamState(exists=True, last_id=_s(info.get("last-generated-id")) or "0-0",
                       first_id=_s(first[0]) if first else None,
                       max_deleted_id=_s(info.get("max-deleted-entry-id")),
                       trimmed=added is None or int(added) > int(info.get("length", 0)))


def resume_gap(last_id: str, state: StreamState) -> bool:
    """True when resuming after ``last_id`` cannot replay everything the client missed.

    Either entries newer than ``last_id`` were trimmed away (the id is older than the retention),
    or the id is ahead of the stream (Redis lost the stream and ids restarted).
    """
    try:
        last = parse_id(last_id)
    except ValueError:
        return True
    if last > parse_id(state.last_id):
        return True
    if state.max_deleted_id is not None and last < parse_id(state.max_deleted_id):
        return True
    # Older than the oldest kept entry after a trim: entries after it may be gone. (When the client's
    # id was exactly the newest trimmed entry this resets needlessly; the client just reloads.)
    return state.trimmed and state.first_id is not None and last < parse_id(state.first_id)
