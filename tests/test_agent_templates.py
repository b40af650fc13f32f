"""Every shipped template talks a whole scripted conversation through the runtime calls use:
collected fields, tool calls (real built-in CRM and calendar), escalation and the handoff packet."""
from __future__ import annotations

import datetime as dt
import uuid
from zoneinfo import ZoneInfo

import pytest

from core.agent.config import validate_config
from core.agent.handoff import create_packet, transfer_args, whisper_text
from core.agent.session import AgentSession, SessionContext
from core.agent.templates import get_template, list_templates
from core.kb.indexing import index_entry
from models.base import utcnow
from models.calendar import Appointment, CalendarResource
from models.calls import Call, HandoffPacket
from models.crm import CrmContact, CrmDeal, CrmNote, CrmTask
from models.kb import KbEntry
from models.telephony import OperatorRoute

CALLER = "+79161234567"


def ctx(project_id: str, **kw) -> SessionContext:
    base = dict(project_id=uuid.UUID(project_id), agent_id=None, agent_version_id=None, trace_id=uuid.uuid4().hex,
                caller_phone=CALLER, channel="phone", sandbox=False)
    base.update(kw)
    return SessionContext(**base)


def say(s: AgentSession, text: str) -> str:
    return "".join(s.respond(text)).strip()


def session_for(key: str, project_id: str, **kw) -> AgentSession:
    config = get_template(key)["config"]
    s = AgentSession(config, ctx(project_id, **kw), None)
    return s


@pytest.fixture()
def project(tenant):
    return tenant("tpl")["project_id"]


def test_every_template_is_a_valid_config(project):
    keys = {t["key"] for t in list_templates()}
    assert keys == {"appointment_clinic", "lead_qualification", "faq_support", "outbound_reminder"}
    for key in keys:
        validate_config(get_template(key)["config"], uuid.UUID(project))


def test_appointment_booking_conversation(project):
    CalendarResource.create(project=project, name="Кабинет 1", working_hours_json={}, slot_minutes=30)
    s = session_for("appointment_clinic", project)
    greeting = s.greeting()
    assert greeting.endswith("К какому специалисту вы хотите записаться: терапевт, стоматолог или педиатр?")
    assert say(s, "А сколько стоит приём стоматолога?").startswith(
        "Первичный приём терапевта стоит 2000 рублей, приём стоматолога — 2500 рублей")
    assert say(s, "Давайте к стоматологу") == "На какой день и время вас записать?"
    assert say(s, "завтра") .endswith("На какое время?")
    assert say(s, "в десять утра") == "Как вас зовут?"
    assert say(s, "Меня зовут Анна Петрова").startswith("Назовите номер телефона")
    assert say(s, "этот номер") == "Телефон: +7 916 123-45-67. Верно?"
    summary = say(s, "да")
    assert summary.startswith("Давайте проверим: Специалист — Стоматолог; Дата и время — ")
    assert summary.endswith("Имя — Анна Петрова; Телефон — +7 916 123-45-67. Всё верно?")
    reply = say(s, "да, всё верно")
    tomorrow = (utcnow().astimezone(ZoneInfo("Europe/Moscow")) + dt.timedelta(days=1)).date()
    assert s.fields == {"service": "dentist", "visit_at": f"{tomorrow.isoformat()}T10:00", "name": "Анна Петрова",
                        "phone": CALLER}
    assert [(t.name, t.ok) for t in s.tool_calls] == [("calendar_book", True)]
    assert reply.startswith("Готово: вы записаны на ") and reply.endswith("10:00. Ждём вас! До свидания.")
    assert s.state == "close" and s.ended and s.goal_reached and s.escalation is None
    appt = Appointment.get()
    assert appt.client_name == "Анна Петрова" and appt.phone_e164 == CALLER

    # the same slot again: the runtime names the calendar's refusal and alternatives and asks again
    s2 = session_for("appointment_clinic", project, caller_phone="+79035551234")
    s2.greeting()
    for text in ("стоматолог", "завтра в 10:00", "Иван", "этот номер", "да", "да"):
        reply = say(s2, text)
    assert reply.startswith("Это время уже занято. Свободно: ") and reply.endswith("На какой день и время вас записать?")
    assert s2.state == "collect" and "visit_at" not in s2.fields
    say(s2, "завтра в 11:00")
    assert say(s2, "да").startswith("Готово: вы записаны на ")
    assert Appointment.select().count() == 2


def test_lead_qualification_conversation(project):
    s = session_for("lead_qualification", project)
    assert s.greeting().endswith("Как к вам обращаться?")
    assert say(s, "Олег") == "Какую компанию вы представляете?"
    assert say(s, "ООО Ромашка") == "Коротко опишите, какая задача стоит?"
    assert say(s, "Нужна CRM для отдела продаж на двадцать человек").startswith("Какой бюджет")
    assert say(s, "думаю, до миллиона").startswith("По какому номеру")
    assert say(s, "восемь девятьсот три пятьсот пятьдесят пять двенадцать тридцать четыре") == \
        "Телефон: +7 903 555-12-34. Верно?"
    assert say(s, "да") == "Спасибо! Менеджер свяжется с вами в течение рабочего дня. До свидания."
    assert s.fields == {"name": "Олег", "company": "ООО Ромашка", "need": "Нужна CRM для отдела продаж на двадцать человек",
                        "budget": "medium", "phone": "+79035551234"}
    assert [(t.name, t.ok, t.error_message) for t in s.tool_calls] == [("crm_find_or_create_contact", True, None), ("crm_create_deal", True, None),
                                                      ("crm_create_task", True, None)]
    contact = CrmContact.get(CrmContact.phone_e164 == "+79035551234")
    deal = CrmDeal.get()
    assert contact.full_name == "Олег" and deal.title == "Заявка: ООО Ромашка" and deal.contact_id == contact.id
    task = CrmTask.get()
    assert task.deal_id == deal.id and "Олег" in task.title
    assert {link["type"] for link in s.crm_links()} == {"contact", "deal", "task"}


