"""Event format of spec 10.2 and the event types of spec 10.1.

    {"type": "call.state_changed", "ts": "2026-02-17T12:34:56.789Z", "project_id": "uuid",
     "entity": {"type": "call", "id": "uuid"}, "payload": {"human_status": "Агент отвечает", ...}}
"""
from __future__ import annotations

import datetime as dt
from enum import Enum
from typing import Any


class EventType(str, Enum):
    CALL_STARTED = "call.started"
    CALL_STATE_CHANGED = "call.state_changed"
    CALL_ENDED = "call.ended"
    TOOL_STARTED = "tool.started"
    TOOL_SUCCEEDED = "tool.succeeded"
    TOOL_FAILED = "tool.failed"
    MESSAGE_SENT = "message.sent"
    MESSAGE_DELIVERED = "message.delivered"
    MESSAGE_FAILED = "message.failed"
    CAMPAIGN_PROGRESS = "campaign.progress"
    CAMPAIGN_FINISHED = "campaign.finished"
    INTEGRATION_UP = "integration.up"
    INTEGRATION_DOWN = "integration.down"
    BUDGET_THRESHOLD_REACHED = "budget.threshold_reached"
    # Platform additions (same envelope): operator handoff pop-up, telephony command results.
    HANDOFF_REQUESTED = "handoff.requested"
    # Emitted by the realtime gateway itself (never stored): the client's last event id is older
    # than the stream keeps (or the stream was lost), so it must reload its state over REST.
    STREAM_RESET = "stream.reset"


def iso_ms(ts: dt.datetime) -> str:
    """UTC timestamp with milliseconds and a Z suffix, as in the spec example."""
    return ts.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def make_event(event_type: EventType | str, project_id: Any, entity_type: str, entity_id: Any,
               payload: dict[str, Any] | None = None, ts: dt.datetime | None = None) -> dict[str, Any]:
    etype = EventType(event_type)
    return {
        "type": etype.value,
        "ts": iso_ms(ts or dt.datetime.now(dt.timezone.utc)),
        "project_id": str(project_id),
        "entity": {"type": entity_type, "id": str(entity_id)},
        "payload": dict(payload or {}),
    }
