"""Billing entities (spec 8.1): pricing profiles, metered usage, per-entity cost breakdowns,
budget limits and invoices.

The cost engine (``core.billing``) writes one ``usage_records`` row per metered component with an
idempotency key, so a replayed meter never bills twice, and keeps ``cost_breakdowns`` (one row per
call/message/...) in step. Money is ``numeric(14,4)``; unit prices get 8 decimal places because
per-token and per-character prices are fractions of a kopeck.

Pricing profiles and invoices are not project rows: a profile is platform-wide (``org`` NULL), per
org, or per project; an invoice belongs to the org (``project`` optional).
"""
from __future__ import annotations

import enum
from decimal import Decimal

import peewee as pw

from models.base import BaseModel, JsonField, MoneyField, TimestampField, utcnow
from models.campaigns import Campaign
from models.saas import Org, Project, ProjectScoped, User


class UsageComponent(str, enum.Enum):
    TELEPHONY = "telephony"  # per minute (billsec)
    STT = "stt"              # per minute of recognised audio
    LLM = "llm"              # per 1k tokens
    TTS = "tts"              # per 1k characters
    MESSAGE = "message"      # per message, by channel
    PLATFORM = "platform"    # platform fee


class BillableEntity(str, enum.Enum):
    CALL = "call"
    MESSAGE = "message"
    TOOL_INVOCATION = "tool_invocation"
    PROJECT = "project"  # period fees not tied to one call or message


class BudgetScope(str, enum.Enum):
    PROJECT = "project"
    CAMPAIGN = "campaign"


class BudgetPeriod(str, enum.Enum):
    DAY = "day"
    MONTH = "month"


class BudgetAction(str, enum.Enum):
    PAUSE = "pause"  # pause campaigns / refuse outbound (BUDGET_LIMIT_REACHED) and alert
    ALERT = "alert"  # only budget.threshold_reached


class InvoiceStatus(str, enum.Enum):
    DRAFT = "draft"
    ISSUED = "issued"
    PAID = "paid"
    VOID = "void"


class PricingProfile(BaseModel):
    """Rates used to price usage. ``rates_json`` example::

        {"telephony_per_min": "1.20", "stt_per_min": "0.50", "llm_per_1k_tokens": "0.20",
         "tts_per_1k_chars": "0.30", "message": {"sms": "3.50", "whatsapp": "2.00", ...}}
    """

    org = pw.ForeignKeyField(Org, null=True, on_delete="CASCADE", backref="pricing_profiles",
                             index=True)  # None: platform-wide
    project = pw.ForeignKeyField(Project, null=True, on_delete="CASCADE",
                                 backref="pricing_profiles", index=True)  # project override
    name = pw.CharField(max_length=200)
    currency = pw.CharField(max_length=3, default="RUB")
    rates_json = JsonField()  # decimal strings, never floats
    platform_fee = MoneyField()  # per billed minute of a call
    is_default = pw.BooleanField(default=False)  # default of its scope (platform or org)
    valid_from = TimestampField(null=True)
    valid_to = TimestampField(null=True)
    archived_at = TimestampField(null=True)

    class Meta:
        table_name = "pricing_profiles"


class UsageRecord(ProjectScoped):
    entity_type = pw.CharField(max_length=32)  # BillableEntity
    entity_id = pw.UUIDField()
    campaign = pw.ForeignKeyField(Campaign, null=True, on_delete="SET NULL",
                                  backref="usage_records", index=False)  # for campaign budgets
    component = pw.CharField(max_length=16)  # UsageComponent
    engine = pw.CharField(max_length=64, null=True)  # trunk, STT/LLM/TTS engine or provider
    quantity = pw.DecimalField(max_digits=18, decimal_places=6, auto_round=True,
                               default=Decimal("0"))
    unit = pw.CharField(max_length=16)  # minute | second | 1k_tokens | 1k_chars | message
    unit_cost = pw.DecimalField(max_digits=18, decimal_places=8, auto_round=True,
                                default=Decimal("0"))
    cost = MoneyField()
    currency = pw.CharField(max_length=3, default="RUB")
    pricing_profile = pw.ForeignKeyField(PricingProfile, null=True, on_delete="SET NULL",
                                         backref="+", index=True)
    idempotency_key = pw.CharField(max_length=200, unique=True)
    occurred_at = TimestampField(default=utcnow)
    details_json = JsonField()  # raw meter values (tokens in/out, chars, seconds)

    class Meta:
        table_name = "usage_records"
        indexes = (
            (("project", "occurred_at"), False),
            (("project", "component", "occurred_at"), False),
            (("entity_type", "entity_id"), False),
            (("campaign", "occurred_at"), False),
        )


class CostBreakdown(ProjectScoped):
    entity_type = pw.CharField(max_length=32)  # BillableEntity
    entity_id = pw.UUIDField()
    telephony_cost = MoneyField()
    stt_cost = MoneyField()
    llm_cost = MoneyField()
    tts_cost = MoneyField()
    platform_fee = MoneyField()
    total_cost = MoneyField()
    currency = pw.CharField(max_length=3, default="RUB")

    class Meta:
        table_name = "cost_breakdowns"
        indexes = (
            (("entity_type", "entity_id"), True),
            (("project", "created_at"), False),
        )


class BudgetLimit(ProjectScoped):
    scope = pw.CharField(max_length=16, default=BudgetScope.PROJECT.value)
    campaign = pw.ForeignKeyField(Campaign, null=True, on_delete="CASCADE",
                                  backref="budget_limits", index=True)  # scope "campaign"
    period = pw.CharField(max_length=10, default=BudgetPeriod.MONTH.value)
    limit_amount = MoneyField()
    currency = pw.CharField(max_length=3, default="RUB")
    alert_thresholds_json = JsonField(default=list)  # fractions of the limit: [0.5, 0.8, 1.0]
    action = pw.CharField(max_length=10, default=BudgetAction.ALERT.value)
    enabled = pw.BooleanField(default=True)
    last_alert_threshold = pw.FloatField(null=True)  # highest threshold alerted this period
    last_alert_period_start = TimestampField(null=True)  # period that threshold belongs to
    triggered_at = TimestampField(null=True)  # when the limit itself was last reached
    created_by = pw.ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")

    class Meta:
        table_name = "budgets_limits"
        indexes = ((("project", "scope"), False),)


class Invoice(BaseModel):
    org = pw.ForeignKeyField(Org, on_delete="CASCADE", backref="invoices", index=True)
    project = pw.ForeignKeyField(Project, null=True, on_delete="SET NULL", backref="invoices",
                                 index=True)
    number = pw.CharField(max_length=50, null=True, unique=True)  # set when issued
    period_start = pw.DateField()
    period_end = pw.DateField()  # inclusive
    total = MoneyField()
    currency = pw.CharField(max_length=3, default="RUB")
    status = pw.CharField(max_length=10, default=InvoiceStatus.DRAFT.value)
    lines_json = JsonField(default=list)  # [{"component": ..., "quantity": ..., "amount": ...}]
    document_path = pw.CharField(max_length=500, null=True)  # storage key of the rendered file
    issued_at = TimestampField(null=True)
    paid_at = TimestampField(null=True)

    class Meta:
        table_name = "invoices"
        indexes = ((("org", "period_start"), False),)


__all__ = ["UsageComponent", "BillableEntity", "BudgetScope", "BudgetPeriod", "BudgetAction",
           "InvoiceStatus", "PricingProfile", "UsageRecord", "CostBreakdown", "BudgetLimit",
           "Invoice"]
