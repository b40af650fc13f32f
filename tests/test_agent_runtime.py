"""The dialog runtime (core.agent.session) driven turn by turn: scripted mode, LLM mode through the
deterministic and HTTP LLM engines, guardrails, escalation policies, handoff packets, call writes."""
from __future__ import annotations

import datetime as dt
import uuid

import pytest

from core.agent.session import AgentSession, SessionContext
from core.engines.base import EngineError, LlmRequest
from core.engines.llm_scripted import ScriptedLlm
from models.calls import Call, ToolInvocation
from models.crm import CrmContact

FIXED_NOW = dt.datetime(2025, 3, 12, 9, 0, tzinfo=dt.timezone.utc)  # Wednesday, 12:00 in Moscow

FIELDS_CFG = {
    "company": "Клиника «Здоровье»",
    "greeting": "Здравствуйте! Клиника «Здоровье».",
    "goal": "Записать на приём",
    "facts": ["Приём терапевта стоит 2000 рублей.", "Клиника работает с 8:00 до 21:00."],
    "fields": [
        {"key": "name", "type": "name", "label": "Имя", "prompt": "Как вас зовут?"},
        {"key": "service", "type": "choice", "label": "Специалист", "prompt": "К какому врачу?",
         "choices": [{"value": "therapist", "label": "Терапевт"},
                     {"value": "dentist", "label": "Стоматолог", "synonyms": ["зубной"]}]},
        {"key": "when", "type": "datetime", "label": "Время", "prompt": "Когда вам удобно?"},
        {"key": "phone", "type": "phone", "label": "Телефон", "prompt": "Ваш телефон?", "confirm": True},
    ],
    "escalation": {"operator_route_id": "6f1c1f5e-8a39-4a53-9f55-1f0e7c7d1a11"},
    "knowledge": {"enabled": False},
}


def ctx(project_id, **kw) -> SessionContext:
    base = dict(project_id=uuid.UUID(str(project_id)), agent_id=None, agent_version_id=None, trace_id="t" * 32,
                caller_phone="+79161234567", channel="playground", now=lambda: FIXED_NOW)
    base.update(kw)
    return SessionContext(**base)


def say(session: AgentSession, text: str, **kw) -> str:
    return "".join(session.respond(text, **kw)).strip()


@pytest.fixture()
def project(tenant):
    return tenant("rt")["project_id"]


def test_voice_loop_config_still_answers_by_its_rules(project):
    """The config the voice loop used before the studio existed keeps working (greeting, rules, DTMF)."""
    cfg = {"greeting": "Здравствуйте, клиника Улыбка.",
           "llm": {"engine": "scripted", "rules": [
               {"keywords": ["запис"], "reply": "Конечно, записываю вас."},
               {"keywords": ["клавиатур"], "reply": "Спасибо, код принят."}], "default_reply": "Повторите, пожалуйста."},
           "voice": {"silence_reprompt_s": 30}}
    s = AgentSession(cfg, ctx(project), llm_stream=lambda r: iter(()))  # config says scripted: LLM never used
    assert s.mode == "scripted"
    assert s.greeting() == "Здравствуйте, клиника Улыбка." and s.state == "converse"
    assert say(s, "Я хочу записаться к стоматологу") == "Конечно, записываю вас."
    assert say(s, "", dtmf="123") == "Спасибо, код принят."
    assert say(s, "бла бла") == "Повторите, пожалуйста."
    assert [m.role for m in s.history] == ["assistant", "user", "assistant", "user", "assistant", "user", "assistant"]


def test_collects_fields_reads_back_and_takes_corrections(project):
    s = AgentSession(FIELDS_CFG, ctx(project), None)
    assert s.greeting() == "Здравствуйте! Клиника «Здоровье». Как вас зовут?"
    assert s.state == "collect"
    assert "хорошо" not in say(s, "Меня зовут Анна Петрова").lower()
    assert s.fields == {"name": "Анна Петрова"}
    # two fields in one breath: the choice and the date+time
    reply = say(s, "К зубному, завтра в 10:30")
    assert s.fields["service"] == "dentist" and s.fields["when"] == "2025-03-13T10:30"
    assert reply == "Ваш телефон?"
    assert say(s, "восемь девятьсот три пятьсот пятьдесят пять двенадцать тридцать четыре") == \
        "Телефон: +7 903 555-12-34. Верно?"
    assert s.state == "confirm"
    assert say(s, "Нет") == "Хорошо, давайте исправим. Ваш телефон?"
    assert "phone" not in s.fields and s.state == "collect"
    say(s, "на этот номер")
    assert s.fields["phone"] == "+79161234567" and s.state == "confirm"
    # with no actions configured, confirming the last field closes the conversation
    assert say(s, "да, верно") == "Спасибо за звонок! До свидания."
    assert s.state == "close" and s.ended and s.goal_reached
    assert list(s.respond("ещё вопрос")) == []


