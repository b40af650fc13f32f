"""The agent definition (``agent_versions.config_json``): schema, defaults, validation, derived rows.

One JSON document describes an agent version; ``CONFIG_SCHEMA`` is its JSON Schema (validated with
``core.validation`` so every problem comes back as ``{"config_json.<path>": "<Russian message>"}``).
``validate_config`` also checks references (tools in the registry, knowledge sources and operator
routes of the same project) and returns the normalized document that is stored: defaults are not
filled in (diffs stay readable), only ``schema_version`` and the legacy ``voice`` section that
``esl_app.voice.VoiceSettings.from_agent_config`` reads, derived from ``adaptive``/``escalation``.

``materialise(version)`` writes the queryable parts (``agent_settings``, ``agent_policies``,
``agent_tools``) from the document whenever a version is saved. ``effective(config)`` is the
document with every default filled in, which is what the runtime reads.
"""
from __future__ import annotations

import copy
import uuid
from typing import Any, Iterable

from core.errors import ValidationFailed
from core.validation import field_errors

CONFIG_SCHEMA_VERSION = 1
FIELD_TYPES = ("name", "phone", "date", "time", "datetime", "text", "choice")
# interruption sensitivity -> caller speech (ms) needed to interrupt the agent (voice.barge_in_min_ms)
BARGE_IN_MS = {"low": 600, "medium": 300, "high": 150}

_STR = {"type": "string", "maxLength": 4000}
_SHORT = {"type": "string", "maxLength": 300}
_KEY = {"type": "string", "pattern": r"^[a-z][a-z0-9_]{0,39}$",
        "x-message-ru": "Латинские строчные буквы, цифры и _, начинается с буквы (пример: phone)"}
_UUID = {"type": "string", "format": "uuid"}
_BOOL = {"type": "boolean"}


def _obj(props: dict[str, Any], required: Iterable[str] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(required), "additionalProperties": False}


_CHOICE = _obj({"value": {"type": "string", "minLength": 1, "maxLength": 100},
                "label": {"type": "string", "minLength": 1, "maxLength": 200},
                "synonyms": {"type": "array", "maxItems": 30, "items": {"type": "string", "maxLength": 100}}},
               ["value", "label"])

_FIELD = _obj({
    "key": _KEY,
    "type": {"type": "string", "enum": list(FIELD_TYPES)},
    "label": {"type": "string", "minLength": 1, "maxLength": 200},
    "prompt": {"type": "string", "minLength": 1, "maxLength": 1000},
    "required": _BOOL,
    "confirm": _BOOL,             # read the value back and wait for "да"
    "choices": {"type": "array", "minItems": 1, "maxItems": 50, "items": _CHOICE},
    "min_length": {"type": "integer", "minimum": 0, "maximum": 1000},
    "max_length": {"type": "integer", "minimum": 1, "maximum": 4000},
    "pattern": {"type": "string", "maxLength": 300},
    "use_caller_phone": _BOOL,    # phone: offer the number the caller is calling from
    "future_only": _BOOL,         # date/datetime: refuse dates in the past
}, ["key", "type", "label", "prompt"])

_ARG_VALUE = {"type": ["string", "number", "integer", "boolean", "null", "object", "array"]}
_ACTION = _obj({
    "tool": {"type": "string", "minLength": 1, "maxLength": 100},
    "args": {"type": "object", "additionalProperties": _ARG_VALUE},
    "when": _obj({"field": _KEY, "equals": {"type": ["string", "number", "boolean"]},
                  "in": {"type": "array", "items": {"type": "string"}}}, ["field"]),
    "save_as": _KEY,
    "say": _STR,                  # said after success; {field}, {save_as.key} placeholders
    "on_failure": {"type": "string", "enum": ["escalate", "apologize", "continue"]},
    # an expected refusal (slot taken, time in the past) asks this field again, naming alternatives
    "retry_field": _KEY,
}, ["tool"])

_RULE = {"type": "object", "properties": {
    "pattern": {"type": "string", "maxLength": 500},
    "keywords": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string", "maxLength": 100}}]},
    "reply": {"type": "string", "maxLength": 2000}, "json": {}}, "additionalProperties": False,
    "required": ["reply"]}

