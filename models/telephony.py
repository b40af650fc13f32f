"""Telephony entities (spec 8.1): SIP connections (trunks), phone numbers (DIDs), routing rules and
operator routes. The web process renders FreeSWITCH gateways from ``sip_connections`` and the
inbound dialplan from ``phone_numbers`` + ``routing_rules``; operator routes are where the agent
transfers a call (SIP extension, ring group or an external number through a trunk).

The SIP password lives only in ``password_encrypted`` (ciphertext from ``core.security.crypto``).

Import chain: saas <- (telephony, integrations) <- agents <- calls <- (campaigns, messaging, crm,
kb); billing also imports campaigns.
``phone_numbers.agent`` and ``routing_rules.agent`` point forward to ``agents`` and are declared
with ``LateForeignKey`` (below), which models.calls reuses for its forward keys.
"""
from __future__ import annotations

import enum
from typing import Any

import peewee as pw

from models.base import JsonField, TimestampField
from models.saas import ProjectScoped, User


class LateForeignKey(pw.DeferredForeignKey):
    """A foreign key to a model of a module later in the import chain, named by class name.

    Resolved when that class is created, like ``pw.DeferredForeignKey``, but into an ordinary
    (non-deferred) ``ForeignKeyField``: ``create_tables``/``sort_models`` create the target table
    first and emit the constraint inline. Only for targets that never reference back (no cycle);
    a true cycle (``agents.published_version``) uses ``pw.DeferredForeignKey``. Pass
    ``column_name`` explicitly. The target's module must be imported before the model is queried.
    """

    def __deepcopy__(self, memo: Any = None) -> "LateForeignKey":
        return LateForeignKey(self.rel_model_name, **self.field_kwargs)

    def set_model(self, rel_model: type[pw.Model]) -> None:
        field = pw.ForeignKeyField(rel_model, **self.field_kwargs)
        field._order, field._sort_key = self._order, self._sort_key  # keep the column position
        self.model._meta.add_field(self.name, field)


class SipTransport(str, enum.Enum):
    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"


class SipAuthMode(str, enum.Enum):
    REGISTER = "register"  # we register with login/password
    IP = "ip"              # provider trusts our IP; no registration


class SipConnectionStatus(str, enum.Enum):
    NEW = "new"            # saved, never checked
    CHECKING = "checking"  # a check or test call is running
    OK = "ok"              # registered / reachable
    FAILED = "failed"      # last check failed (SIP_CONNECT_FAILED / TEST_CALL_FAILED)
    DISABLED = "disabled"  # not rendered to FreeSWITCH


class PhoneNumberStatus(str, enum.Enum):
    ACTIVE = "active"
    DISABLED = "disabled"


class AfterHoursAction(str, enum.Enum):
    OPERATOR = "operator"  # transfer to operator_route
    MESSAGE = "message"    # play after_hours_message and hang up
    HANGUP = "hangup"


class RoutingAction(str, enum.Enum):
    AGENT = "agent"
    OPERATOR = "operator"
    HANGUP = "hangup"
    MESSAGE = "message"


class OperatorRouteKind(str, enum.Enum):
    SIP_EXTENSION = "sip_extension"      # target: one extension/user registered on our FreeSWITCH
    RING_GROUP = "ring_group"            # target: comma-separated extensions
    EXTERNAL_NUMBER = "external_number"  # target: E.164 number dialled through sip_connection


class RingStrategy(str, enum.Enum):
    SIMULTANEOUS = "simultaneous"
    SEQUENTIAL = "sequential"


class OperatorFallbackAction(str, enum.Enum):
    BACK_TO_AGENT = "back_to_agent"
    CALLBACK_TASK = "callback_task"  # agent promises a call back; a CRM task is created
    VOICEMAIL = "voicemail"
    HANGUP = "hangup"


class SipConnection(ProjectScoped):
    name = pw.CharField(max_length=200)
    provider_host = pw.CharField(max_length=255)  # host or IP of the provider's registrar/proxy
    port = pw.IntegerField(default=5060)
    transport = pw.CharField(max_length=8, default=SipTransport.UDP.value)
    auth_mode = pw.CharField(max_length=16, default=SipAuthMode.REGISTER.value)
    login = pw.CharField(max_length=200, null=True)
    password_encrypted = pw.TextField(null=True)
    auth_username = pw.CharField(max_length=200, null=True)  # when it differs from login
    realm = pw.CharField(max_length=255, null=True)
    from_user = pw.CharField(max_length=200, null=True)
    from_domain = pw.CharField(max_length=255, null=True)
    outbound_proxy = pw.CharField(max_length=255, null=True)
    register_expires_s = pw.IntegerField(default=600)
    allowed_ips_json = JsonField(default=list)  # provider IPs/CIDRs allowed in the ACL
    caller_id = pw.CharField(max_length=32, null=True)  # default outbound caller id (E.164)
    gateway_name = pw.CharField(max_length=64, unique=True)  # FreeSWITCH gateway name
    max_concurrent_calls = pw.IntegerField(null=True)  # None: no limit
    max_calls_per_second = pw.IntegerField(null=True)  # None: no limit
    settings_json = JsonField()  # extra gateway params rendered as-is (codec prefs, ping, ...)
    status = pw.CharField(max_length=20, default=SipConnectionStatus.NEW.value)
    last_check_at = TimestampField(null=True)
    last_check_result_json = JsonField()  # {"ok": bool, "sip_status": 200, "latency_ms": .., ...}
    last_error_code = pw.CharField(max_length=64, null=True)  # catalog code
    created_by = pw.ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")

    class Meta:
        table_name = "sip_connections"
        indexes = ((("project", "created_at"), False),)


