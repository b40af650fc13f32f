"""A deterministic LLM: rules over the caller's last utterance, replies streamed word by word.

Used where a real model is unwanted or unavailable: fallback scenarios (the model crashed, the
call must still be handled politely), benchmarks of the rest of the pipeline (STT, TTS, telephony)
with a known, constant LLM cost (``token_delay_s``), and tests. No randomness: the same request
always gives the same chunks.

JSON-schema requests (tool calls, extraction) are answered from a matching rule's ``json``, then
from ``json_answers`` (keyed by the schema's ``title``), else with the smallest object that
validates against the schema (required properties with type-appropriate defaults).
"""
from __future__ import annotations

import copy
import json
import re
import time
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

from core.engines.base import EngineError, LlmChunk, LlmEngine, LlmRequest, Message

DEFAULT_REPLY = "Извините, я не расслышала. Повторите, пожалуйста."


@dataclass
class Rule:
    """One scripted answer.

    ``pattern`` is a case-insensitive regex searched in the last user message; ``keywords`` match
    when any of them is a substring (case-insensitive, "ё" read as "е"). A rule with both needs
    either. ``reply`` is a ``str.format`` template with ``{user}`` (the user message) and the
    regex's named groups; unknown fields render empty. ``json`` answers schema requests.
    """

    reply: str
    pattern: str | None = None
    keywords: tuple[str, ...] = ()
    json: Any = None

    def __post_init__(self) -> None:
        if not self.pattern and not self.keywords:
            raise ValueError("a rule needs a pattern or keywords")
        self.keywords = tuple(_fold(k) for k in self.keywords)
        self._regex = re.compile(self.pattern, re.IGNORECASE | re.UNICODE) if self.pattern else None

    def match(self, text: str) -> dict[str, str] | None:
        """Template fields when the rule applies to ``text``, else None."""
        if self._regex is not None:
            found = self._regex.search(text)
            if found:
                return {k: v or "" for k, v in found.groupdict().items()}
        folded = _fold(text)
        if any(k in folded for k in self.keywords):
            return {}
        return None


RuleLike = Rule | Mapping[str, Any] | tuple


class ScriptedLlm(LlmEngine):
    """Rules -> reply templates; deterministic, optionally paced like a real model."""

    name = "scripted"

    def __init__(self, rules: Sequence[RuleLike] = (), default_reply: str = DEFAULT_REPLY,
                 token_delay_s: float = 0.0, json_answers: Mapping[str, Any] | None = None,
                 name: str | None = None) -> None:
        self.rules = [_as_rule(r) for r in rules]
        self.default_reply = default_reply
        self.token_delay_s = max(0.0, float(token_delay_s))
        self.json_answers = dict(json_answers or {})
        if name:
            self.name = name

    def reply_for(self, request: LlmRequest) -> str:
        """The full reply text (before ``stop``/``max_tokens``), for callers that want no stream."""
        user = last_user_message(request.messages)
        for rule in self.rules:
            fields = rule.match(user)
            if fields is None:
                continue
            if request.json_schema is not None:
                if rule.json is not None:
                    return json.dumps(rule.json, ensure_ascii=False)
                continue
            return _render(rule.reply, {"user": user, **fields})
        if request.json_schema is not None:
            title = request.json_schema.get("title")
            if isinstance(title, str) and title in self.json_answers:
                return json.dumps(self.json_answers[title], ensure_ascii=False)
            return json.dumps(minimal_instance(request.json_schema), ensure_ascii=False)
        return _render(self.default_reply, {"user": user})

    def _complete(self, request: LlmRequest) -> Iterator[LlmChunk]:
        text = self.reply_for(request)
        finish = "stop"
        if request.json_schema is None:
            for stop in request.stop:
                cut = text.find(stop) if stop else -1
                if cut >= 0:
                    text = text[:cut]
        # JSON answers stream in word-sized pieces too, but are never cut: a cut object is useless.
        pieces = re.findall(r"\s*\S+", text) or []
        if request.json_schema is None and len(pieces) > request.max_tokens:
            pieces, finish = pieces[:max(0, request.max_tokens)], "length"
        for piece in pieces:
            if self.token_delay_s:
                time.sleep(self.token_delay_s)
            yield LlmChunk(piece)
        prompt = sum(_count_words(m.content) for m in request.messages)
        cached = sum(_count_words(m.content) for m in request.messages[:request.cache_prefix])
        yield LlmChunk("", finish_reason=finish, prompt_tokens=prompt, completion_tokens=len(pieces),
                       cached_tokens=cached)


