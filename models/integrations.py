"""External integrations of a project (spec 1.2, 9.2 ``/integrations``): Bitrix24, amoCRM, Google
Calendar and the built-in CRM, each one row the tool service talks through.

Credentials (OAuth tokens, webhook secrets) live only in ``credentials_encrypted`` (ciphertext from
``core.security.crypto``); ``settings_json`` holds the non-secret part (portal domain, pipeline ids,
calendar id, field mapping). The "Проверить" button and the health job update ``status`` and the
``last_*`` columns; the per-request log is ``tool_invocations`` (models.calls) with this row's FK.

Imports only models.saas: agents (agent_tools) and calls (tool_invocations) point here.
"""
from __future__ import annotations

import enum

import peewee as pw

from models.base import JsonField, TimestampField
from models.saas import ProjectScoped, User


class IntegrationProvider(str, enum.Enum):
    BITRIX24 = "bitrix24"
    AMOCRM = "amocrm"
    GOOGLE_CALENDAR = "google_calendar"
    BUILTIN = "builtin"  # the platform's own CRM (models.crm)


class IntegrationStatus(str, enum.Enum):
    NEW = "new"            # saved, never checked
    UP = "up"              # last check or call succeeded (event integration.up)
    DOWN = "down"          # last check failed (event integration.down); see last_error_code
    DISABLED = "disabled"  # switched off by a user; the tool service does not call it


class Integration(ProjectScoped):
    provider = pw.CharField(max_length=32)  # IntegrationProvider
    name = pw.CharField(max_length=200)
    credentials_encrypted = pw.TextField(null=True)
    settings_json = JsonField()
    status = pw.CharField(max_length=20, default=IntegrationStatus.NEW.value)
    last_check_at = TimestampField(null=True)
    last_ok_at = TimestampField(null=True)
    last_error = pw.TextField(null=True)
    last_error_code = pw.CharField(max_length=64, null=True)  # e.g. INTEGRATION_AUTH_FAILED
    token_expires_at = TimestampField(null=True)  # OAuth access token expiry, for the refresh job
    connected_by = pw.ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")

    class Meta:
        table_name = "integrations"
        indexes = (
            (("project", "name"), True),
            (("project", "provider"), False),
        )


__all__ = ["IntegrationProvider", "IntegrationStatus", "Integration"]
