"""Call entities (spec 8.1): calls, their event timeline, transcript turns, tool invocations,
reported issues and operator handoff packets. Together they are the call Inbox card: outcome,
transcript, actions, errors and cost (spec 13.3).

Every row carries ``project`` (ProjectScoped) even when it hangs off a call, so every query can be
scoped without a join. ``calls.trace_id`` is the call's trace id (spec 14.2); child rows repeat the
trace id of the step that wrote them.

``calls.campaign`` and ``calls.campaign_contact`` point forward to models.campaigns and are
declared with ``models.telephony.LateForeignKey`` (ordinary constraint once models.campaigns is
imported).
"""
from __future__ import annotations

import enum

import peewee as pw

from models.agents import Agent, AgentVersion
from models.base import JsonField, MoneyField, TimestampField, utcnow
from models.integrations import Integration
from models.saas import ProjectScoped, User
from models.telephony import LateForeignKey, OperatorRoute, PhoneNumber, SipConnection


class CallDirection(str, enum.Enum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class CallState(str, enum.Enum):
    """Where the call is now (live monitor); the dialog's finer states live in call_events."""

    QUEUED = "queued"              # outbound: originate command queued, not yet dialling
    RINGING = "ringing"
    IN_PROGRESS = "in_progress"    # answered, agent dialog running
    TRANSFERRING = "transferring"  # handing over to an operator
    WITH_OPERATOR = "with_operator"
    ENDED = "ended"


class CallOutcome(str, enum.Enum):
    """How the call ended; set when ``state`` becomes ended (``answered``: not classified yet)."""

    ANSWERED = "answered"
    COMPLETED = "completed"          # dialog finished normally
    TRANSFERRED = "transferred"      # handed over to an operator
    CALLBACK = "callback"            # operator unavailable, callback task created
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    REJECTED = "rejected"            # declined by the callee or the provider
    VOICEMAIL = "voicemail"          # answering machine / voicemail detected
    ABANDONED = "abandoned"          # caller hung up before the dialog started
    FAILED = "failed"                # technical failure (trunk, engines)
    CANCELLED = "cancelled"          # outbound call cancelled before dialling
    UNALLOCATED = "unallocated"      # the number does not exist or is malformed
    GATEWAY_DOWN = "gateway_down"    # our SIP connection is not registered / unreachable


class CallParty(str, enum.Enum):
    CALLER = "caller"
    AGENT = "agent"
    OPERATOR = "operator"
    SYSTEM = "system"


class Speaker(str, enum.Enum):
    CALLER = "caller"
    AGENT = "agent"
    OPERATOR = "operator"


class ToolInvocationStatus(str, enum.Enum):
    PENDING = "pending"      # recorded before the call is made
    STARTED = "started"      # event tool.started
    SUCCEEDED = "succeeded"  # event tool.succeeded
    FAILED = "failed"        # event tool.failed; error_code says why (e.g. INTEGRATION_TIMEOUT)
    CANCELLED = "cancelled"  # call ended or barge-in before it ran


class IssueSource(str, enum.Enum):
    SYSTEM = "system"  # raised by the platform during the call
    USER = "user"      # reported from the cabinet (POST /calls/{id}/issue)


class TransferMode(str, enum.Enum):
    BLIND = "blind"
    ATTENDED = "attended"


class HandoffStatus(str, enum.Enum):
    PENDING = "pending"      # built, transfer not started
    DELIVERED = "delivered"  # shown to the operator / whispered, operator ringing
    ACCEPTED = "accepted"    # operator answered
    FAILED = "failed"        # nobody answered; fallback_action of the route applied
    CANCELLED = "cancelled"  # caller hung up during the transfer


class Call(ProjectScoped):
    direction = pw.CharField(max_length=10)  # CallDirection
    from_number = pw.CharField(max_length=64)
    to_number = pw.CharField(max_length=64)
    state = pw.CharField(max_length=20, default=CallState.QUEUED.value)
    human_status = pw.CharField(max_length=200, default="")  # last status shown in the monitor
    started_at = TimestampField(default=utcnow)
    answered_at = TimestampField(null=True)
    ended_at = TimestampField(null=True)
    duration_s = pw.IntegerField(default=0)  # started -> ended
    billsec = pw.IntegerField(default=0)  # answered -> ended (what the trunk bills)
    outcome = pw.CharField(max_length=20, null=True)  # CallOutcome
    ended_by = pw.CharField(max_length=10, null=True)  # CallParty
    hangup_cause = pw.CharField(max_length=64, null=True)  # FreeSWITCH/Q.850 name, NORMAL_CLEARING
    hangup_cause_text = pw.TextField(null=True)  # human-readable explanation
    sip_status = pw.IntegerField(null=True)  # final SIP response code, e.g. 486
    agent = pw.ForeignKeyField(Agent, null=True, on_delete="SET NULL", backref="calls", index=False)
    agent_version = pw.ForeignKeyField(AgentVersion, null=True, on_delete="SET NULL",
                                       backref="calls", index=True)
    phone_number = pw.ForeignKeyField(PhoneNumber, null=True, on_delete="SET NULL", backref="calls",
                                      index=False)
    sip_connection = pw.ForeignKeyField(SipConnection, null=True, on_delete="SET NULL",
                                        backref="calls", index=True)
    campaign = LateForeignKey("Campaign", null=True, on_delete="SET NULL", backref="calls",
                              column_name="campaign_id", index=False)
    campaign_contact = LateForeignKey("CampaignContact", null=True, on_delete="SET NULL",
                                      backref="calls", column_name="campaign_contact_id",
                                      index=True)
    # user who placed a manual outbound call
    initiated_by = pw.ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    is_test = pw.BooleanField(default=False)  # wizard / studio test call
    fs_uuid = pw.CharField(max_length=64, null=True, unique=True)  # FreeSWITCH channel uuid
    fs_node = pw.CharField(max_length=100, null=True)  # FreeSWITCH node / esl_app that owns it
    sip_call_id = pw.CharField(max_length=255, null=True, index=True)
    trace_id = pw.CharField(max_length=64, index=True)
    language = pw.CharField(max_length=16, null=True)
    recording_path = pw.CharField(max_length=500, null=True)  # storage key
    recording_size = pw.BigIntegerField(null=True)  # bytes
    recording_deleted_at = TimestampField(null=True)  # retention purge
    summary = pw.TextField(null=True)
    extracted_json = JsonField()  # fields the agent collected
    variables_json = JsonField()  # input variables (campaign contact, channel variables)
    cost_total = MoneyField()
    currency = pw.CharField(max_length=3, default="RUB")
    has_errors = pw.BooleanField(default=False)
    metadata_json = JsonField()

    class Meta:
        table_name = "calls"
        indexes = (
            # Inbox keyset pagination orders by (started_at, id): see docs/calls_query_plan.md.
            (("project", "started_at", "id"), False),
            (("project", "from_number", "started_at"), False),
            (("project", "to_number", "started_at"), False),
            (("project", "outcome", "started_at"), False),
            (("project", "direction", "started_at"), False),
            (("project", "state"), False),
            (("project", "has_errors", "started_at"), False),
            (("agent", "started_at"), False),
            (("phone_number", "started_at"), False),
            (("campaign", "started_at"), False),
        )


# Live Monitor: the few calls still going, without scanning the ended ones.
Call.add_index(Call.index(Call.project, Call.started_at, where=Call.ended_at.is_null(),
                          name="calls_live_project_id_started_at"))


class CallEvent(ProjectScoped):
    call = pw.ForeignKeyField(Call, on_delete="CASCADE", backref="events", index=False)
    seq = pw.IntegerField(default=0)  # order within the call when timestamps tie
    ts = TimestampField(default=utcnow)
    type = pw.CharField(max_length=64)  # call.started, call.state_changed, tool.failed, ...
    human_status = pw.CharField(max_length=200, default="")
    payload_json = JsonField()
    trace_id = pw.CharField(max_length=64, null=True)

    class Meta:
        table_name = "call_events"
        indexes = ((("call", "ts"), False),)


class Transcript(ProjectScoped):
    """One utterance (turn) of the call."""

    call = pw.ForeignKeyField(Call, on_delete="CASCADE", backref="transcripts", index=False)
    speaker = pw.CharField(max_length=10)  # Speaker
    text = pw.TextField()
    heard_text = pw.TextField(null=True)  # agent turns cut by barge-in: the part actually played
    interrupted = pw.BooleanField(default=False)
    ts_start_ms = pw.IntegerField()  # from call start
    ts_end_ms = pw.IntegerField(null=True)
    stt_confidence = pw.FloatField(null=True)
    is_final = pw.BooleanField(default=True)
    language = pw.CharField(max_length=16, null=True)
    engine = pw.CharField(max_length=64, null=True)  # STT or LLM/TTS engine that produced it

    class Meta:
        table_name = "transcripts"
        indexes = ((("call", "ts_start_ms"), False),)


# Inbox transcript search: web.api.calls.transcript_match uses exactly this expression.
Transcript.add_index(Transcript.index(pw.fn.to_tsvector(pw.SQL("'russian'"), Transcript.text), using="gin",
                                      name="transcripts_text_fts"))


class ToolInvocation(ProjectScoped):
    call = pw.ForeignKeyField(Call, null=True, on_delete="CASCADE", backref="tool_invocations",
                              index=False)
    integration = pw.ForeignKeyField(Integration, null=True, on_delete="SET NULL",
                                     backref="invocations", index=False)
    tool_name = pw.CharField(max_length=100)
    provider = pw.CharField(max_length=32, null=True)
    request_json = JsonField()  # secrets masked
    response_json = JsonField()
    status = pw.CharField(max_length=20, default=ToolInvocationStatus.PENDING.value)
    attempt = pw.IntegerField(default=1)
    duration_ms = pw.IntegerField(null=True)
    error_code = pw.CharField(max_length=64, null=True)  # catalog code
    error_message = pw.TextField(null=True)
    external_id = pw.CharField(max_length=200, null=True)  # id of what the provider created
    trace_id = pw.CharField(max_length=64, index=True)
    idempotency_key = pw.CharField(max_length=200, null=True, unique=True)
    started_at = TimestampField(null=True)
    finished_at = TimestampField(null=True)

    class Meta:
        table_name = "tool_invocations"
        indexes = (
            (("call", "created_at"), False),
            (("integration", "created_at"), False),
            (("project", "created_at"), False),
        )


class CallIssue(ProjectScoped):
    call = pw.ForeignKeyField(Call, on_delete="CASCADE", backref="issues", index=True)
    code = pw.CharField(max_length=64)  # error catalog code
    source = pw.CharField(max_length=10, default=IssueSource.SYSTEM.value)
    comment = pw.TextField(default="")
    details_json = JsonField()
    trace_id = pw.CharField(max_length=64, null=True)
    reported_by = pw.ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    resolved_at = TimestampField(null=True)
    resolved_by = pw.ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")

    class Meta:
        table_name = "call_issues"
        indexes = (
            (("project", "created_at"), False),
            (("project", "code", "created_at"), False),
        )


class HandoffPacket(ProjectScoped):
    """What the operator gets on escalation: who, why, collected fields, summary, excerpt, links."""

    call = pw.ForeignKeyField(Call, on_delete="CASCADE", backref="handoff_packets", index=True)
    reason = pw.CharField(max_length=100)  # caller_request | low_confidence | policy | tool_failed
    reason_text = pw.TextField(default="")
    caller_json = JsonField()  # number, name, CRM contact
    collected_json = JsonField()
    summary = pw.TextField(default="")
    transcript_excerpt = pw.TextField(default="")
    crm_links_json = JsonField(default=list)
    operator_route = pw.ForeignKeyField(OperatorRoute, null=True, on_delete="SET NULL",
                                        backref="handoff_packets", index=True)
    target = pw.CharField(max_length=500, null=True)  # what was actually dialled
    transfer_mode = pw.CharField(max_length=10, default=TransferMode.BLIND.value)
    status = pw.CharField(max_length=20, default=HandoffStatus.PENDING.value)
    fallback_action = pw.CharField(max_length=20, null=True)  # applied OperatorFallbackAction
    trace_id = pw.CharField(max_length=64, null=True)
    delivered_at = TimestampField(null=True)
    accepted_at = TimestampField(null=True)
    accepted_by = pw.ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")

    class Meta:
        table_name = "handoff_packets"
        indexes = ((("project", "status", "created_at"), False),)


__all__ = ["CallDirection", "CallState", "CallOutcome", "CallParty", "Speaker",
           "ToolInvocationStatus", "IssueSource", "TransferMode", "HandoffStatus", "Call",
           "CallEvent", "Transcript", "ToolInvocation", "CallIssue", "HandoffPacket"]