class OperatorRoute(ProjectScoped):
    name = pw.CharField(max_length=200)
    kind = pw.CharField(max_length=20, default=OperatorRouteKind.SIP_EXTENSION.value)
    target = pw.CharField(max_length=500)  # extension, "101,102,103", or +E.164
    ring_strategy = pw.CharField(max_length=16, default=RingStrategy.SIMULTANEOUS.value)
    sip_connection = pw.ForeignKeyField(SipConnection, null=True, on_delete="SET NULL",
                                        backref="operator_routes", index=True)
    caller_id = pw.CharField(max_length=32, null=True)  # caller id shown to an external operator
    ring_timeout_s = pw.IntegerField(default=30)
    schedule_json = JsonField()  # operators' working hours; empty: always
    fallback_action = pw.CharField(max_length=20,
                                   default=OperatorFallbackAction.BACK_TO_AGENT.value)
    fallback_route = pw.ForeignKeyField("self", null=True, on_delete="SET NULL",
                                        backref="fallback_of", index=True)
    whisper_enabled = pw.BooleanField(default=False)  # operator hears the handoff summary first
    whisper_text = pw.TextField(null=True)  # template; empty: built from the handoff packet
    settings_json = JsonField()
    enabled = pw.BooleanField(default=True)

    class Meta:
        table_name = "operator_routes"
        indexes = ((("project", "name"), False),)


class PhoneNumber(ProjectScoped):
    e164_number = pw.CharField(max_length=20, unique=True)
    label = pw.CharField(max_length=200, default="")
    # NO ACTION: a trunk with numbers cannot be deleted on its own (checked at statement end, so a
    # project delete that cascades both still works).
    sip_connection = pw.ForeignKeyField(SipConnection, backref="phone_numbers", index=True)
    agent = LateForeignKey("Agent", null=True, on_delete="SET NULL", backref="phone_numbers",
                           column_name="agent_id", index=True)
    schedule_json = JsonField()  # working hours; empty: always open
    timezone = pw.CharField(max_length=64, null=True)  # None: the project's timezone
    after_hours_action = pw.CharField(max_length=16, default=AfterHoursAction.MESSAGE.value)
    after_hours_message = pw.TextField(null=True)
    recording_enabled = pw.BooleanField(default=False)
    recording_notice_text = pw.TextField(null=True)  # played before the dialog when recording
    operator_route = pw.ForeignKeyField(OperatorRoute, null=True, on_delete="SET NULL",
                                        backref="phone_numbers", index=True)
    inbound_enabled = pw.BooleanField(default=True)
    outbound_enabled = pw.BooleanField(default=True)  # usable as caller id for outbound calls
    region = pw.CharField(max_length=64, null=True)
    settings_json = JsonField()
    status = pw.CharField(max_length=20, default=PhoneNumberStatus.ACTIVE.value)

    class Meta:
        table_name = "phone_numbers"
        indexes = ((("project", "created_at"), False),)


class RoutingRule(ProjectScoped):
    """One inbound routing rule; rules of a number (or project-wide ones, ``phone_number`` NULL)
    are evaluated by ascending ``priority``; the first whose ``match_json`` matches wins."""

    phone_number = pw.ForeignKeyField(PhoneNumber, null=True, on_delete="CASCADE",
                                      backref="routing_rules", index=False)
    priority = pw.IntegerField(default=100)
    name = pw.CharField(max_length=200, default="")
    match_json = JsonField()  # {"caller_prefix": [...], "schedule": {...}, "days": [...], ...}
    action = pw.CharField(max_length=16, default=RoutingAction.AGENT.value)
    agent = LateForeignKey("Agent", null=True, on_delete="SET NULL", backref="routing_rules",
                           column_name="agent_id", index=True)
    operator_route = pw.ForeignKeyField(OperatorRoute, null=True, on_delete="SET NULL",
                                        backref="routing_rules", index=True)
    message_text = pw.TextField(null=True)  # for action "message"
    enabled = pw.BooleanField(default=True)

    class Meta:
        table_name = "routing_rules"
        indexes = (
            (("phone_number", "priority"), False),
            (("project", "priority"), False),
        )


__all__ = ["LateForeignKey", "SipTransport", "SipAuthMode", "SipConnectionStatus",
           "PhoneNumberStatus", "AfterHoursAction", "RoutingAction", "OperatorRouteKind",
           "RingStrategy", "OperatorFallbackAction", "SipConnection", "OperatorRoute",
           "PhoneNumber", "RoutingRule"]
