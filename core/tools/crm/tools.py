"""CRM tools the agent calls; each acts through the project's CrmProvider (built-in by default)."""
from __future__ import annotations

from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from core.tools.base import ToolContext, ToolError
from core.tools.calendar.slots import parse_local_datetime
from core.tools.common import PHONE_ARG, UUID_ARG, ProviderTool, phone_of
from core.tools.crm.base import CrmProvider
from core.tools.providers import resolve_crm
from models.crm import TaskKind
from models.saas import Project


def _obj(required: list[str], props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props, "additionalProperties": False}


class CrmTool(ProviderTool):
    def resolve(self, ctx: ToolContext) -> CrmProvider:
        return resolve_crm(ctx.project_id)

    @staticmethod
    def contact_for(crm: CrmProvider, ctx: ToolContext, args: dict[str, Any]) -> str:
        """The contact the action is about: the given id, else the caller's (found or created)."""
        if args.get("contact_id"):
            return crm.get_contact(args["contact_id"]).id
        return crm.find_or_create_contact(ctx, phone_of(ctx, args.get("phone"))).id


class FindOrCreateContact(CrmTool):
    name = "crm_find_or_create_contact"
    title = "Найти или создать контакт"
    description = ("Найти звонящего в CRM по номеру телефона (или создать контакт, если его нет) и "
                   "запомнить его имя и e-mail. Вызывайте в начале разговора или когда человек назвался.")
    parameters = _obj([], {
        "phone": PHONE_ARG,
        "full_name": {"type": "string", "minLength": 1, "maxLength": 300, "description": "Имя, как назвался"},
        "email": {"type": "string", "format": "email", "maxLength": 254},
    })

    def act(self, crm: CrmProvider, ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
        contact = crm.find_or_create_contact(ctx, phone_of(ctx, args.get("phone")),
                                             args.get("full_name", ""), args.get("email"))
        return {"contact": contact, "created": contact.created}


class CreateDeal(CrmTool):
    name = "crm_create_deal"
    title = "Создать сделку"
    description = ("Создать сделку (заявку, заказ) в CRM для звонящего, когда он хочет купить услугу или "
                   "оставить заявку. Сумму указывайте, только если её назвал собеседник или она есть в базе знаний.")
    parameters = _obj(["title"], {
        "title": {"type": "string", "minLength": 1, "maxLength": 300, "description": "Кратко: что нужно клиенту"},
        "amount": {"type": "number", "minimum": 0, "maximum": 1e10},
        "currency": {"type": "string", "enum": ["RUB", "KZT", "USD", "EUR", "BYN", "UZS"]},
        "stage": {"type": "string", "minLength": 1, "maxLength": 64},
        "comment": {"type": "string", "maxLength": 4000, "description": "Подробности заявки"},
        "contact_id": UUID_ARG,
        "phone": PHONE_ARG,
    })

    def act(self, crm: CrmProvider, ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
        contact_id = self.contact_for(crm, ctx, args)
        deal = crm.create_deal(ctx, args["title"], contact_id, Decimal(str(args.get("amount", 0))),
                               args.get("currency", "RUB"), args.get("stage"), args.get("comment", ""))
        return {"deal": deal}


class CreateTask(CrmTool):
    name = "crm_create_task"
    title = "Создать задачу"
    description = ("Поставить задачу сотрудникам: перезвонить, уточнить, подготовить документы. "
                   "due_at — местное время проекта, например 2026-03-10T15:00.")
    parameters = _obj(["title"], {
        "title": {"type": "string", "minLength": 1, "maxLength": 300},
        "description": {"type": "string", "maxLength": 4000},
        "kind": {"type": "string", "enum": [k.value for k in TaskKind]},
        "due_at": {"type": "string", "minLength": 10, "maxLength": 40,
                   "description": "Срок: ГГГГ-ММ-ДДTЧЧ:ММ по местному времени"},
        "contact_id": UUID_ARG,
        "deal_id": UUID_ARG,
        "phone": PHONE_ARG,
    })

    def act(self, crm: CrmProvider, ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
        due = None
        if args.get("due_at"):
            tz = ZoneInfo(Project.get_by_id(ctx.project_id).timezone)
            try:
                due = parse_local_datetime(args["due_at"], tz)
            except ValueError as exc:
                raise ToolError("VALIDATION_FAILED", str(exc), {"field": "due_at"}) from None
        contact_id = None if args.get("deal_id") and not (args.get("contact_id") or args.get("phone")) \
            else self.contact_for(crm, ctx, args)
        task = crm.create_task(ctx, args["title"], args.get("kind", TaskKind.TODO.value),
                               args.get("description", ""), due, contact_id, args.get("deal_id"))
        return {"task": task}


class AddNote(CrmTool):
    name = "crm_add_note"
    title = "Добавить заметку"
    description = ("Записать заметку к контакту или сделке: что спросил клиент, о чём договорились. "
                   "Без contact_id и deal_id заметка добавляется к контакту звонящего.")
    parameters = _obj(["body"], {
        "body": {"type": "string", "minLength": 1, "maxLength": 8000},
        "contact_id": UUID_ARG,
        "deal_id": UUID_ARG,
        "phone": PHONE_ARG,
    })

    def act(self, crm: CrmProvider, ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
        contact_id = None if args.get("deal_id") and not (args.get("contact_id") or args.get("phone")) \
            else self.contact_for(crm, ctx, args)
        return {"note": crm.add_note(ctx, args["body"], contact_id, args.get("deal_id"))}


class LinkCall(CrmTool):
    name = "crm_link_call"
    title = "Привязать звонок к контакту"
    description = "Привязать текущий звонок к контакту (и сделке) в CRM, чтобы сотрудники видели историю."
    parameters = _obj([], {"contact_id": UUID_ARG, "deal_id": UUID_ARG, "phone": PHONE_ARG})

    def act(self, crm: CrmProvider, ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
        if ctx.call_id is None:
            raise ToolError("VALIDATION_FAILED", "Привязать можно только идущий звонок, а это не звонок",
                            {"field": "call_id"})
        contact_id = self.contact_for(crm, ctx, args)
        return {"link": crm.link_call(ctx, ctx.call_id, contact_id, args.get("deal_id"))}


TOOLS = [FindOrCreateContact(), CreateDeal(), CreateTask(), AddNote(), LinkCall()]
