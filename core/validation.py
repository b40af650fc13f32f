"""Request validation: JSON Schema (2020-12) with field-level Russian messages.

The same schemas are published in the OpenAPI document, so what the docs promise is what the
server enforces. ``validate(schema, data)`` raises ``ValidationFailed`` whose ``details.fields``
maps a dotted path (``limits.max_concurrent``; ``items.3.phone``) to a message a person can act on.
"""
from __future__ import annotations

import re
from typing import Any
from zoneinfo import available_timezones

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError

from core.errors import ValidationFailed

_format_checker = FormatChecker()
_TIMEZONES: frozenset[str] | None = None


@_format_checker.checks("timezone")
def _is_timezone(value: object) -> bool:
    global _TIMEZONES
    if not isinstance(value, str):
        return True
    if _TIMEZONES is None:
        _TIMEZONES = frozenset(available_timezones())
    return value in _TIMEZONES


_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@_format_checker.checks("email")
def _is_email(value: object) -> bool:
    return not isinstance(value, str) or bool(_EMAIL_RE.match(value))


_TYPE_RU = {"string": "строка", "integer": "целое число", "number": "число", "boolean": "true или false",
            "object": "объект", "array": "список", "null": "null"}
_FORMAT_RU = {"email": "Некорректный e-mail", "uuid": "Ожидается UUID",
              "timezone": "Неизвестный часовой пояс (пример: Europe/Moscow)",
              "date-time": "Ожидается дата и время в формате ISO 8601", "uri": "Ожидается URL",
              "ipv4": "Ожидается IPv4-адрес"}


def _message(err: ValidationError) -> str:
    v = err.validator
    if v == "required":
        return "Обязательное поле"
    if v == "type":
        types = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
        return "Ожидается " + " или ".join(_TYPE_RU.get(t, t) for t in types)
    if v == "minLength":
        return "Поле не может быть пустым" if err.validator_value == 1 else \
            f"Не короче {err.validator_value} символов"
    if v == "maxLength":
        return f"Не длиннее {err.validator_value} символов"
    if v == "minimum":
        return f"Не меньше {err.validator_value}"
    if v == "maximum":
        return f"Не больше {err.validator_value}"
    if v == "exclusiveMinimum":
        return f"Больше {err.validator_value}"
    if v == "enum":
        return "Допустимые значения: " + ", ".join(map(str, err.validator_value))
    if v == "const":
        return f"Допустимое значение: {err.validator_value}"
    if v == "pattern":
        return err.schema.get("x-message-ru") or "Неверный формат"
    if v == "format":
        return _FORMAT_RU.get(err.validator_value, "Неверный формат")
    if v == "additionalProperties":
        return "Неизвестное поле"
    if v in ("minItems", "maxItems"):
        return f"Количество элементов: {'не меньше' if v == 'minItems' else 'не больше'} {err.validator_value}"
    if v == "uniqueItems":
        return "Элементы не должны повторяться"
    return err.schema.get("x-message-ru") or "Неверное значение"


def _path(err: ValidationError) -> str:
    parts = [str(p) for p in err.absolute_path]
    if err.validator == "required":
        missing = re.match(r"'(.+?)' is a required property", err.message)
        if missing:
            parts.append(missing.group(1))
    if err.validator == "additionalProperties":
        extra = re.findall(r"'(.+?)'", err.message)
        if extra:
            parts.append(extra[0])
    return ".".join(parts) or "_root"


def field_errors(schema: dict[str, Any], data: Any) -> dict[str, str]:
    """All problems as {path: message}; the first message per path wins."""
    validator = Draft202012Validator(schema, format_checker=_format_checker)
    out: dict[str, str] = {}
    for err in sorted(validator.iter_errors(data), key=lambda e: (len(e.absolute_path), str(e.absolute_path))):
        out.setdefault(_path(err), _message(err))
    return out


def validate(schema: dict[str, Any], data: Any) -> Any:
    """Return data unchanged when valid, else raise ValidationFailed with field messages."""
    problems = field_errors(schema, data)
    if problems:
        raise ValidationFailed(problems)
    return data
