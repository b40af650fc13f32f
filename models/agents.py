"""Agent Studio entities (spec 8.1): agents, their immutable-once-published versions, and per
version the policies, speech/engine settings and tools.

A version's ``config_json`` is the full agent definition (persona, prompts, slots, scenario), its
schema owned by ``core.agent``; ``agent_settings``, ``agent_policies`` and ``agent_tools`` are the
parts the runtime, the cabinet and reports query by column. Publishing sets the version's state and
``agents.published_version``; rollback publishes an older version again (or a copy, ``based_on``).

``agents.published_version`` and ``agent_versions.agent`` form a cycle, so the former is a
``pw.DeferredForeignKey``: ``create_tables`` (and ``models.migrate.model_ddl``) leave its
constraint out; the schema step adds it after both tables exist with
``Agent._schema.create_foreign_key(Agent.published_version)``.
"""
from __future__ import annotations

import enum

import peewee as pw

from models.base import JsonField, TimestampField
from models.integrations import Integration
from models.saas import ProjectScoped, User
from models.telephony import OperatorRoute


class AgentStatus(str, enum.Enum):
    DRAFT = "draft"        # no version published yet
    ACTIVE = "active"      # has a published version and takes calls
    PAUSED = "paused"      # keeps its versions, takes no calls
    ARCHIVED = "archived"


class AgentVersionState(str, enum.Enum):
    DRAFT = "draft"
    PUBLISHED = "published"
    ARCHIVED = "archived"  # previously published, replaced by another version


class AgentPolicyKind(str, enum.Enum):
    ESCALATION = "escalation"            # when and where to hand over to an operator
    FALLBACK = "fallback"                # what to do on repeated misunderstanding / engine failure
    GUARDRAIL = "guardrail"              # topics and promises the agent must avoid
    COMPLIANCE = "compliance"            # recording notice, consent, opt-out phrases
    DATA_COLLECTION = "data_collection"  # required fields and how to confirm them
    KNOWLEDGE = "knowledge"              # which knowledge-base sources and how strictly


class Sensitivity(str, enum.Enum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class Formality(str, enum.Enum):
    FORMAL = "formal"      # "вы"
    INFORMAL = "informal"  # "ты"


class Agent(ProjectScoped):
    name = pw.CharField(max_length=200)
    description = pw.TextField(default="")
    template = pw.CharField(max_length=50, null=True)  # studio template the agent started from
    published_version = pw.DeferredForeignKey("AgentVersion", null=True, on_delete="SET NULL",
                                              backref="+", column_name="published_version_id",
                                              index=True)
    status = pw.CharField(max_length=20, default=AgentStatus.DRAFT.value)
    language = pw.CharField(max_length=16, default="ru-RU")
    created_by = pw.ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    archived_at = TimestampField(null=True)

    class Meta:
        table_name = "agents"
        indexes = (
            (("project", "created_at"), False),
            (("project", "status"), False),
        )


class AgentVersion(ProjectScoped):
    agent = pw.ForeignKeyField(Agent, on_delete="CASCADE", backref="versions", index=False)
    version = pw.IntegerField()  # 1, 2, 3 ... per agent
    state = pw.CharField(max_length=20, default=AgentVersionState.DRAFT.value)
    config_json = JsonField()
    config_schema = pw.IntegerField(default=1)  # version of the config_json layout (core.agent)
    based_on = pw.ForeignKeyField("self", null=True, on_delete="SET NULL", backref="+", index=True)
    comment = pw.TextField(default="")
    created_by = pw.ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    published_at = TimestampField(null=True)
    published_by = pw.ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")

    class Meta:
        table_name = "agent_versions"
        indexes = (
            (("agent", "version"), True),
            (("agent", "state"), False),
        )


class AgentPolicy(ProjectScoped):
    agent_version = pw.ForeignKeyField(AgentVersion, on_delete="CASCADE", backref="policies",
                                       index=False)
    kind = pw.CharField(max_length=32)  # AgentPolicyKind
    name = pw.CharField(max_length=200, default="")
    priority = pw.IntegerField(default=100)
    config_json = JsonField()
    operator_route = pw.ForeignKeyField(OperatorRoute, null=True, on_delete="SET NULL",
                                        backref="agent_policies", index=True)  # escalation target
    enabled = pw.BooleanField(default=True)

    class Meta:
        table_name = "agent_policies"
        indexes = ((("agent_version", "kind"), False),)


class AgentSettings(ProjectScoped):
    """Speech and engine settings of one version (one row per version)."""

    agent_version = pw.ForeignKeyField(AgentVersion, on_delete="CASCADE", backref="settings",
                                       unique=True)
    language = pw.CharField(max_length=16, null=True)  # None: the agent's language
    speech_rate = pw.FloatField(default=1.0)  # TTS rate multiplier
    interruption_sensitivity = pw.CharField(max_length=10, default=Sensitivity.MEDIUM.value)
    silence_timeout_ms = pw.IntegerField(default=6000)  # caller silence before a reprompt
    endpointing_ms = pw.IntegerField(default=700)  # trailing silence that ends a caller turn
    max_reprompts = pw.IntegerField(default=2)  # then fallback / escalation (spec 12.1)
    stt_min_confidence = pw.FloatField(default=0.5)  # below: STT_LOW_CONFIDENCE, ask again
    max_call_duration_s = pw.IntegerField(default=900)
    formality = pw.CharField(max_length=10, default=Formality.FORMAL.value)
    greeting_text = pw.TextField(null=True)
    llm_engine = pw.CharField(max_length=64, null=True)  # None: platform default
    llm_model = pw.CharField(max_length=128, null=True)
    llm_temperature = pw.FloatField(default=0.3)
    stt_engine = pw.CharField(max_length=64, null=True)
    tts_engine = pw.CharField(max_length=64, null=True)
    voice = pw.CharField(max_length=128, null=True)
    settings_json = JsonField()  # anything not yet a column

    class Meta:
        table_name = "agent_settings"


class AgentTool(ProjectScoped):
    agent_version = pw.ForeignKeyField(AgentVersion, on_delete="CASCADE", backref="tools",
                                       index=False)
    tool_name = pw.CharField(max_length=100)  # name the LLM sees, unique per version
    provider = pw.CharField(max_length=32)  # IntegrationProvider value, or messaging
    description = pw.TextField(default="")
    config_json = JsonField()  # parameters schema, field mapping, timeouts
    integration = pw.ForeignKeyField(Integration, null=True, on_delete="SET NULL",
                                     backref="agent_tools", index=True)
    enabled = pw.BooleanField(default=True)

    class Meta:
        table_name = "agent_tools"
        indexes = ((("agent_version", "tool_name"), True),)


__all__ = ["AgentStatus", "AgentVersionState", "AgentPolicyKind", "Sensitivity", "Formality",
           "Agent", "AgentVersion", "AgentPolicy", "AgentSettings", "AgentTool"]