def test_datetime_in_two_turns_and_asks_again_instead_of_guessing(project):
    s = AgentSession({**FIELDS_CFG, "fields": FIELDS_CFG["fields"][2:3]}, ctx(project), None)
    s.greeting()
    assert say(s, "в пятницу") == "Хорошо, 14 марта, пятницу. На какое время?"
    assert say(s, "в три часа дня") == "Спасибо за звонок! До свидания."
    assert s.fields == {"when": "2025-03-14T15:00"}
    s2 = AgentSession({**FIELDS_CFG, "fields": FIELDS_CFG["fields"][1:2]}, ctx(project), None)
    s2.greeting()
    assert say(s2, "к кардиологу") == \
        "Извините, я не совсем поняла. К какому врачу? Варианты: Терапевт, Стоматолог."
    assert s2.fields == {}


def test_honest_robot_answer_then_back_to_the_question(project):
    s = AgentSession(FIELDS_CFG, ctx(project), None)
    s.greeting()
    reply = say(s, "Подождите, а вы робот?")
    assert reply.startswith("Я голосовой помощник Клиника «Здоровье», не человек.")
    assert reply.endswith("Как вас зовут?") and s.state == "collect" and s.escalation is None


def test_questions_answered_only_from_facts(project):
    s = AgentSession(FIELDS_CFG, ctx(project), None)
    s.greeting()
    assert say(s, "Сколько стоит приём терапевта?") == "Приём терапевта стоит 2000 рублей. Как вас зовут?"
    reply = say(s, "А парковка у вас есть?")
    assert reply == "К сожалению, у меня нет точной информации об этом. Могу соединить вас с сотрудником. " \
                    "Как вас зовут?"


def test_caller_asks_for_a_human_escalates_with_handoff_packet(project):
    s = AgentSession(FIELDS_CFG, ctx(project), None)
    s.greeting()
    say(s, "Меня зовут Анна")
    assert say(s, "Соедините меня с оператором") == "Соединяю вас с оператором, оставайтесь, пожалуйста, на линии."
    assert s.state == "escalate" and s.escalation.reason == "caller_request"
    assert s.escalation.operator_route_id == FIELDS_CFG["escalation"]["operator_route_id"]
    packet = s.handoff_packet()
    assert packet["reason"] == "caller_request"
    assert packet["caller"] == {"phone": "+79161234567", "name": "Анна", "crm_contact_id": None}
    assert packet["collected"] == {"name": {"label": "Имя", "value": "Анна"}}
    assert "Имя — Анна" in packet["summary"] and "Перевод на оператора" in packet["summary"]
    assert packet["transcript_excerpt"].splitlines()[-2:] == [
        "Клиент: Соедините меня с оператором",
        "Агент: Соединяю вас с оператором, оставайтесь, пожалуйста, на линии."]
    assert list(s.respond("алло?")) == []  # the transfer is the telephony layer's job now


def test_low_confidence_asks_again_then_escalates(project):
    s = AgentSession({**FIELDS_CFG, "escalation": {"low_confidence_turns": 3}}, ctx(project), None)
    s.greeting()
    assert s.low_confidence() == "Извините, я вас не расслышала. Повторите, пожалуйста."
    say(s, "Меня зовут Анна")  # a clear turn resets the count
    assert s.low_confidence() is not None and s.low_confidence() is not None
    assert s.low_confidence() is None
    assert s.escalation.reason == "low_confidence" and s.escalation.operator_route_id is None


def test_repeated_misunderstanding_escalates_on_the_phone_and_gives_up_elsewhere(project):
    cfg = {**FIELDS_CFG, "escalation": {"misunderstanding_turns": 2}}
    s = AgentSession(cfg, ctx(project, channel="phone"), None)
    s.greeting()
    say(s, "Анна")
    assert say(s, "ммм").startswith("Извините, я не совсем поняла. К какому врачу?")
    say(s, "эээ")
    assert s.escalation.reason == "misunderstanding"
    s2 = AgentSession({**cfg, "escalation": {"misunderstanding_turns": 1}}, ctx(project, channel="playground"), None)
    s2.greeting()
    say(s2, "Анна")
    assert say(s2, "ммм") == "Извините, мне не удаётся вас понять. Пожалуйста, перезвоните позже. До свидания."
    assert s2.ended and s2.escalation is None