def test_faq_line_answers_from_facts_and_knowledge_then_hands_over(project):
    route = OperatorRoute.create(project=project, name="Поддержка", kind="sip_extension", target="101")
    entry = KbEntry.create(project=project, question="Как подключить телевидение?",
                           answer="Телевидение подключается в личном кабинете в разделе «Услуги». Первый месяц бесплатно.")
    index_entry(entry, None)
    call = Call.create(project=project, direction="inbound", from_number=CALLER, to_number="+74950000000",
                       state="in_progress", trace_id="f" * 32)
    config = get_template("faq_support")["config"]
    config["escalation"]["operator_route_id"] = str(route.id)
    s = AgentSession(config, ctx(project, call_id=call.id), None)
    assert s.greeting().endswith("Какой у вас вопрос?") and s.state == "converse"
    assert say(s, "Сколько стоит тариф Быстрый?") == \
        "Тариф «Быстрый» стоит 900 рублей в месяц, скорость до 500 мегабит в секунду."
    assert say(s, "А как подключить телевидение?") == \
        "Телевидение подключается в личном кабинете в разделе «Услуги». Первый месяц бесплатно."
    assert s.citations and s.citations[0]["source_name"] == "Как подключить телевидение?"
    assert say(s, "Можно ли оплатить криптовалютой?") == \
        "К сожалению, у меня нет точной информации об этом. Могу соединить вас с сотрудником."
    assert say(s, "Да, позовите оператора") == "Соединяю вас с оператором, оставайтесь, пожалуйста, на линии."
    assert s.escalation.reason == "caller_request"
    packet = create_packet(s)
    row = HandoffPacket.get_by_id(packet.id)
    assert row.call_id == call.id and row.operator_route_id == route.id and row.status == "pending"
    assert row.caller_json["phone"] == CALLER and row.reason == "caller_request"
    assert "Клиент: Да, позовите оператора" in row.transcript_excerpt
    assert row.transcript_excerpt.startswith("Клиент: А как подключить телевидение?")  # the last 6 lines
    assert len(row.transcript_excerpt.splitlines()) == 6
    assert transfer_args(row) == {"call_id": str(call.id), "operator_route_id": str(route.id),
                                  "handoff_packet_id": str(row.id)}
    assert whisper_text(row).startswith(f"Перевод от голосового помощника. {CALLER}. Причина: Клиент попросил")
    result = s.finish()
    assert result["outcome"] == "transferred" and Call.get_by_id(call.id).outcome == "transferred"


def test_faq_line_keyword_escalation(project):
    s = session_for("faq_support", project)
    s.greeting()
    say(s, "Я хочу расторгнуть договор")
    assert s.escalation.reason == "keyword"
    assert transfer_args(create_packet(s, call_id=Call.create(
        project=project, direction="inbound", from_number=CALLER, to_number="+7495", trace_id="x").id)) is None


@pytest.mark.parametrize("answer,decision,tool", [
    ("Да, конечно приду", "confirm", "crm_add_note"),
    ("Нет, хочу перенести на другой день", "reschedule", "crm_create_task"),
    ("Нет, отмените, пожалуйста", "cancel", "calendar_cancel"),
])
def test_outbound_reminder_conversation(project, answer, decision, tool):
    resource = CalendarResource.create(project=project, name="Мастер Ольга", working_hours_json={}, slot_minutes=60)
    start = utcnow() + dt.timedelta(days=1)
    appt = Appointment.create(project=project, resource=resource.id, client_name="Мария", phone_e164=CALLER,
                              starts_at=start, ends_at=start + dt.timedelta(hours=1))
    variables = {"client_name": "Мария", "appointment_label": "завтра, 15:00", "appointment_id": str(appt.id)}
    s = session_for("outbound_reminder", project, variables=variables)
    assert s.greeting() == ("Здравствуйте, Мария! Это салон «Лотос», голосовой помощник. Напоминаем о вашей записи "
                            "на завтра, 15:00. Вы придёте?")
    reply = say(s, answer)
    assert s.fields == {"decision": decision}
    assert [(t.name, t.ok) for t in s.tool_calls] == [(tool, True)]
    assert reply.endswith("Спасибо! Хорошего дня, до свидания.") and s.ended and s.goal_reached
    if decision == "cancel":
        assert Appointment.get_by_id(appt.id).status == "cancelled"
    elif decision == "confirm":
        assert CrmNote.get().body == "Клиент подтвердил визит завтра, 15:00"
    else:
        assert CrmTask.get().title == "Перенести запись клиента Мария"


def test_reminder_unclear_answer_escalates_after_two_tries(project):
    s = session_for("outbound_reminder", project, variables={"client_name": "Мария", "appointment_label": "завтра"})
    s.greeting()
    assert say(s, "а кто это?") == ("Я голосовой помощник Салон «Лотос», не человек. Если нужно, соединю вас с "
                                     "сотрудником. Скажите, пожалуйста: вы придёте, хотите перенести или отменить запись?")
    assert say(s, "ммм").startswith("Извините, я не совсем поняла. Скажите, пожалуйста: вы придёте")
    assert s.escalation is None
    say(s, "ээ")
    assert s.escalation is not None and s.escalation.reason == "misunderstanding"
