"""Versioned schema migrations.

Migrations are files in ``models/migrations/`` named ``NNNN_description.sql`` (plain SQL, applied
in one transaction each) and applied in order; ``schema_migrations`` records what ran. A
PostgreSQL advisory lock makes concurrent runs (two processes starting at once) safe, and applied
versions are skipped, so running ``voiceai db migrate`` twice is harmless.

``model_ddl()`` prints what the peewee models would create; a developer writes the next migration
from its difference to the current head, and tests/test_migrations.py fails when head and models
diverge.
"""
from __future__ import annotations

import re
from pathlib import Path

import peewee as pw

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_LOCK_ID = 0x566F6963  # "Voic"
_NAME_RE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def available() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(MIGRATIONS_DIR.iterdir()):
        m = _NAME_RE.match(path.name)
        if m:
            out.append((path.stem, path))
    versions = [v.split("_", 1)[0] for v, _ in out]
    if len(versions) != len(set(versions)):
        raise RuntimeError("two migrations share a number in models/migrations")
    return out


def applied(db: pw.Database) -> set[str]:
    db.execute_sql("CREATE TABLE IF NOT EXISTS schema_migrations ("
                   "version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
    return {row[0] for row in db.execute_sql("SELECT version FROM schema_migrations").fetchall()}


def pending(db: pw.Database) -> list[str]:
    done = applied(db)
    return [v for v, _ in available() if v not in done]


def migrate(db: pw.Database, log=print) -> list[str]:
    """Apply every pending migration; returns the versions applied now."""
    ran: list[str] = []
    with db.connection_context():
        db.execute_sql("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            done = applied(db)
            for version, path in available():
                if version in done:
                    continue
                sql = path.read_text(encoding="utf-8")
                with db.atomic():
                    db.execute_sql(sql)
                    db.execute_sql("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                log(f"applied migration {version}")
                ran.append(version)
        finally:
            db.execute_sql("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    return ran


def model_ddl(models: list[type[pw.Model]]) -> str:
    """CREATE TABLE / INDEX statements for the models, in dependency order."""
    statements: list[str] = []
    deferred: list[str] = []
    for model in pw.sort_models(models):
        for f in model._meta.sorted_fields:
            if isinstance(f, pw.ForeignKeyField) and f.deferred:
                fsql, fparams = model._schema._create_foreign_key(f).query()
                assert not fparams
                deferred.append(fsql + ";")
        ctx = model._schema._create_table(safe=False)
        sql, params = ctx.query()
        assert not params
        statements.append(sql + ";")
        for index in model._schema._create_indexes(safe=False):
            isql, iparams = index.query()
            assert not iparams
            statements.append(isql + ";")
    return "\n".join(statements + deferred) + "\n"
