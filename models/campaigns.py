"""Outbound campaign entities (spec 8.1): campaigns, their contact lists, dial attempts (runs) and
per-contact results.

The dialer is crash-safe through the rows: a worker claims a due contact (``state`` pending ->
in_progress with ``claim_token``/``claimed_by``/``claimed_at``), records a ``campaign_runs`` row
with a fresh ``originate_command_id`` *before* queuing the originate command, and the command id's
uniqueness makes a replayed command harmless. ``campaign_results`` holds one final row per contact.
"""
from __future__ import annotations

import enum
import uuid

import peewee as pw

from models.agents import Agent, AgentVersion
from models.base import JsonField, MoneyField, TimestampField, utcnow
from models.calls import Call
from models.saas import ProjectScoped, User
from models.telephony import SipConnection


class CampaignPurpose(str, enum.Enum):
    SERVICE = "service"
    REMINDER = "reminder"
    SURVEY = "survey"
    DEBT_COLLECTION = "debt_collection"
    ADVERTISING = "advertising"  # needs recorded consent (models.messaging.Consent)


class CampaignStatus(str, enum.Enum):
    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"        # pause_reason says why (manual, budget limit, schedule, trunk down)
    FINISHED = "finished"    # every contact done, failed or excluded
    CANCELLED = "cancelled"


class CampaignContactState(str, enum.Enum):
    PENDING = "pending"          # waiting for next_attempt_at (NULL: as soon as possible)
    IN_PROGRESS = "in_progress"  # claimed by a dialer worker / call running
    DONE = "done"                # reached with a final outcome
    FAILED = "failed"            # attempts exhausted
    EXCLUDED = "excluded"        # DNC, no consent, invalid number, duplicate: exclusion_reason


class CampaignRunState(str, enum.Enum):
    CLAIMED = "claimed"          # recorded, originate command not queued yet
    ORIGINATING = "originating"  # originate command queued / dialling
    IN_CALL = "in_call"
    ENDED = "ended"              # outcome set
    FAILED = "failed"            # could not originate (error_code)
    CANCELLED = "cancelled"      # campaign paused/cancelled before dialling


class Campaign(ProjectScoped):
    name = pw.CharField(max_length=200)
    description = pw.TextField(default="")
    purpose = pw.CharField(max_length=20, default=CampaignPurpose.SERVICE.value)
    agent = pw.ForeignKeyField(Agent, backref="campaigns", index=True)  # NO ACTION: protect
    agent_version = pw.ForeignKeyField(AgentVersion, null=True, on_delete="SET NULL",
                                       backref="campaigns", index=True)  # None: agent's published
    sip_connection = pw.ForeignKeyField(SipConnection, null=True, on_delete="SET NULL",
                                        backref="campaigns", index=True)
    caller_id = pw.CharField(max_length=32, null=True)  # None: the trunk's caller id
    timezone = pw.CharField(max_length=64, null=True)  # None: the project's timezone
    schedule_json = JsonField()  # calling windows per weekday, holidays
    limits_json = JsonField()  # max concurrent, calls/min, max attempts, retry delays, budget
    status = pw.CharField(max_length=20, default=CampaignStatus.DRAFT.value)
    pause_reason = pw.CharField(max_length=64, null=True)  # manual | BUDGET_LIMIT_REACHED | ...
    stats_json = JsonField()  # cached counters for the list view; campaign_contacts is the truth
    created_by = pw.ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    started_at = TimestampField(null=True)
    finished_at = TimestampField(null=True)

    class Meta:
        table_name = "campaigns"
        indexes = (
            (("project", "created_at"), False),
            (("project", "status"), False),
        )


class CampaignContact(ProjectScoped):
    campaign = pw.ForeignKeyField(Campaign, on_delete="CASCADE", backref="contacts", index=False)
    phone_e164 = pw.CharField(max_length=20)
    name = pw.CharField(max_length=200, default="")
    timezone = pw.CharField(max_length=64, null=True)  # None: the campaign's timezone
    variables_json = JsonField()  # uploaded columns, available to the agent
    source_row = pw.IntegerField(null=True)  # row of the uploaded file
    state = pw.CharField(max_length=20, default=CampaignContactState.PENDING.value)
    exclusion_reason = pw.CharField(max_length=64, null=True)  # dnc | no_consent | invalid_number
    attempts = pw.IntegerField(default=0)
    last_attempt_at = TimestampField(null=True)
    next_attempt_at = TimestampField(null=True)
    last_outcome = pw.CharField(max_length=20, null=True)  # CallOutcome of the last attempt
    claimed_by = pw.CharField(max_length=100, null=True)  # worker id
    claimed_at = TimestampField(null=True)
    claim_token = pw.UUIDField(null=True)

    class Meta:
        table_name = "campaign_contacts"
        indexes = (
            (("campaign", "phone_e164"), True),
            (("campaign", "state", "next_attempt_at"), False),
        )


class CampaignRun(ProjectScoped):
    """One dial attempt of one contact."""

    campaign = pw.ForeignKeyField(Campaign, on_delete="CASCADE", backref="runs", index=False)
    contact = pw.ForeignKeyField(CampaignContact, on_delete="CASCADE", backref="runs", index=False)
    attempt_no = pw.IntegerField()
    call = pw.ForeignKeyField(Call, null=True, on_delete="SET NULL", backref="campaign_runs",
                              index=True)
    state = pw.CharField(max_length=20, default=CampaignRunState.CLAIMED.value)
    claimed_by = pw.CharField(max_length=100, null=True)
    claimed_at = TimestampField(default=utcnow)
    originate_command_id = pw.UUIDField(unique=True, default=uuid.uuid4)
    started_at = TimestampField(null=True)
    ended_at = TimestampField(null=True)
    outcome = pw.CharField(max_length=20, null=True)  # CallOutcome
    error_code = pw.CharField(max_length=64, null=True)

    class Meta:
        table_name = "campaign_runs"
        indexes = (
            (("contact", "attempt_no"), True),
            (("campaign", "state"), False),
            (("campaign", "created_at"), False),
        )


class CampaignResult(ProjectScoped):
    """Final result of one contact (one row per contact)."""

    campaign = pw.ForeignKeyField(Campaign, on_delete="CASCADE", backref="results", index=False)
    contact = pw.ForeignKeyField(CampaignContact, on_delete="CASCADE", backref="results",
                                 index=True)
    call = pw.ForeignKeyField(Call, null=True, on_delete="SET NULL", backref="+", index=True)
    outcome = pw.CharField(max_length=32)  # CallOutcome or a purpose-specific result
    conversion = pw.BooleanField(default=False)
    attempts = pw.IntegerField(default=0)
    extracted_json = JsonField()
    cost_total = MoneyField()
    currency = pw.CharField(max_length=3, default="RUB")
    completed_at = TimestampField(default=utcnow)

    class Meta:
        table_name = "campaign_results"
        indexes = (
            (("campaign", "contact"), True),
            (("campaign", "outcome"), False),
        )


__all__ = ["CampaignPurpose", "CampaignStatus", "CampaignContactState", "CampaignRunState",
           "Campaign", "CampaignContact", "CampaignRun", "CampaignResult"]
