"""Database handle and the base model every entity derives from.

Conventions (all entities): UUID primary keys generated in Python, UTC ``timestamptz`` timestamps,
money as ``numeric(14,4)`` Decimal, JSONB for ``*_json`` fields, secrets only in ``*_encrypted``
fields (ciphertext from ``core.security.crypto``). Tables hold no business logic.
"""
from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any, Iterable
from urllib.parse import urlparse

import peewee as pw
from playhouse.postgres_ext import BinaryJSONField, DateTimeTZField, PostgresqlExtDatabase

database = pw.DatabaseProxy()


def utcnow() -> dt.datetime:
    """Aware UTC now; every stored timestamp goes through here."""
    return dt.datetime.now(dt.timezone.utc)


def make_database(url: str, pooled: bool = False, max_connections: int = 32) -> PostgresqlExtDatabase:
    """Open a PostgreSQL handle from a ``postgresql://user:pw@host:port/db`` URL.

    ``pooled``: one connection per greenlet/thread from a bounded pool (gevent processes).
    """
    parsed = urlparse(url)
    if parsed.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"unsupported database URL scheme: {parsed.scheme!r}")
    cls = PostgresqlExtDatabase
    extra: dict[str, Any] = {}
    if pooled:
        from playhouse.postgres_ext import PooledPostgresqlExtDatabase
        cls = PooledPostgresqlExtDatabase
        extra = {"max_connections": max_connections, "stale_timeout": 300, "timeout": 30}
    return cls(
        (parsed.path or "/voiceai").lstrip("/"),
        user=parsed.username or "postgres",
        password=parsed.password,
        host=parsed.hostname or "127.0.0.1",
        port=parsed.port or 5432,
        register_hstore=False,
        **extra,
    )


def bind_database(url: str, pooled: bool = False) -> PostgresqlExtDatabase:
    """Bind the global proxy to a database URL and return the handle.

    Also imports every model module, so foreign keys declared by class name (``LateForeignKey``,
    e.g. ``calls.campaign``) are resolved in every process, not only where campaigns were imported.
    """
    db = make_database(url, pooled=pooled)
    database.initialize(db)
    from models import all_models
    all_models()
    return db


class TimestampField(DateTimeTZField):
    """timestamptz that always hands back aware UTC datetimes."""

    def python_value(self, value: Any) -> Any:
        value = super().python_value(value)
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=dt.timezone.utc)
            else:
                value = value.astimezone(dt.timezone.utc)
        return value


def MoneyField(**kwargs: Any) -> pw.DecimalField:  # noqa: N802 - reads like a field class
    """Money amounts: exact decimal, 4 places (per-second tariffs need sub-kopeck precision)."""
    kwargs.setdefault("default", Decimal("0"))
    return pw.DecimalField(max_digits=14, decimal_places=4, auto_round=True, **kwargs)


def JsonField(**kwargs: Any) -> BinaryJSONField:  # noqa: N802
    """JSONB column; defaults to an empty object unless told otherwise."""
    kwargs.setdefault("default", dict)
    return BinaryJSONField(**kwargs)


class BaseModel(pw.Model):
    """UUID key and creation/update timestamps for every table."""

    id = pw.UUIDField(primary_key=True, default=uuid.uuid4)
    created_at = TimestampField(default=utcnow, index=True)
    updated_at = TimestampField(default=utcnow)

    class Meta:
        database = database
        legacy_table_names = False

    def save(self, *args: Any, **kwargs: Any) -> int:
        self.updated_at = utcnow()
        return super().save(*args, **kwargs)

    def to_dict(self, exclude: Iterable[str] = ()) -> dict[str, Any]:
        """Plain dict of column values; ``*_encrypted`` and ``*_hash`` columns are never included."""
        out: dict[str, Any] = {}
        for name, f in self._meta.fields.items():
            if name in exclude or name.endswith("_encrypted") or name.endswith("_hash"):
                continue
            key = f.column_name if isinstance(f, pw.ForeignKeyField) else name
            out[key] = self.__data__.get(f.name)
        return out
