"""The tool registry: specs, argument validation, invocation rows, events, sandbox, failures."""
from __future__ import annotations

import uuid
from typing import Any

import pytest

from core.tools import registry
from core.tools.base import Tool, ToolContext, ToolError
from models.calls import CallEvent, CallIssue, Call, ToolInvocation
from models.crm import CrmContact

ALL_TOOLS = {"crm_find_or_create_contact", "crm_create_deal", "crm_create_task", "crm_add_note", "crm_link_call",
             "calendar_free_slots", "calendar_book", "calendar_find_appointments", "calendar_reschedule",
             "calendar_cancel"}


class _Exploding(Tool):
    """A test tool whose implementation has a bug (writes, then crashes)."""

    name = "test_exploding"
    title = "Тестовое действие"
    description = "test"
    parameters = {"type": "object", "properties": {"api_token": {"type": "string"}}, "additionalProperties": False}

    def run(self, ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
        CrmContact.create(project=ctx.project_id, full_name="half-done", phone_e164="+79990000000")
        raise KeyError("bug")


class _Expected(Tool):
    name = "test_expected_failure"
    title = "Ожидаемая ошибка"
    description = "test"

    def run(self, ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
        raise ToolError("CONFLICT", "Это время уже занято", {"alternatives": []})


@pytest.fixture(scope="module", autouse=True)
def _test_tools():
    registry.register(_Exploding())
    registry.register(_Expected())
    yield
    registry._TOOLS.pop("test_exploding", None)
    registry._TOOLS.pop("test_expected_failure", None)


def test_available_tools_and_specs():
    tools = registry.available_tools()
    assert ALL_TOOLS <= set(tools)
    specs = registry.tool_specs(["crm_create_deal", "calendar_book"])
    assert [s["name"] for s in specs] == ["crm_create_deal", "calendar_book"]
    for s in specs:
        assert set(s) == {"name", "description", "parameters"}
        assert s["parameters"]["type"] == "object" and s["parameters"]["additionalProperties"] is False
        assert s["description"]
    assert specs[0]["parameters"]["required"] == ["title"]
    with pytest.raises(ValueError, match="no_such_tool"):
        registry.tool_specs(["crm_create_deal", "no_such_tool"])
    with pytest.raises(ValueError):
        registry.register(type("Dup", (_Expected,), {})())  # same name, another instance


def test_success_writes_row_call_event_and_events_with_trace_id(tool_world):
    p = tool_world.project()
    call = tool_world.call(p)
    ctx = tool_world.ctx(p, call, trace_id="trace-success-1")
    res = registry.invoke(ctx, "crm_find_or_create_contact", {"full_name": "Анна"})
    assert res.ok and res.error_code is None, res
    assert res.data["created"] is True and res.data["contact"]["phone"] == "+79991234567"
    row = ToolInvocation.get_by_id(res.invocation_id)
    assert (row.status, row.tool_name, row.provider, row.trace_id) == \
        ("succeeded", "crm_find_or_create_contact", "builtin", "trace-success-1")
    assert row.call_id == call.id and row.project_id == p.id
    assert row.request_json == {"args": {"full_name": "Анна"}, "sandbox": False}
    assert row.response_json["contact"]["full_name"] == "Анна"
    assert row.external_id == res.data["contact"]["id"]
    assert row.started_at <= row.finished_at and row.duration_ms == res.duration_ms >= 0

    timeline = list(CallEvent.select().where(CallEvent.call == call.id).order_by(CallEvent.seq))
    assert [e.type for e in timeline] == ["tool.started", "tool.succeeded"]
    assert all(e.trace_id == "trace-success-1" for e in timeline)
    assert timeline[1].human_status == "Готово: Найти или создать контакт"

    events = tool_world.events(p)
    assert [e["type"] for e in events] == ["tool.started", "tool.succeeded"]
    for e in events:
        assert e["entity"] == {"type": "call", "id": str(call.id)}
        assert e["project_id"] == str(p.id)
        assert e["ts"].endswith("Z")
        assert e["payload"]["trace_id"] == "trace-success-1"
        assert e["payload"]["invocation_id"] == str(row.id)
        assert e["payload"]["tool_name"] == "crm_find_or_create_contact"
    assert events[0]["payload"]["human_status"] == "Выполняется: Найти или создать контакт"
    assert events[1]["payload"]["from_number"] == call.from_number  # the call's monitor fields


def test_without_a_call_the_entity_is_the_invocation(tool_world):
    p = tool_world.project()
    res = registry.invoke(tool_world.ctx(p, caller_phone="+79990001122"), "crm_find_or_create_contact", {})
    assert res.ok
    assert ToolInvocation.get_by_id(res.invocation_id).call_id is None
    events = tool_world.events(p)
    assert [e["entity"] for e in events] == [{"type": "tool_invocation", "id": str(res.invocation_id)}] * 2
    assert CallEvent.select().count() == 0


def test_invalid_arguments_fail_with_russian_field_messages(tool_world):
    p = tool_world.project()
    call = tool_world.call(p)
    res = registry.invoke(tool_world.ctx(p, call), "crm_create_deal", {"amount": -5, "colour": "red"})
    assert not res.ok and res.error_code == "VALIDATION_FAILED"
    assert "title: Обязательное поле" in res.error_message
    assert "amount: Не меньше 0" in res.error_message
    assert "colour: Неизвестное поле" in res.error_message
    assert res.data["fields"]["title"] == "Обязательное поле"
    row = ToolInvocation.get_by_id(res.invocation_id)
    assert row.status == "failed" and row.error_code == "VALIDATION_FAILED"
    assert row.response_json["error"]["code"] == "VALIDATION_FAILED"
    assert [e["type"] for e in tool_world.events(p)] == ["tool.started", "tool.failed"]
    failed = tool_world.events(p)[1]["payload"]
    assert failed["error_code"] == "VALIDATION_FAILED" and failed["human_status"].startswith("Ошибка: Создать сделку")
    assert CallIssue.select().count() == 0  # the LLM's mistake, not a platform fault
    assert CrmContact.select().count() == 0

    not_an_object = registry.invoke(tool_world.ctx(p, call), "crm_create_deal", ["title"])  # type: ignore[arg-type]
    assert not not_an_object.ok and not_an_object.error_code == "VALIDATION_FAILED"


def test_unknown_tool_is_a_failed_result(tool_world):
    p = tool_world.project()
    res = registry.invoke(tool_world.ctx(p), "crm_delete_everything", {})
    assert not res.ok and res.error_code == "NOT_FOUND" and "crm_delete_everything" in res.error_message
    assert ToolInvocation.get_by_id(res.invocation_id).status == "failed"


def test_expected_failure_keeps_its_code_and_data(tool_world):
    p = tool_world.project()
    call = tool_world.call(p)
    res = registry.invoke(tool_world.ctx(p, call), "test_expected_failure", {})
    assert (res.ok, res.error_code, res.error_message) == (False, "CONFLICT", "Это время уже занято")
    assert res.data == {"alternatives": []}
    assert CallIssue.select().count() == 0


def test_unexpected_exception_is_contained_rolled_back_and_reported(tool_world):
    p = tool_world.project()
    call = tool_world.call(p)
    res = registry.invoke(tool_world.ctx(p, call, trace_id="trace-bug-1"), "test_exploding",
                          {"api_token": "s3cr3t-value"})
    assert not res.ok and res.error_code == "INTERNAL_ERROR"
    assert "Тестовое действие" in res.error_message and "KeyError" not in res.error_message
    assert CrmContact.select().count() == 0  # the half-done write was rolled back
    row = ToolInvocation.get_by_id(res.invocation_id)
    assert row.request_json["args"] == {"api_token": "***"}  # secrets masked
    assert row.status == "failed" and row.error_code == "INTERNAL_ERROR"
    issue = CallIssue.get(CallIssue.call == call.id)
    assert (issue.code, issue.trace_id, issue.details_json["tool_name"]) == \
        ("INTERNAL_ERROR", "trace-bug-1", "test_exploding")
    assert Call.get_by_id(call.id).has_errors is True


def test_sandbox_computes_the_real_result_and_persists_nothing(tool_world):
    p = tool_world.project()
    ctx = tool_world.ctx(p, caller_phone="+79990001122", sandbox=True)
    res = registry.invoke(ctx, "crm_create_deal", {"title": "Пробная заявка", "amount": 1500})
    assert res.ok and res.data["deal"]["title"] == "Пробная заявка" and res.data["deal"]["amount"] == "1500.00"
    assert res.data["deal"]["contact_id"]
    assert CrmContact.select().count() == 0
    from models.crm import CrmDeal
    assert CrmDeal.select().count() == 0
    row = ToolInvocation.get_by_id(res.invocation_id)
    assert row.request_json["sandbox"] is True and row.status == "succeeded"
    assert [e["payload"]["sandbox"] for e in tool_world.events(p)] == [True, True]
    # The same call outside the sandbox persists.
    real = registry.invoke(tool_world.ctx(p, caller_phone="+79990001122"), "crm_create_deal", {"title": "Заявка"})
    assert real.ok and CrmDeal.select().count() == 1


def test_call_of_another_project_is_refused(tool_world):
    mine, theirs = tool_world.project(), tool_world.project()
    their_call = tool_world.call(theirs)
    ctx = ToolContext(project_id=mine.id, trace_id=uuid.uuid4().hex, call_id=their_call.id,
                      caller_phone="+79991234567")
    res = registry.invoke(ctx, "crm_find_or_create_contact", {})
    assert not res.ok and res.error_code == "NOT_FOUND"
    row = ToolInvocation.get_by_id(res.invocation_id)
    assert row.call_id is None and row.project_id == mine.id
    assert CrmContact.select().count() == 0
    assert CallEvent.select().count() == 0 and tool_world.events(theirs) == []


def test_redis_down_does_not_break_the_tool(tool_world):
    import redis as redis_lib
    from core.tools.journal import set_event_redis
    p = tool_world.project()
    call = tool_world.call(p)
    from redis.backoff import NoBackoff
    from redis.retry import Retry
    set_event_redis(redis_lib.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2,
                                    retry=Retry(NoBackoff(), 0)))
    res = registry.invoke(tool_world.ctx(p, call), "crm_find_or_create_contact", {})
    assert res.ok
    assert ToolInvocation.get_by_id(res.invocation_id).status == "succeeded"
    assert CallEvent.select().where(CallEvent.call == call.id).count() == 2  # timeline kept