def test_negative_sentiment_and_own_keywords_escalate(project):
    s = AgentSession(FIELDS_CFG, ctx(project), None)
    s.greeting()
    say(s, "Это безобразие, я буду жаловаться")
    assert s.escalation.reason == "negative_sentiment"
    cfg = {**FIELDS_CFG, "escalation": {"on_negative_sentiment": False, "keywords": ["расторгнуть"]}}
    s2 = AgentSession(cfg, ctx(project), None)
    s2.greeting()
    say(s2, "Это ужасно")  # sentiment escalation is off
    assert s2.escalation is None
    say(s2, "Хочу расторгнуть договор")
    assert s2.escalation.reason == "keyword" and "расторгнуть" in s2.escalation.reason_text


def test_informal_register(project):
    cfg = {**FIELDS_CFG, "adaptive": {"formality": "informal"}}
    s = AgentSession(cfg, ctx(project), None)
    s.greeting()
    assert say(s, "позови человека") == "Соединяю тебя с оператором, оставайся, пожалуйста, на линии."


def test_barge_in_keeps_only_what_was_heard(project):
    s = AgentSession(FIELDS_CFG, ctx(project), None)
    s.greeting()
    reply = say(s, "Сколько стоит приём терапевта?")
    s.note_heard("Как вас зовут?", "")
    assert s.history[-1].content == "Приём терапевта стоит 2000 рублей."
    s.note_heard("Приём терапевта стоит 2000 рублей.", "Приём терапевта")
    assert s.history[-1].content == "Приём терапевта" and reply


def test_phrase_hints_follow_the_state(project):
    s = AgentSession(FIELDS_CFG, ctx(project), None)
    s.greeting()
    say(s, "Анна")
    assert {"Терапевт", "Стоматолог", "зубной", "оператор"} <= set(s.phrase_hints())
    say(s, "терапевт завтра в 9")
    say(s, "+7 903 555 12 34")
    assert {"да", "нет"} <= set(s.phrase_hints())


def test_state_survives_serialisation(project):
    s = AgentSession(FIELDS_CFG, ctx(project), None)
    s.greeting()
    say(s, "Анна")
    restored = AgentSession.from_state(FIELDS_CFG, ctx(project), None, s.to_state())
    assert say(restored, "к терапевту") == "Когда вам удобно?"
    assert restored.fields == {"name": "Анна", "service": "therapist"}


# ---- LLM mode ----------------------------------------------------------------------------------

def test_llm_answers_pass_the_invented_numbers_guardrail(project):
    llm = ScriptedLlm(rules=[{"keywords": ["терапевт"], "reply": "Приём терапевта стоит 2000 рублей. Ждём вас."},
                             {"keywords": ["узи"], "reply": "УЗИ стоит 3500 рублей."}])
    cfg = {**FIELDS_CFG, "fields": []}
    s = AgentSession(cfg, ctx(project), llm.stream)
    assert s.mode == "llm"
    s.greeting()
    assert say(s, "Сколько стоит приём терапевта?") == "Приём терапевта стоит 2000 рублей. Ждём вас."
    assert say(s, "А сколько стоит УЗИ?") == \
        "К сожалению, у меня нет точной информации об этом. Могу соединить вас с сотрудником."
    assert any(e["type"] == "agent.guardrail" for e in s.events)


def test_llm_request_carries_persona_facts_and_fields(project):
    seen: list[LlmRequest] = []
    llm = ScriptedLlm(default_reply="Понятно.")

    def stream(request: LlmRequest):
        seen.append(request)
        return llm.stream(request)

    s = AgentSession({**FIELDS_CFG, "fields": FIELDS_CFG["fields"][:2], "persona": "Говорит тепло."},
                     ctx(project), stream)
    s.greeting()
    say(s, "Меня зовут Анна")
    # a question while collecting: the LLM answers, then the runtime asks the pending field again
    assert say(s, "Расскажите о клинике") == "Понятно. К какому врачу?"
    request = seen[-1]
    static = request.messages[0].content
    assert request.cache_prefix == 1 and "Говорит тепло." in static and "Приём терапевта стоит 2000 рублей." in static
    assert "робот" in static and "Ничего не выдумывай" in static
    assert "Имя — Анна" in request.messages[-1].content


