"""Pieces shared by the CRM and calendar tools: the caller's phone, ids, JSON-safe records."""
from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from abc import abstractmethod
from decimal import Decimal
from typing import Any

from core.telephony.e164 import normalize_e164
from core.tools.base import Tool, ToolContext, ToolError

UUID_ARG = {"type": "string", "format": "uuid"}
PHONE_ARG = {"type": "string", "minLength": 5, "maxLength": 32,
             "description": "Телефон в любом виде (+7 999 123-45-67); по умолчанию — номер звонящего"}


def phone_of(ctx: ToolContext, raw: str | None) -> str:
    """The E.164 phone the tool acts on: the one given, else the caller's; ToolError when neither."""
    value = raw or ctx.caller_phone
    if not value:
        raise ToolError("VALIDATION_FAILED", "Не известен номер телефона: спросите его у собеседника",
                        {"field": "phone"})
    try:
        return normalize_e164(value)
    except ValueError as exc:
        raise ToolError("VALIDATION_FAILED", str(exc), {"field": "phone"}) from None


def jsonable(value: Any) -> Any:
    """Records (dataclasses), datetimes, decimals and UUIDs as JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, (uuid.UUID, Decimal)):
        return str(value)
    return value


class ProviderTool(Tool):
    """A tool that acts through the project's provider of one kind (CRM or calendar)."""

    @abstractmethod
    def resolve(self, ctx: ToolContext) -> Any:
        """The provider for ctx.project_id (core.tools.providers)."""

    @abstractmethod
    def act(self, provider: Any, ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
        """Do the action through ``provider``."""

    def run(self, ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
        return jsonable(self.act(self.resolve(ctx), ctx, args))

    def provider_info(self, ctx: ToolContext) -> tuple[str, uuid.UUID | None]:
        """(provider name, integration id) recorded on the invocation row."""
        provider = self.resolve(ctx)
        return provider.name, provider.integration_id
