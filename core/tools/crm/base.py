"""The CRM provider interface every CRM (built-in, Bitrix24, amoCRM) implements behind the CRM tools.

The tools (``core.tools.crm.tools``) speak only this interface; ``core.tools.providers.resolve_crm``
picks the implementation for a project. Records carry string ids because external CRMs use their
own (numeric) ids; the built-in CRM's ids are UUIDs as strings.

Expected failures (contact not found, bad input) are raised as ``core.tools.base.ToolError`` with a
catalog code and a Russian message; a provider that cannot reach its service raises ToolError with
``INTEGRATION_TIMEOUT`` / ``INTEGRATION_AUTH_FAILED`` so the escalation policy can react.
"""
from __future__ import annotations

import datetime as dt
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from decimal import Decimal

from core.tools.base import ToolContext


@dataclass(frozen=True)
class ContactRecord:
    id: str
    full_name: str
    phone: str | None
    email: str | None
    created: bool = False  # True when find_or_create made it now


@dataclass(frozen=True)
class DealRecord:
    id: str
    title: str
    amount: str  # decimal as text, exact
    currency: str
    stage: str
    status: str
    contact_id: str | None


@dataclass(frozen=True)
class TaskRecord:
    id: str
    title: str
    kind: str
    status: str
    due_at: dt.datetime | None
    contact_id: str | None
    deal_id: str | None


@dataclass(frozen=True)
class NoteRecord:
    id: str
    contact_id: str | None
    deal_id: str | None


@dataclass(frozen=True)
class CallLinkRecord:
    id: str
    call_id: str
    contact_id: str
    deal_id: str | None
    created: bool


class CrmProvider(ABC):
    """One project's CRM. Instances are cheap and built per invocation by the resolver."""

    name: str = ""                         # IntegrationProvider value: builtin, bitrix24, amocrm
    integration_id: uuid.UUID | None = None  # the integrations row it talks through (None: built-in)

    @abstractmethod
    def find_contact_by_phone(self, phone_e164: str) -> ContactRecord | None:
        """The contact with this E.164 phone, oldest first when there are duplicates."""

    @abstractmethod
    def get_contact(self, contact_id: str) -> ContactRecord:
        """The contact or ToolError NOT_FOUND (also for another project's contact)."""

    @abstractmethod
    def create_contact(self, ctx: ToolContext, phone_e164: str, full_name: str = "",
                       email: str | None = None) -> ContactRecord:
        """A new contact created by the agent."""

    @abstractmethod
    def update_contact(self, ctx: ToolContext, contact_id: str, full_name: str | None = None,
                       email: str | None = None) -> ContactRecord:
        """Fill in what the caller told (only the given fields change)."""

    def find_or_create_contact(self, ctx: ToolContext, phone_e164: str, full_name: str = "",
                               email: str | None = None) -> ContactRecord:
        """The caller's contact by phone; created when missing, empty name/e-mail filled in."""
        found = self.find_contact_by_phone(phone_e164)
        if found is None:
            return self.create_contact(ctx, phone_e164, full_name, email)
        fill_name = full_name if full_name and not found.full_name else None
        fill_email = email if email and not found.email else None
        if fill_name or fill_email:
            return self.update_contact(ctx, found.id, fill_name, fill_email)
        return found

    @abstractmethod
    def create_deal(self, ctx: ToolContext, title: str, contact_id: str | None, amount: Decimal,
                    currency: str = "RUB", stage: str | None = None, comment: str = "") -> DealRecord:
        """A deal (lead, order) tied to the contact."""

    @abstractmethod
    def create_task(self, ctx: ToolContext, title: str, kind: str, description: str = "",
                    due_at: dt.datetime | None = None, contact_id: str | None = None,
                    deal_id: str | None = None) -> TaskRecord:
        """A task for people (call back, follow up)."""

    @abstractmethod
    def add_note(self, ctx: ToolContext, body: str, contact_id: str | None = None,
                 deal_id: str | None = None) -> NoteRecord:
        """A note written by the agent (summary, what the caller asked)."""

    @abstractmethod
    def link_call(self, ctx: ToolContext, call_id: uuid.UUID, contact_id: str,
                  deal_id: str | None = None) -> CallLinkRecord:
        """Attach the call to the contact (and deal); idempotent per (call, contact)."""