def test_llm_fills_a_field_the_parsers_missed_and_values_are_still_validated(project):
    llm = ScriptedLlm(rules=[{"keywords": ["зубов"], "reply": "", "json": {"value": "Стоматолог"}},
                             {"keywords": ["сердц"], "reply": "", "json": {"value": "Кардиолог"}}])
    cfg = {**FIELDS_CFG, "fields": FIELDS_CFG["fields"][1:2]}
    s = AgentSession(cfg, ctx(project), llm.stream)
    s.greeting()
    say(s, "мне бы к доктору для зубов")
    assert s.fields == {"service": "dentist"}
    s2 = AgentSession(cfg, ctx(project), llm.stream)
    s2.greeting()
    assert say(s2, "мне по поводу сердца").startswith("Извините, я не совсем поняла.")
    assert s2.fields == {}


def test_llm_tool_call_arguments_are_schema_checked_before_the_tool_runs(project):
    good = ScriptedLlm(rules=[{"keywords": ["клиент"], "reply": "Записала.",
                               "json": {"tool": "crm_find_or_create_contact", "arguments": {"full_name": "Анна"}}}])
    cfg = {"greeting": "Здравствуйте!", "tools": ["crm_find_or_create_contact"], "knowledge": {"enabled": False}}
    s = AgentSession(cfg, ctx(project, sandbox=False), good.stream)
    s.greeting()
    assert say(s, "Запишите меня как клиента, я Анна") == "Записала."
    assert [(t.name, t.ok) for t in s.turn_tool_calls] == [("crm_find_or_create_contact", True)]
    assert CrmContact.get(CrmContact.phone_e164 == "+79161234567").full_name == "Анна"
    assert s.crm_links()[0]["type"] == "contact"
    bad = ScriptedLlm(rules=[{"keywords": ["клиент"], "reply": "Хорошо.",
                              "json": {"tool": "crm_find_or_create_contact", "arguments": {"full_name": 5}}}])
    s2 = AgentSession(cfg, ctx(project), bad.stream)
    s2.greeting()
    assert say(s2, "Запишите меня как клиента") == "Хорошо."
    assert s2.turn_tool_calls == [] and ToolInvocation.select().count() == 1


def test_llm_failure_falls_back_to_the_scripted_scenario(project):
    def broken(request: LlmRequest):
        raise EngineError("llama", "failed", "model crashed")
        yield  # pragma: no cover

    s = AgentSession({**FIELDS_CFG, "fields": []}, ctx(project), broken)
    s.greeting()
    assert say(s, "Сколько стоит приём терапевта?") == "Приём терапевта стоит 2000 рублей."
    assert s.llm_failed and s.mode == "scripted"
    s2 = AgentSession({**FIELDS_CFG, "fields": [], "adaptive": {"fallback": {"on_llm_failure": "escalate"}}},
                      ctx(project), broken)
    s2.greeting()
    say(s2, "Сколько стоит приём?")
    assert s2.escalation.reason == "llm_failed"


def test_http_llm_engine_drives_the_session(project):
    """The real OpenAI-compatible engine over HTTP (fake server) plugs in as llm_stream."""
    from core.engines.llm_http import OpenAiCompatibleLlm
    from tests.fake_openai import FakeOpenAI
    server = FakeOpenAI(default_reply="Клиника работает с 8:00 до 21:00.").start()
    try:
        engine = OpenAiCompatibleLlm(server.base_url, model="fake-model")
        s = AgentSession({**FIELDS_CFG, "fields": []}, ctx(project), engine.stream)
        s.greeting()
        assert say(s, "Во сколько вы работаете?") == "Клиника работает с 8:00 до 21:00."
        body = server.requests[-1].body
        assert body["messages"][0]["role"] == "system" and "Факты" in body["messages"][0]["content"]
    finally:
        server.stop()


# ---- call end ----------------------------------------------------------------------------------

def test_finish_writes_outcome_summary_and_fields_to_the_call(project):
    call = Call.create(project=project, direction="inbound", from_number="+79161234567", to_number="+74950000000",
                       state="in_progress", trace_id="c" * 32)
    s = AgentSession({**FIELDS_CFG, "fields": FIELDS_CFG["fields"][:2]}, ctx(project, call_id=call.id), None)
    s.greeting()
    say(s, "Анна")
    say(s, "стоматолог")
    result = s.finish()
    assert result["outcome"] == "completed" and result["extracted"] == {"name": "Анна", "service": "dentist"}
    row = Call.get_by_id(call.id)
    assert row.outcome == "completed" and row.extracted_json == {"name": "Анна", "service": "dentist"}
    assert "Специалист — Стоматолог" in row.summary and row.metadata_json["agent"]["goal_reached"] is True
    # an outcome the telephony layer already set is not overwritten
    Call.update(outcome="transferred").where(Call.id == call.id).execute()
    s.finish()
    assert Call.get_by_id(call.id).outcome == "transferred"