def last_user_message(messages: Sequence[Message]) -> str:
    """The text the caller said last (rules look only at it)."""
    for message in reversed(messages):
        if message.role == "user":
            return message.content
    return ""


def minimal_instance(schema: Mapping[str, Any], root: Mapping[str, Any] | None = None) -> Any:
    """The smallest plain value valid against a (reasonable) JSON schema: required fields only.

    Covers what tool and extraction schemas use: type, const, enum, default, required,
    properties, items/minItems, min/max, minLength, anyOf/oneOf/allOf, local ``$ref``.
    Patterns and formats other than a few common ones are not generated.
    """
    root = root if root is not None else schema
    if not isinstance(schema, Mapping):
        return None
    if "$ref" in schema:
        return minimal_instance(_resolve_ref(root, schema["$ref"]), root)
    if "const" in schema:
        return copy.deepcopy(schema["const"])
    if "default" in schema:
        return copy.deepcopy(schema["default"])
    if schema.get("enum"):
        return copy.deepcopy(schema["enum"][0])
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return minimal_instance(schema[key][0], root)
    if schema.get("allOf"):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            part = _resolve_ref(root, part["$ref"]) if "$ref" in part else part
            for k, v in part.items():
                if k == "required":
                    merged["required"] = list(dict.fromkeys([*merged.get("required", []), *v]))
                elif k == "properties":
                    merged["properties"] = {**merged.get("properties", {}), **v}
                else:
                    merged.setdefault(k, v)
        return minimal_instance(merged, root)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "null"
    if kind == "object":
        props = schema.get("properties", {})
        return {name: minimal_instance(props.get(name, {}), root) for name in schema.get("required", [])}
    if kind == "array":
        count = int(schema.get("minItems", 0))
        return [minimal_instance(schema.get("items", {}), root) for _ in range(count)]
    if kind == "string":
        fmt = schema.get("format")
        value = {"date": "1970-01-01", "date-time": "1970-01-01T00:00:00Z", "time": "00:00:00Z",
                 "email": "user@example.com", "uri": "https://example.com/",
                 "uuid": "00000000-0000-0000-0000-000000000000"}.get(fmt, "")
        return value + "x" * max(0, int(schema.get("minLength", 0)) - len(value))
    if kind in ("integer", "number"):
        value: float = 0
        if "minimum" in schema:
            value = max(value, schema["minimum"]) if "maximum" not in schema else schema["minimum"]
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            value = schema["exclusiveMinimum"] + 1
        if "maximum" in schema and value > schema["maximum"]:
            value = schema["maximum"]
        if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
            value = schema["exclusiveMaximum"] - 1
        return int(value) if kind == "integer" else value
    if kind == "boolean":
        return False
    return None


def _resolve_ref(root: Mapping[str, Any], ref: str) -> Mapping[str, Any]:
    if not ref.startswith("#"):
        raise EngineError("scripted", "failed", f"only local $ref is supported: {ref}")
    node: Any = root
    for part in [p for p in ref[1:].split("/") if p]:
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _as_rule(rule: RuleLike) -> Rule:
    if isinstance(rule, Rule):
        return rule
    if isinstance(rule, Mapping):
        keywords = rule.get("keywords") or ()
        return Rule(reply=rule.get("reply", ""), pattern=rule.get("pattern"),
                    keywords=tuple([keywords] if isinstance(keywords, str) else keywords),
                    json=rule.get("json"))
    pattern, reply = rule  # (regex, reply)
    return Rule(reply=reply, pattern=pattern)


class _Fields(dict):
    def __missing__(self, key: str) -> str:
        return ""


def _render(template: str, fields: dict[str, str]) -> str:
    try:
        return template.format_map(_Fields(fields))
    except (ValueError, IndexError, AttributeError):
        return template  # a literal brace in the reply: say it as written


def _fold(text: str) -> str:
    return text.lower().replace("ё", "е")


def _count_words(text: str) -> int:
    return len(text.split())
