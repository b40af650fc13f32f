"""Keyset (cursor) pagination: stable under inserts and fast on large tables."""
from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from typing import Any, Callable

import peewee as pw
from flask import request

from core.errors import ValidationFailed

DEFAULT_LIMIT = 50
MAX_LIMIT = 200

PAGE_QUERY = {
    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
    "cursor": {"type": "string"},
}


def _encode(ts: dt.datetime, row_id: uuid.UUID) -> str:
    raw = json.dumps([ts.isoformat(), str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> tuple[dt.datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts, row_id = json.loads(raw)
        return dt.datetime.fromisoformat(ts), uuid.UUID(row_id)
    except (ValueError, TypeError) as exc:
        raise ValidationFailed({"cursor": "Некорректный курсор: возьмите next_cursor из прошлого ответа"}) from exc


def page_limit() -> int:
    raw = request.args.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed({"limit": "Ожидается целое число"})
    if not 1 <= value <= MAX_LIMIT:
        raise ValidationFailed({"limit": f"От 1 до {MAX_LIMIT}"})
    return value


def paginate(query: pw.ModelSelect, ts_field: pw.Field, id_field: pw.Field,
             serialize: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """Newest first by (ts, id); returns ``{"items": [...], "next_cursor": str|None}``."""
    limit = page_limit()
    cursor = request.args.get("cursor")
    if cursor:
        ts, row_id = _decode(cursor)
        query = query.where((ts_field < ts) | ((ts_field == ts) & (id_field < row_id)))
    rows = list(query.order_by(ts_field.desc(), id_field.desc()).limit(limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if more and rows:
        last = rows[-1]
        next_cursor = _encode(getattr(last, ts_field.name), getattr(last, id_field.name))
    return {"items": [serialize(r) for r in rows], "next_cursor": next_cursor}
