"""Built-in CRM entities (spec 8.1): contacts, companies, deals, tasks, notes and the links between
calls and contacts/deals.

This is the platform's own CRM (integration provider ``builtin``); records mirrored from Bitrix24 or
amoCRM keep the remote ids in ``external_ids_json`` ({"bitrix24": "123", "amocrm": "456"}).
"""
from __future__ import annotations

import enum

import peewee as pw

from models.base import JsonField, MoneyField, TimestampField
from models.calls import Call
from models.saas import ProjectScoped, User


class CrmSource(str, enum.Enum):
    CALL = "call"          # created by an agent during a call
    MANUAL = "manual"
    IMPORT = "import"
    API = "api"
    INTEGRATION = "integration"  # mirrored from an external CRM


class DealStatus(str, enum.Enum):
    OPEN = "open"
    WON = "won"
    LOST = "lost"


class TaskKind(str, enum.Enum):
    TODO = "todo"
    CALLBACK = "callback"    # call the person back (operator fallback, agent promise)
    FOLLOW_UP = "follow_up"
    MEETING = "meeting"


class TaskStatus(str, enum.Enum):
    OPEN = "open"
    DONE = "done"
    CANCELLED = "cancelled"


class NoteAuthorKind(str, enum.Enum):
    USER = "user"
    AGENT = "agent"    # written by the voice agent (call summary, collected data)
    SYSTEM = "system"


class CrmCompany(ProjectScoped):
    name = pw.CharField(max_length=300)
    inn = pw.CharField(max_length=12, null=True)  # Russian taxpayer id
    phone_e164 = pw.CharField(max_length=20, null=True, index=True)
    email = pw.CharField(max_length=254, null=True)
    website = pw.CharField(max_length=300, null=True)
    address = pw.TextField(null=True)
    fields_json = JsonField()  # custom fields
    external_ids_json = JsonField()
    source = pw.CharField(max_length=16, default=CrmSource.MANUAL.value)
    owner = pw.ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")

    class Meta:
        table_name = "crm_companies"
        indexes = (
            (("project", "name"), False),
            (("project", "created_at"), False),
        )


class CrmContact(ProjectScoped):
    full_name = pw.CharField(max_length=300, default="")
    phone_e164 = pw.CharField(max_length=20, null=True)
    email = pw.CharField(max_length=254, null=True)
    company = pw.ForeignKeyField(CrmCompany, null=True, on_delete="SET NULL", backref="contacts",
                                 index=True)
    fields_json = JsonField()  # custom fields
    external_ids_json = JsonField()
    source = pw.CharField(max_length=16, default=CrmSource.MANUAL.value)
    owner = pw.ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    last_contacted_at = TimestampField(null=True)

    class Meta:
        table_name = "crm_contacts"
        indexes = (
            (("project", "phone_e164"), False),
            (("project", "email"), False),
            (("project", "created_at"), False),
        )


class CrmDeal(ProjectScoped):
    contact = pw.ForeignKeyField(CrmContact, null=True, on_delete="SET NULL", backref="deals",
                                 index=True)
    company = pw.ForeignKeyField(CrmCompany, null=True, on_delete="SET NULL", backref="deals",
                                 index=True)
    title = pw.CharField(max_length=300)
    amount = MoneyField()
    currency = pw.CharField(max_length=3, default="RUB")
    pipeline = pw.CharField(max_length=64, default="default")
    stage = pw.CharField(max_length=64, default="new")  # free stage names of the pipeline
    status = pw.CharField(max_length=10, default=DealStatus.OPEN.value)
    fields_json = JsonField()
    external_ids_json = JsonField()
    source = pw.CharField(max_length=16, default=CrmSource.MANUAL.value)
    owner = pw.ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    closed_at = TimestampField(null=True)

    class Meta:
        table_name = "crm_deals"
        indexes = (
            (("project", "created_at"), False),
            (("project", "status", "stage"), False),
        )


class CrmTask(ProjectScoped):
    contact = pw.ForeignKeyField(CrmContact, null=True, on_delete="CASCADE", backref="tasks",
                                 index=True)
    deal = pw.ForeignKeyField(CrmDeal, null=True, on_delete="CASCADE", backref="tasks", index=True)
    call = pw.ForeignKeyField(Call, null=True, on_delete="SET NULL", backref="crm_tasks",
                              index=True)  # call the task came from
    kind = pw.CharField(max_length=16, default=TaskKind.TODO.value)
    title = pw.CharField(max_length=300)
    description = pw.TextField(default="")
    due_at = TimestampField(null=True)
    status = pw.CharField(max_length=10, default=TaskStatus.OPEN.value)
    assignee = pw.ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+", index=False)
    created_by = pw.ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    completed_at = TimestampField(null=True)
    external_ids_json = JsonField()

    class Meta:
        table_name = "crm_tasks"
        indexes = (
            (("project", "status", "due_at"), False),
            (("assignee", "status", "due_at"), False),
        )


class CrmNote(ProjectScoped):
    contact = pw.ForeignKeyField(CrmContact, null=True, on_delete="CASCADE", backref="notes",
                                 index=True)
    deal = pw.ForeignKeyField(CrmDeal, null=True, on_delete="CASCADE", backref="notes", index=True)
    call = pw.ForeignKeyField(Call, null=True, on_delete="SET NULL", backref="crm_notes",
                              index=True)
    body = pw.TextField()
    author_kind = pw.CharField(max_length=10, default=NoteAuthorKind.USER.value)
    author = pw.ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")

    class Meta:
        table_name = "crm_notes"


class CrmCallLink(ProjectScoped):
    call = pw.ForeignKeyField(Call, on_delete="CASCADE", backref="crm_links", index=False)
    contact = pw.ForeignKeyField(CrmContact, on_delete="CASCADE", backref="call_links", index=True)
    deal = pw.ForeignKeyField(CrmDeal, null=True, on_delete="SET NULL", backref="call_links",
                              index=True)

    class Meta:
        table_name = "crm_call_links"
        indexes = ((("call", "contact"), True),)


__all__ = ["CrmSource", "DealStatus", "TaskKind", "TaskStatus", "NoteAuthorKind", "CrmCompany",
           "CrmContact", "CrmDeal", "CrmTask", "CrmNote", "CrmCallLink"]
