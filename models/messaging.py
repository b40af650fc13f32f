"""Messaging entities (spec 8.1): channels (SMS, WhatsApp, Telegram, Email), their providers,
templates, messages with their delivery attempts and errors, plus the do-not-contact list and
consents that calls and messages are checked against.

Channel and provider credentials live only in ``*_encrypted`` columns (ciphertext from
``core.security.crypto``). A message is recorded (``queued``, with ``idempotency_key``) before any
provider is called, so a retried job never sends twice.

Spec 8.2 names the recipient column ``to``; the field is called ``to`` as well (peewee quotes the
reserved word). ``messages.channel`` is the channel type (spec 8.2); the FK to the configured
channel row is ``message_channel``.
"""
from __future__ import annotations

import enum

import peewee as pw

from models.base import JsonField, MoneyField, TimestampField, utcnow
from models.calls import Call
from models.saas import ProjectScoped, User


class ChannelType(str, enum.Enum):
    SMS = "sms"
    WHATSAPP = "whatsapp"
    TELEGRAM = "telegram"
    EMAIL = "email"


class ChannelStatus(str, enum.Enum):
    NEW = "new"            # saved, never checked
    OK = "ok"              # last check / test send succeeded
    FAILED = "failed"      # last check failed (MESSAGE_PROVIDER_DOWN)
    DISABLED = "disabled"


class ProviderStatus(str, enum.Enum):
    ACTIVE = "active"
    DOWN = "down"          # skipped until the health job sees it up again
    DISABLED = "disabled"


class TemplateApproval(str, enum.Enum):
    NOT_REQUIRED = "not_required"  # SMS, Telegram, Email
    PENDING = "pending"            # submitted to the provider (WhatsApp)
    APPROVED = "approved"
    REJECTED = "rejected"


class MessageStatus(str, enum.Enum):
    QUEUED = "queued"
    SENT = "sent"            # accepted by the provider (event message.sent)
    DELIVERED = "delivered"  # delivery confirmed (event message.delivered)
    FAILED = "failed"        # event message.failed; see error_code / message_errors


class DeliveryStatus(str, enum.Enum):
    PENDING = "pending"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"


class MessageSource(str, enum.Enum):
    CALL = "call"          # sent by an agent tool during or after a call
    CAMPAIGN = "campaign"
    API = "api"
    TEST = "test"          # POST /templates/{id}/test-send
    SYSTEM = "system"      # alerts, notifications


class DncSource(str, enum.Enum):
    MANUAL = "manual"
    CALL_OPT_OUT = "call_opt_out"        # the person asked not to be called during a call
    MESSAGE_OPT_OUT = "message_opt_out"  # STOP reply or unsubscribe
    IMPORT = "import"
    API = "api"


class ConsentPurpose(str, enum.Enum):
    SERVICE = "service"
    REMINDER = "reminder"
    SURVEY = "survey"
    DEBT_COLLECTION = "debt_collection"
    ADVERTISING = "advertising"
    PERSONAL_DATA = "personal_data"  # processing of personal data
    RECORDING = "recording"          # call recording


class ConsentChannel(str, enum.Enum):
    ANY = "any"
    CALL = "call"
    SMS = "sms"
    WHATSAPP = "whatsapp"
    TELEGRAM = "telegram"
    EMAIL = "email"


class ConsentSource(str, enum.Enum):
    CALL = "call"          # given during a call (evidence: call id, transcript excerpt)
    MESSAGE = "message"    # reply to a message
    WEB_FORM = "web_form"
    IMPORT = "import"
    MANUAL = "manual"
    API = "api"


class MessageChannel(ProjectScoped):
    type = pw.CharField(max_length=16)  # ChannelType
    name = pw.CharField(max_length=200)
    config_encrypted = pw.TextField(null=True)  # secret part of the channel config
    config_public_json = JsonField()  # sender name, bot username, from address, ...
    is_default = pw.BooleanField(default=False)  # default channel of its type in the project
    status = pw.CharField(max_length=20, default=ChannelStatus.NEW.value)
    last_check_at = TimestampField(null=True)
    last_error = pw.TextField(null=True)
    last_error_code = pw.CharField(max_length=64, null=True)

    class Meta:
        table_name = "message_channels"
        indexes = ((("project", "type", "name"), True),)


class MessageProvider(ProjectScoped):
    """A provider behind a channel; the sender tries active providers by ascending ``priority``."""

    channel = pw.ForeignKeyField(MessageChannel, on_delete="CASCADE", backref="providers",
                                 index=False)
    provider = pw.CharField(max_length=50)  # module in core.messaging: smsru, smtp, telegram_bot
    name = pw.CharField(max_length=200, default="")
    credentials_encrypted = pw.TextField(null=True)
    settings_json = JsonField()
    priority = pw.IntegerField(default=100)
    status = pw.CharField(max_length=20, default=ProviderStatus.ACTIVE.value)
    last_check_at = TimestampField(null=True)
    last_error = pw.TextField(null=True)

    class Meta:
        table_name = "message_providers"
        indexes = ((("channel", "priority"), False),)


class MessageTemplate(ProjectScoped):
    channel_type = pw.CharField(max_length=16)  # ChannelType
    name = pw.CharField(max_length=200)
    language = pw.CharField(max_length=16, null=True)
    subject = pw.CharField(max_length=300, null=True)  # email
    body = pw.TextField()  # with {{variable}} placeholders
    variables_json = JsonField(default=list)  # [{"name": ..., "required": true, "example": ...}]
    approved_status = pw.CharField(max_length=20, default=TemplateApproval.NOT_REQUIRED.value)
    external_template_id = pw.CharField(max_length=200, null=True)  # provider's template id
    archived_at = TimestampField(null=True)

    class Meta:
        table_name = "message_templates"
        indexes = ((("project", "channel_type", "name"), True),)


