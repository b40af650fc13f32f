"""A fresh database migrated to head matches the models exactly (columns, types, indexes, FKs)."""
from __future__ import annotations

import psycopg2
import pytest
from urllib.parse import urlparse

from models import all_models
from models.migrate import migrate, model_ddl, pending


def _introspect(conn) -> dict:
    cur = conn.cursor()
    cur.execute("""SELECT table_name, column_name, data_type, is_nullable, character_maximum_length,
                          numeric_precision, numeric_scale
                   FROM information_schema.columns WHERE table_schema='public'
                   AND table_name <> 'schema_migrations' ORDER BY 1, 2""")
    columns = cur.fetchall()
    cur.execute("""SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname='public'
                   AND tablename <> 'schema_migrations' ORDER BY 1, 2""")
    indexes = cur.fetchall()
    cur.execute("""SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
                   WHERE connamespace = 'public'::regnamespace AND conrelid::regclass::text <> 'schema_migrations'
                   ORDER BY 1, 2""")
    constraints = cur.fetchall()
    return {"columns": columns, "indexes": indexes, "constraints": constraints}


@pytest.fixture()
def scratch_db(test_settings):
    parsed = urlparse(test_settings.database_url)
    kw = dict(host=parsed.hostname, port=parsed.port or 5432, user=parsed.username or "postgres",
              password=parsed.password)
    admin = psycopg2.connect(dbname="postgres", **kw)
    admin.autocommit = True
    name = parsed.path.lstrip("/") + "_models"
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cur.execute(f'CREATE DATABASE "{name}"')
    conn = psycopg2.connect(dbname=name, **kw)
    yield conn
    conn.close()
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
    admin.close()


def test_head_matches_models(migrated_db, scratch_db):
    assert pending(migrated_db) == []
    with scratch_db.cursor() as cur:
        cur.execute(model_ddl(all_models()))
    scratch_db.commit()
    from_models = _introspect(scratch_db)
    from_migrations = _introspect(migrated_db.connection())
    for part in ("columns", "indexes", "constraints"):
        only_models = sorted(set(from_models[part]) - set(from_migrations[part]))
        only_migrations = sorted(set(from_migrations[part]) - set(from_models[part]))
        assert not only_models and not only_migrations, (
            f"{part} differ between models and migrations head; write a new migration in "
            f"models/migrations/. Only in models: {only_models[:5]} Only in migrations: {only_migrations[:5]}")
    tables = {c[0] for c in from_migrations["columns"]}
    for table in ("orgs", "projects", "users", "roles", "user_roles", "audit_logs", "api_keys",
                  "sip_connections", "phone_numbers", "routing_rules", "operator_routes", "agents",
                  "agent_versions", "agent_policies", "agent_settings", "agent_tools", "calls", "call_events",
                  "transcripts", "tool_invocations", "call_issues", "handoff_packets", "campaigns",
                  "campaign_contacts", "campaign_runs", "campaign_results", "message_channels",
                  "message_providers", "message_templates", "messages", "message_deliveries",
                  "message_errors", "dnc_list", "consents", "pricing_profiles", "usage_records",
                  "cost_breakdowns", "budgets_limits", "invoices", "crm_contacts", "crm_companies",
                  "crm_deals", "crm_tasks", "crm_notes", "crm_call_links"):
        assert table in tables, f"spec 8.1 entity {table} has no table"


def test_spec_minimum_fields(migrated_db):
    cols = {(t, c): (dt, n) for t, c, dt, n, *_ in _introspect(migrated_db.connection())["columns"]}
    required = {
        "projects": ["id", "org_id", "name", "timezone", "default_language", "created_at"],
        "sip_connections": ["id", "project_id", "name", "provider_host", "login", "password_encrypted", "status",
                            "last_check_at"],
        "phone_numbers": ["id", "project_id", "e164_number", "sip_connection_id", "agent_id", "schedule_json",
                          "recording_enabled"],
        "agent_versions": ["id", "agent_id", "version", "state", "config_json", "created_at", "published_at"],
        "calls": ["id", "project_id", "direction", "from_number", "to_number", "started_at", "ended_at", "outcome",
                  "agent_version_id", "cost_total"],
        "transcripts": ["id", "call_id", "speaker", "text", "ts_start_ms", "ts_end_ms", "stt_confidence"],
        "tool_invocations": ["id", "call_id", "tool_name", "request_json", "response_json", "status", "duration_ms"],
        "messages": ["id", "project_id", "channel", "to", "template_id", "status", "cost_total", "related_call_id",
                     "created_at"],
        "campaigns": ["id", "project_id", "name", "agent_version_id", "schedule_json", "status", "limits_json",
                      "created_at"],
        "cost_breakdowns": ["id", "project_id", "entity_type", "entity_id", "telephony_cost", "stt_cost", "llm_cost",
                            "tts_cost", "platform_fee", "total_cost"],
    }
    for table, names in required.items():
        for name in names:
            assert (table, name) in cols, f"{table}.{name} missing (spec 8.2)"
    assert cols[("calls", "id")][0] == "uuid"
    assert cols[("calls", "cost_total")][0] == "numeric"
    assert cols[("calls", "started_at")][0] == "timestamp with time zone"
    assert cols[("phone_numbers", "schedule_json")][0] == "jsonb"


def test_migrate_twice_is_noop(migrated_db):
    assert migrate(migrated_db, log=lambda *_: None) == []
