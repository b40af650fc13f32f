"""Wire frames of the realtime gateway, built once per event and shared by every subscriber.

A server-to-client WebSocket frame is never masked, so the bytes of one event's text frame are the
same for all clients: the gateway encodes each event once (JSON, WebSocket framing, the SSE form)
and subscribers only concatenate ready bytes. Pure functions, no I/O.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

from core.events.bus import parse_id
from core.events.human import with_human_status
from core.events.schema import EventType, make_event

PING = b"\x89\x00"            # WebSocket ping, empty payload (browsers answer it themselves)
SSE_HEARTBEAT = b": ping\n\n"  # an SSE comment: keeps proxies and the connection alive
SSE_PREAMBLE = b"retry: 2000\n\n"


@dataclass(frozen=True)
class Frame:
    id: str                    # Redis stream id, the client's resume point
    key: tuple[int, int]       # id as a comparable pair
    text: str                  # the event JSON (spec 10.2 plus "id")
    ws: bytes                  # one WebSocket text frame
    sse: bytes                 # one Server-Sent Events message


def ws_text_frame(payload: bytes) -> bytes:
    """An unmasked, unfragmented WebSocket text frame (RFC 6455 5.2)."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x81, n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, n)
    else:
        header = struct.pack("!BBQ", 0x81, 127, n)
    return header + payload


def build_frame(event_id: str, event: dict[str, Any]) -> Frame:
    """The frame of one stored event: spec 10.2 fields, Russian human_status ensured, plus ``id``."""
    event = with_human_status(event)
    body = {"id": event_id, "type": event.get("type"), "ts": event.get("ts"),
            "project_id": event.get("project_id"), "entity": event.get("entity"), "payload": event["payload"]}
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    raw = text.encode("utf-8")
    return Frame(id=event_id, key=parse_id(event_id), text=text, ws=ws_text_frame(raw),
                 sse=b"id: " + event_id.encode() + b"\ndata: " + raw + b"\n\n")


def reset_frame(project_id: str, resume_id: str, reason: str) -> Frame:
    """The ``stream.reset`` notice: reload state over REST, then continue from ``resume_id``."""
    event = make_event(EventType.STREAM_RESET, project_id, "stream", project_id, {"reason": reason})
    return build_frame(resume_id, event)
