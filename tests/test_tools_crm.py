"""Built-in CRM tools through the registry: success and failure paths, tenant isolation."""
from __future__ import annotations

import uuid
from decimal import Decimal

from core.tools.registry import invoke
from models.crm import CrmCallLink, CrmContact, CrmDeal, CrmNote, CrmTask


def test_find_or_create_contact_by_caller_phone(tool_world):
    p = tool_world.project()
    call = tool_world.call(p, caller="+79161234567")
    first = invoke(tool_world.ctx(p, call), "crm_find_or_create_contact", {})
    assert first.ok and first.data["created"] is True
    contact = CrmContact.get_by_id(uuid.UUID(first.data["contact"]["id"]))
    assert (contact.phone_e164, contact.source, contact.full_name) == ("+79161234567", "call", "")

    # Same person, number typed the Russian way: found, the name is filled in, nothing duplicated.
    again = invoke(tool_world.ctx(p, call), "crm_find_or_create_contact",
                   {"phone": "8 (916) 123-45-67", "full_name": "Иван Петров", "email": "ivan@example.ru"})
    assert again.ok and again.data["created"] is False
    assert again.data["contact"] == {"id": str(contact.id), "full_name": "Иван Петров", "phone": "+79161234567",
                                     "email": "ivan@example.ru", "created": False}
    assert CrmContact.select().count() == 1
    # A known name is not overwritten by what the LLM guesses later.
    third = invoke(tool_world.ctx(p, call), "crm_find_or_create_contact", {"full_name": "Другое Имя"})
    assert third.data["contact"]["full_name"] == "Иван Петров"


def test_find_or_create_contact_failures(tool_world):
    p = tool_world.project()
    no_phone = invoke(tool_world.ctx(p), "crm_find_or_create_contact", {})
    assert not no_phone.ok and no_phone.error_code == "VALIDATION_FAILED"
    assert "Не известен номер телефона" in no_phone.error_message
    bad_phone = invoke(tool_world.ctx(p), "crm_find_or_create_contact", {"phone": "12345"})
    assert not bad_phone.ok and bad_phone.error_code == "VALIDATION_FAILED"
    assert "номер" in bad_phone.error_message.lower()
    bad_email = invoke(tool_world.ctx(p, caller_phone="+79161234567"), "crm_find_or_create_contact",
                       {"email": "not-an-email"})
    assert bad_email.error_code == "VALIDATION_FAILED" and "e-mail" in bad_email.error_message
    assert CrmContact.select().count() == 0


def test_create_deal_for_the_caller_and_for_a_given_contact(tool_world):
    p = tool_world.project()
    call = tool_world.call(p)
    res = invoke(tool_world.ctx(p, call), "crm_create_deal",
                 {"title": "Установка кондиционера", "amount": 45000.5, "comment": "Два блока, 3 этаж"})
    assert res.ok, res
    deal = CrmDeal.get_by_id(uuid.UUID(res.data["deal"]["id"]))
    assert deal.amount == Decimal("45000.5") and deal.currency == "RUB" and deal.stage == "new"
    assert deal.source == "call" and deal.contact.phone_e164 == call.from_number
    note = CrmNote.get(CrmNote.deal == deal.id)
    assert (note.body, note.author_kind, note.call_id) == ("Два блока, 3 этаж", "agent", call.id)

    second = invoke(tool_world.ctx(p, call), "crm_create_deal",
                    {"title": "Сервис", "contact_id": str(deal.contact_id), "currency": "KZT", "stage": "qualified"})
    assert second.ok and second.data["deal"]["contact_id"] == str(deal.contact_id)
    assert second.data["deal"]["stage"] == "qualified" and second.data["deal"]["currency"] == "KZT"
    assert CrmContact.select().count() == 1

    missing = invoke(tool_world.ctx(p, call), "crm_create_deal", {"title": "x", "contact_id": str(uuid.uuid4())})
    assert not missing.ok and missing.error_code == "NOT_FOUND" and missing.error_message == "Контакт не найден в CRM"
    bad_currency = invoke(tool_world.ctx(p, call), "crm_create_deal", {"title": "x", "currency": "RUR"})
    assert bad_currency.error_code == "VALIDATION_FAILED"
    assert CrmDeal.select().count() == 2