class Message(ProjectScoped):
    channel = pw.CharField(max_length=16)  # ChannelType
    message_channel = pw.ForeignKeyField(MessageChannel, null=True, on_delete="SET NULL",
                                         backref="messages", index=True)
    message_provider = pw.ForeignKeyField(MessageProvider, null=True, on_delete="SET NULL",
                                          backref="messages", index=True)  # provider that sent it
    to = pw.CharField(max_length=320)  # E.164 phone, e-mail address or Telegram chat id
    template = pw.ForeignKeyField(MessageTemplate, null=True, on_delete="SET NULL",
                                  backref="messages", index=True)
    subject = pw.CharField(max_length=300, null=True)
    body = pw.TextField(default="")  # rendered text
    variables_json = JsonField()  # template variables used
    purpose = pw.CharField(max_length=20, null=True)  # ConsentPurpose checked before sending
    source = pw.CharField(max_length=16, default=MessageSource.API.value)
    status = pw.CharField(max_length=20, default=MessageStatus.QUEUED.value)
    related_call = pw.ForeignKeyField(Call, null=True, on_delete="SET NULL", backref="messages",
                                      index=True)
    cost_total = MoneyField()
    currency = pw.CharField(max_length=3, default="RUB")
    provider = pw.CharField(max_length=50, null=True)
    provider_message_id = pw.CharField(max_length=200, null=True, index=True)  # for status webhooks
    attempts = pw.IntegerField(default=0)
    next_attempt_at = TimestampField(null=True)  # retry schedule while queued
    scheduled_at = TimestampField(null=True)  # do not send before
    error_code = pw.CharField(max_length=64, null=True)  # last error, catalog code
    trace_id = pw.CharField(max_length=64, index=True)
    idempotency_key = pw.CharField(max_length=200, null=True, unique=True)
    created_by = pw.ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    sent_at = TimestampField(null=True)
    delivered_at = TimestampField(null=True)
    failed_at = TimestampField(null=True)

    class Meta:
        table_name = "messages"
        indexes = (
            (("project", "created_at"), False),
            (("project", "status", "created_at"), False),
            (("project", "channel", "created_at"), False),
            (("status", "next_attempt_at"), False),
        )


class MessageDelivery(ProjectScoped):
    """One send attempt or provider status report of a message."""

    message = pw.ForeignKeyField(Message, on_delete="CASCADE", backref="deliveries", index=False)
    attempt = pw.IntegerField(default=1)
    provider = pw.CharField(max_length=50)
    message_provider = pw.ForeignKeyField(MessageProvider, null=True, on_delete="SET NULL",
                                          backref="+", index=True)
    status = pw.CharField(max_length=20, default=DeliveryStatus.PENDING.value)
    provider_message_id = pw.CharField(max_length=200, null=True)
    provider_response_json = JsonField()
    error_code = pw.CharField(max_length=64, null=True)
    duration_ms = pw.IntegerField(null=True)
    ts = TimestampField(default=utcnow)

    class Meta:
        table_name = "message_deliveries"
        indexes = ((("message", "ts"), False),)


class MessageError(ProjectScoped):
    message = pw.ForeignKeyField(Message, on_delete="CASCADE", backref="errors", index=True)
    code = pw.CharField(max_length=64)  # catalog code, e.g. MESSAGE_PROVIDER_DOWN
    provider = pw.CharField(max_length=50, null=True)
    attempt = pw.IntegerField(null=True)
    error_text = pw.TextField(default="")
    details_json = JsonField()

    class Meta:
        table_name = "message_errors"
        indexes = ((("project", "code", "created_at"), False),)


class DncEntry(ProjectScoped):
    """A number that must not be called or messaged in this project."""

    phone_e164 = pw.CharField(max_length=20)
    reason = pw.TextField(default="")
    source = pw.CharField(max_length=20, default=DncSource.MANUAL.value)
    call = pw.ForeignKeyField(Call, null=True, on_delete="SET NULL", backref="+", index=True)
    added_by = pw.ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    expires_at = TimestampField(null=True)  # None: permanent

    class Meta:
        table_name = "dnc_list"
        indexes = ((("project", "phone_e164"), True),)


class Consent(ProjectScoped):
    """Consent of a person (by number) for a purpose on a channel; revoking sets ``revoked_at``."""

    phone_e164 = pw.CharField(max_length=20)
    purpose = pw.CharField(max_length=20)  # ConsentPurpose
    channel = pw.CharField(max_length=16, default=ConsentChannel.ANY.value)
    granted_at = TimestampField(default=utcnow)
    revoked_at = TimestampField(null=True)
    source = pw.CharField(max_length=16, default=ConsentSource.MANUAL.value)
    call = pw.ForeignKeyField(Call, null=True, on_delete="SET NULL", backref="+", index=True)
    evidence_json = JsonField()  # form id, transcript excerpt, file row, operator, ...
    recorded_by = pw.ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")

    class Meta:
        table_name = "consents"
        indexes = ((("project", "phone_e164", "purpose", "channel"), True),)


__all__ = ["ChannelType", "ChannelStatus", "ProviderStatus", "TemplateApproval", "MessageStatus",
           "DeliveryStatus", "MessageSource", "DncSource", "ConsentPurpose", "ConsentChannel",
           "ConsentSource", "MessageChannel", "MessageProvider", "MessageTemplate", "Message",
           "MessageDelivery", "MessageError", "DncEntry", "Consent"]