CONFIG_SCHEMA: dict[str, Any] = _obj({
    "schema_version": {"type": "integer", "const": CONFIG_SCHEMA_VERSION},
    "language": {"type": "string", "enum": ["ru-RU", "en-US", "kk-KZ", "uz-UZ"]},
    "persona": _STR,
    "system_prompt": _STR,        # legacy alias of persona (the voice loop reads it)
    "role": _SHORT,
    "company": _SHORT,
    "goal": {"type": "string", "maxLength": 1000},
    "greeting": {"type": "string", "maxLength": 1000},
    "closing": {"type": "string", "maxLength": 1000},
    "facts": {"type": "array", "maxItems": 200, "items": {"type": "string", "minLength": 1, "maxLength": 1000}},
    "topics": {"type": "array", "maxItems": 50, "items": _SHORT},
    "voice_name": {"type": ["string", "null"], "maxLength": 128},
    "fields": {"type": "array", "maxItems": 30, "items": _FIELD},
    "confirm_summary": _BOOL,
    "tools": {"type": "array", "maxItems": 30, "uniqueItems": True,
              "items": {"type": "string", "minLength": 1, "maxLength": 100}},
    "actions": {"type": "array", "maxItems": 20, "items": _ACTION},
    "knowledge": _obj({"enabled": _BOOL,
                       "source_ids": {"type": "array", "maxItems": 100, "uniqueItems": True, "items": _UUID},
                       "limit": {"type": "integer", "minimum": 1, "maximum": 10}}),
    "escalation": _obj({
        "operator_route_id": {"type": ["string", "null"], "format": "uuid"},
        "on_human_request": _BOOL,
        "low_confidence_turns": {"type": "integer", "minimum": 1, "maximum": 10},
        "misunderstanding_turns": {"type": "integer", "minimum": 1, "maximum": 10},
        "on_negative_sentiment": _BOOL,
        "keywords": {"type": "array", "maxItems": 100, "items": {"type": "string", "minLength": 1, "maxLength": 100}},
        "on_tool_failure": _BOOL,
        "message": {"type": "string", "maxLength": 1000},
        "handoff": _obj({"transcript_turns": {"type": "integer", "minimum": 0, "maximum": 50},
                         "include_fields": _BOOL, "include_summary": _BOOL, "include_crm_links": _BOOL}),
    }),
    "adaptive": _obj({
        "speech_rate": {"type": "number", "minimum": 0.5, "maximum": 2.0},
        "interruption_sensitivity": {"type": "string", "enum": ["low", "medium", "high"]},
        "silence_timeout_s": {"type": "number", "minimum": 2, "maximum": 60},
        "max_reprompts": {"type": "integer", "minimum": 0, "maximum": 10},
        "max_call_s": {"type": "integer", "minimum": 30, "maximum": 7200},
        "formality": {"type": "string", "enum": ["formal", "informal"]},
        "fallback": _obj({"on_llm_failure": {"type": "string", "enum": ["scripted", "escalate", "end"]},
                          "message": {"type": "string", "maxLength": 1000}}),
    }),
    "after_call": _obj({
        "summary": _BOOL, "extract": _BOOL, "crm_note": _BOOL,
        "message": _obj({"enabled": _BOOL, "channel": {"type": "string", "enum": ["sms", "whatsapp", "telegram", "email"]},
                         "template": {"type": "string", "maxLength": 1000}}),
    }),
    "voice": {"type": "object", "properties": {
        "low_confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "low_confidence_escalate_after": {"type": "integer", "minimum": 1, "maximum": 10},
        "silence_reprompt_s": {"type": "number", "minimum": 1, "maximum": 120},
        "max_reprompts": {"type": "integer", "minimum": 0, "maximum": 10},
        "barge_in": _BOOL, "barge_in_min_ms": {"type": "integer", "minimum": 50, "maximum": 3000},
        "max_call_s": {"type": "integer", "minimum": 10, "maximum": 7200},
        "turn": {"type": "object", "additionalProperties": {"type": "integer"}},
    }, "additionalProperties": False},
    "llm": _obj({"engine": {"type": "string", "enum": ["platform", "scripted"]},
                 "rules": {"type": "array", "maxItems": 200, "items": _RULE},
                 "default_reply": {"type": "string", "maxLength": 1000},
                 "token_delay_s": {"type": "number", "minimum": 0, "maximum": 1},
                 "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                 "max_tokens": {"type": "integer", "minimum": 16, "maximum": 1024}}),
})

DEFAULTS: dict[str, Any] = {
    "schema_version": CONFIG_SCHEMA_VERSION, "language": "ru-RU", "persona": "", "role": "", "company": "",
    "goal": "", "greeting": "Здравствуйте! Чем могу помочь?", "closing": "Спасибо за звонок! До свидания.",
    "facts": [], "topics": [], "voice_name": None, "fields": [], "confirm_summary": False, "tools": [],
    "actions": [],
    "knowledge": {"enabled": True, "source_ids": [], "limit": 4},
    "escalation": {"operator_route_id": None, "on_human_request": True, "low_confidence_turns": 2,
                   "misunderstanding_turns": 3, "on_negative_sentiment": True, "keywords": [],
                   "on_tool_failure": True, "message": "",
                   "handoff": {"transcript_turns": 6, "include_fields": True, "include_summary": True,
                               "include_crm_links": True}},
    "adaptive": {"speech_rate": 1.0, "interruption_sensitivity": "medium", "silence_timeout_s": 8,
                 "max_reprompts": 2, "max_call_s": 900, "formality": "formal",
                 "fallback": {"on_llm_failure": "scripted", "message": ""}},
    "after_call": {"summary": True, "extract": True, "crm_note": False,
                   "message": {"enabled": False, "channel": "sms", "template": ""}},
    "voice": {},
    "llm": {"engine": "platform", "rules": [], "default_reply": "", "temperature": 0.3, "max_tokens": 160},
}


def default_config() -> dict[str, Any]:
    """The config of a new agent without a template: a polite answering agent."""
    return {"schema_version": CONFIG_SCHEMA_VERSION, "greeting": DEFAULTS["greeting"],
            "persona": "Вежливый голосовой помощник компании.", "goal": "Ответить на вопросы клиента."}


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            out[key] = _merge(base.get(key), value) if key in base else copy.deepcopy(value)
        return out
    return copy.deepcopy(over) if over is not None or base is None else copy.deepcopy(base)


def effective(config: dict[str, Any] | None) -> dict[str, Any]:
    """The document with every default filled in (what the runtime reads)."""
    cfg = _merge(DEFAULTS, config or {})
    if not cfg.get("persona") and cfg.get("system_prompt"):
        cfg["persona"] = cfg["system_prompt"]
    return cfg


def derive_voice(config: dict[str, Any]) -> dict[str, Any]:
    """The legacy ``voice`` section the voice loop reads, from ``adaptive`` and ``escalation``.

    Keys set in ``adaptive``/``escalation`` win (they are what the cabinet edits); keys only the
    ``voice`` section has (low_confidence threshold, barge_in, turn) are kept as written.
    """
    voice = dict(config.get("voice") or {})
    adaptive = config.get("adaptive") or {}
    esc = config.get("escalation") or {}
    mapping = (("silence_timeout_s", "silence_reprompt_s"), ("max_reprompts", "max_reprompts"),
               ("max_call_s", "max_call_s"))
    for src, dst in mapping:
        if src in adaptive:
            voice[dst] = adaptive[src]
    if "interruption_sensitivity" in adaptive:
        voice["barge_in_min_ms"] = BARGE_IN_MS[adaptive["interruption_sensitivity"]]
    if "low_confidence_turns" in esc:
        voice["low_confidence_escalate_after"] = esc["low_confidence_turns"]
    return voice


def _semantic_errors(config: dict[str, Any]) -> dict[str, str]:
    """Rules JSON Schema cannot say: choices for choice fields, unique keys, actions' fields."""
    errors: dict[str, str] = {}
    keys: set[str] = set()
    for i, f in enumerate(config.get("fields") or []):
        if f["key"] in keys:
            errors[f"fields.{i}.key"] = f"Поле «{f['key']}» уже есть выше: ключи полей не должны повторяться"
        keys.add(f["key"])
        if f["type"] == "choice" and not f.get("choices"):
            errors[f"fields.{i}.choices"] = "Для поля с выбором перечислите варианты ответа"
        if f["type"] != "choice" and f.get("choices"):
            errors[f"fields.{i}.choices"] = "Варианты ответа задаются только для поля типа choice"
        if f.get("pattern"):
            import re
            try:
                re.compile(f["pattern"])
            except re.error:
                errors[f"fields.{i}.pattern"] = "Некорректное регулярное выражение"
    enabled_tools = set(config.get("tools") or [])
    saved: set[str] = set()
    for i, a in enumerate(config.get("actions") or []):
        if a["tool"] not in enabled_tools:
            errors[f"actions.{i}.tool"] = f"Инструмент «{a['tool']}» не включён в списке tools этого агента"
        when = a.get("when")
        if when and when["field"] not in keys:
            errors[f"actions.{i}.when.field"] = f"Нет поля «{when['field']}» среди собираемых полей"
        if a.get("retry_field") and a["retry_field"] not in keys:
            errors[f"actions.{i}.retry_field"] = f"Нет поля «{a['retry_field']}» среди собираемых полей"
        if a.get("save_as"):
            saved.add(a["save_as"])
    for i, rule in enumerate((config.get("llm") or {}).get("rules") or []):
        if not rule.get("pattern") and not rule.get("keywords"):
            errors[f"llm.rules.{i}"] = "Правилу нужен шаблон (pattern) или ключевые слова (keywords)"
        if rule.get("pattern"):
            import re
            try:
                re.compile(rule["pattern"])
            except re.error:
                errors[f"llm.rules.{i}.pattern"] = "Некорректное регулярное выражение"
    return errors


def _reference_errors(config: dict[str, Any], project_id: uuid.UUID,
                      tool_names: set[str] | None) -> dict[str, str]:
    from models.kb import KbSource
    from models.telephony import OperatorRoute
    errors: dict[str, str] = {}
    if tool_names is not None:
        for i, name in enumerate(config.get("tools") or []):
            if name not in tool_names:
                errors[f"tools.{i}"] = f"Инструмент «{name}» не найден. Доступные: {', '.join(sorted(tool_names))}"
    errors.update(_action_arg_errors(config))
    sources = (config.get("knowledge") or {}).get("source_ids") or []
    if sources:
        found = {str(s.id) for s in KbSource.select(KbSource.id).where(
            (KbSource.project == project_id) & (KbSource.id.in_([uuid.UUID(s) for s in sources])))}
        for i, sid in enumerate(sources):
            if str(uuid.UUID(sid)) not in found:
                errors[f"knowledge.source_ids.{i}"] = "Источник базы знаний не найден в этом проекте"
    route = (config.get("escalation") or {}).get("operator_route_id")
    if route and not OperatorRoute.select().where((OperatorRoute.project == project_id)
                                                  & (OperatorRoute.id == uuid.UUID(route))).exists():
        errors["escalation.operator_route_id"] = "Маршрут оператора не найден в этом проекте"
    return errors


def _action_arg_errors(config: dict[str, Any]) -> dict[str, str]:
    """Action arguments the tool cannot take: unknown names, constants its schema refuses."""
    from core.tools.registry import available_tools
    tools = available_tools()
    errors: dict[str, str] = {}
    for i, action in enumerate(config.get("actions") or []):
        tool = tools.get(action["tool"])
        if tool is None:
            continue
        props = tool.parameters.get("properties", {})
        for name, value in (action.get("args") or {}).items():
            path = f"actions.{i}.args.{name}"
            if name not in props:
                errors[path] = f"У инструмента «{tool.name}» нет параметра «{name}». Есть: {', '.join(props)}"
                continue
            if isinstance(value, str) and "{" in value:
                continue  # filled from the conversation at run time, validated then
            problem = field_errors(props[name], value)
            if problem:
                errors[path] = next(iter(problem.values()))
    return errors


def registry_tool_names() -> set[str]:
    """Names of the tools an agent may enable (the tool registry's catalogue)."""
    from core.tools.registry import available_tools
    return set(available_tools())


def validate_config(config: Any, project_id: uuid.UUID | None = None, *,
                    tool_names: set[str] | None = None, prefix: str = "config_json") -> dict[str, Any]:
    """Validate an agent config; returns the normalized document to store.

    Raises ``ValidationFailed`` with ``{"<prefix>.<path>": "<Russian message>"}``. With a
    ``project_id`` the references (knowledge sources, operator route) are checked against that
    project; ``tool_names`` defaults to the tool registry's names.
    """
    errors = field_errors(CONFIG_SCHEMA, config)
    if not errors:
        errors = _semantic_errors(config)
    if not errors and project_id is not None:
        errors = _reference_errors(config, project_id, tool_names if tool_names is not None else registry_tool_names())
    if errors:
        raise ValidationFailed({(f"{prefix}.{path}" if path != "_root" else prefix) if prefix else path: msg
                                for path, msg in errors.items()})
    out = copy.deepcopy(config)
    out["schema_version"] = CONFIG_SCHEMA_VERSION
    voice = derive_voice(out)
    if voice:
        out["voice"] = voice
    return out


# ---- materialised rows ----------------------------------------------------------------------------

def materialise(version: Any) -> None:
    """(Re)write ``agent_settings``, ``agent_policies`` and ``agent_tools`` of a version from its config."""
    from models.agents import AgentPolicy, AgentPolicyKind, AgentSettings, AgentTool
    cfg = effective(version.config_json)
    adaptive, esc, voice = cfg["adaptive"], cfg["escalation"], derive_voice(cfg)
    AgentSettings.delete().where(AgentSettings.agent_version == version.id).execute()
    AgentPolicy.delete().where(AgentPolicy.agent_version == version.id).execute()
    AgentTool.delete().where(AgentTool.agent_version == version.id).execute()
    AgentSettings.create(
        project=version.project_id, agent_version=version.id, language=cfg["language"],
        speech_rate=float(adaptive["speech_rate"]), interruption_sensitivity=adaptive["interruption_sensitivity"],
        silence_timeout_ms=int(float(adaptive["silence_timeout_s"]) * 1000),
        max_reprompts=int(adaptive["max_reprompts"]),
        stt_min_confidence=float(voice.get("low_confidence", 0.45)),
        max_call_duration_s=int(adaptive["max_call_s"]), formality=adaptive["formality"],
        greeting_text=cfg["greeting"], llm_engine=cfg["llm"]["engine"],
        llm_temperature=float(cfg["llm"]["temperature"]), voice=cfg.get("voice_name"),
        settings_json={"fallback": adaptive["fallback"], "after_call": cfg["after_call"], "voice": voice})
    route = esc.get("operator_route_id")
    policies = [
        (AgentPolicyKind.ESCALATION, "Перевод на оператора", 10,
         {k: esc[k] for k in ("on_human_request", "low_confidence_turns", "misunderstanding_turns",
                              "on_negative_sentiment", "keywords", "on_tool_failure", "message", "handoff")},
         route),
        (AgentPolicyKind.FALLBACK, "Сбой LLM и непонимание", 20,
         {**adaptive["fallback"], "max_reprompts": adaptive["max_reprompts"]}, None),
        (AgentPolicyKind.GUARDRAIL, "Только факты из настроек и базы знаний", 30,
         {"facts": len(cfg["facts"]), "topics": cfg["topics"]}, None),
        (AgentPolicyKind.DATA_COLLECTION, "Сбор данных", 40,
         {"fields": [{"key": f["key"], "type": f["type"], "required": f.get("required", True),
                      "confirm": f.get("confirm", False)} for f in cfg["fields"]],
          "confirm_summary": cfg["confirm_summary"]}, None),
        (AgentPolicyKind.KNOWLEDGE, "База знаний", 50, dict(cfg["knowledge"]), None),
    ]
    for kind, name, priority, body, route_id in policies:
        AgentPolicy.create(project=version.project_id, agent_version=version.id, kind=kind.value, name=name,
                           priority=priority, config_json=body,
                           operator_route=uuid.UUID(route_id) if route_id else None)
    from core.tools.registry import available_tools
    tools = available_tools(version.project_id)
    for name in cfg["tools"]:
        tool = tools.get(name)
        AgentTool.create(project=version.project_id, agent_version=version.id, tool_name=name,
                         provider=tool.provider if tool else "builtin",
                         description=tool.description if tool else "",
                         config_json={"parameters": tool.parameters if tool else {},
                                      "actions": [a for a in cfg["actions"] if a["tool"] == name]},
                         enabled=tool is not None)