def test_create_task_with_local_due_time(tool_world):
    p = tool_world.project(timezone="Asia/Vladivostok")
    call = tool_world.call(p)
    res = invoke(tool_world.ctx(p, call), "crm_create_task",
                 {"title": "Перезвонить клиенту", "kind": "callback", "due_at": "2030-03-04T10:00",
                  "description": "Спрашивал про рассрочку"})
    assert res.ok, res
    task = CrmTask.get_by_id(uuid.UUID(res.data["task"]["id"]))
    assert task.due_at.isoformat() == "2030-03-04T00:00:00+00:00"  # 10:00 in Vladivostok (UTC+10)
    assert (task.kind, task.status, task.call_id) == ("callback", "open", call.id)
    assert task.contact.phone_e164 == call.from_number

    deal = invoke(tool_world.ctx(p, call), "crm_create_deal", {"title": "Сделка"}).data["deal"]
    on_deal = invoke(tool_world.ctx(p, call), "crm_create_task", {"title": "Документы", "deal_id": deal["id"]})
    assert on_deal.ok and on_deal.data["task"]["deal_id"] == deal["id"]
    assert on_deal.data["task"]["contact_id"] == deal["contact_id"]

    bad_due = invoke(tool_world.ctx(p, call), "crm_create_task", {"title": "x", "due_at": "завтра утром"})
    assert not bad_due.ok and bad_due.error_code == "VALIDATION_FAILED" and "не распознаны" in bad_due.error_message
    bad_kind = invoke(tool_world.ctx(p, call), "crm_create_task", {"title": "x", "kind": "party"})
    assert bad_kind.error_code == "VALIDATION_FAILED" and "Допустимые значения" in bad_kind.error_message
    missing_deal = invoke(tool_world.ctx(p, call), "crm_create_task", {"title": "x", "deal_id": str(uuid.uuid4())})
    assert missing_deal.error_code == "NOT_FOUND" and missing_deal.error_message == "Сделка не найдена в CRM"
    assert CrmTask.select().count() == 2


def test_add_note(tool_world):
    p = tool_world.project()
    call = tool_world.call(p)
    res = invoke(tool_world.ctx(p, call), "crm_add_note", {"body": "Клиент просит счёт на юрлицо"})
    assert res.ok
    note = CrmNote.get_by_id(uuid.UUID(res.data["note"]["id"]))
    assert note.contact.phone_e164 == call.from_number and note.call_id == call.id and note.author_kind == "agent"
    empty = invoke(tool_world.ctx(p, call), "crm_add_note", {"body": ""})
    assert empty.error_code == "VALIDATION_FAILED" and "body: Поле не может быть пустым" in empty.error_message
    assert CrmNote.select().count() == 1


def test_link_call_is_idempotent_and_needs_a_call(tool_world):
    p = tool_world.project()
    call = tool_world.call(p)
    first = invoke(tool_world.ctx(p, call), "crm_link_call", {})
    assert first.ok and first.data["link"]["created"] is True and first.data["link"]["call_id"] == str(call.id)
    deal = invoke(tool_world.ctx(p, call), "crm_create_deal", {"title": "Сделка"}).data["deal"]
    second = invoke(tool_world.ctx(p, call), "crm_link_call", {"deal_id": deal["id"]})
    assert second.ok and second.data["link"]["created"] is False and second.data["link"]["deal_id"] == deal["id"]
    assert CrmCallLink.select().count() == 1

    playground = invoke(tool_world.ctx(p, caller_phone="+79990001122"), "crm_link_call", {})
    assert not playground.ok and playground.error_code == "VALIDATION_FAILED"
    assert "только идущий звонок" in playground.error_message


def test_crm_tools_never_see_another_project(tool_world):
    mine, theirs = tool_world.project(), tool_world.project()
    their_call = tool_world.call(theirs, caller="+79161234567")
    theirs_res = invoke(tool_world.ctx(theirs, their_call), "crm_create_deal", {"title": "Чужая сделка"})
    their_contact, their_deal = theirs_res.data["deal"]["contact_id"], theirs_res.data["deal"]["id"]

    my_call = tool_world.call(mine, caller="+79161234567")  # the same person calls another company
    found = invoke(tool_world.ctx(mine, my_call), "crm_find_or_create_contact", {})
    assert found.ok and found.data["created"] is True and found.data["contact"]["id"] != their_contact
    for name, args in [("crm_create_deal", {"title": "x", "contact_id": their_contact}),
                       ("crm_create_task", {"title": "x", "deal_id": their_deal}),
                       ("crm_add_note", {"body": "x", "contact_id": their_contact}),
                       ("crm_link_call", {"contact_id": their_contact})]:
        res = invoke(tool_world.ctx(mine, my_call), name, args)
        assert not res.ok and res.error_code == "NOT_FOUND", (name, res)
    assert CrmNote.select().where(CrmNote.contact == uuid.UUID(their_contact)).count() == 0
    assert CrmTask.select().count() == 0
