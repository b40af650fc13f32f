"""Error catalog (spec 9.1, 12.1) and the exception every layer raises.

The wire shape is always::

    {"error": {"code": ..., "human_title": ..., "human_how_to_fix": [...], "details": {...}}}

The P0 catalog entries of spec 12.1 keep their Russian texts verbatim; the platform codes below them
(auth, validation, not found, permission, rate limit, ...) follow the same rules.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CatalogEntry:
    code: str
    http_status: int
    human_title: str
    human_how_to_fix: tuple[str, ...]


def _e(code: str, status: int, title: str, *fix: str) -> CatalogEntry:
    return CatalogEntry(code, status, title, tuple(fix))


CATALOG: dict[str, CatalogEntry] = {e.code: e for e in [
    # Spec 12.1, verbatim.
    _e("SIP_CONNECT_FAILED", 502, "Не удалось подключить номер",
       "Проверьте адрес/логин/пароль у провайдера.", "Нажмите «Проверить подключение»."),
    _e("TEST_CALL_FAILED", 502, "Тест-звонок не прошёл",
       "Проверьте доступность номера и разрешённые IP.", "Повторите тест."),
    _e("STT_LOW_CONFIDENCE", 422, "Система плохо слышит",
       "Попросите повторить или включите перевод оператору после 2 уточнений."),
    _e("INTEGRATION_AUTH_FAILED", 502, "Интеграция не подключена",
       "Переподключите и нажмите «Проверить»."),
    _e("INTEGRATION_TIMEOUT", 504, "Интеграция недоступна",
       "Повторите позже или переведите на оператора."),
    _e("MESSAGE_PROVIDER_DOWN", 502, "Сообщения не отправляются",
       "Проверьте канал и сделайте тестовую отправку."),
    _e("BUDGET_LIMIT_REACHED", 402, "Достигнут лимит расходов",
       "Увеличьте лимит или остановите кампании."),
    # Platform codes.
    _e("AUTH_REQUIRED", 401, "Требуется вход в систему",
       "Войдите в кабинет заново.", "Для API передайте заголовок Authorization: Bearer <токен>."),
    _e("AUTH_INVALID_CREDENTIALS", 401, "Неверный e-mail или пароль",
       "Проверьте e-mail и пароль.", "Если забыли пароль — обратитесь к администратору организации."),
    _e("AUTH_TOKEN_EXPIRED", 401, "Сессия истекла",
       "Обновите токен через /auth/refresh или войдите заново."),
    _e("AUTH_TOKEN_INVALID", 401, "Недействительный токен",
       "Войдите в систему заново."),
    _e("AUTH_REFRESH_REUSED", 401, "Сессия отозвана из соображений безопасности",
       "Токен обновления уже был использован, все сессии этого входа завершены.",
       "Войдите заново и смените пароль, если это были не вы."),
    _e("AUTH_USER_DISABLED", 403, "Учётная запись отключена",
       "Обратитесь к администратору организации."),
    _e("AUTH_TOO_MANY_ATTEMPTS", 429, "Слишком много попыток входа",
       "Подождите несколько минут и попробуйте снова.",
       "Если забыли пароль — обратитесь к администратору организации."),
    _e("PERMISSION_DENIED", 403, "Недостаточно прав",
       "Попросите владельца или администратора проекта выдать нужную роль."),
    _e("NOT_FOUND", 404, "Не найдено",
       "Проверьте адрес и идентификатор.", "Возможно, объект удалён или принадлежит другому проекту."),
    _e("METHOD_NOT_ALLOWED", 405, "Метод не поддерживается",
       "Проверьте HTTP-метод запроса по документации API (/api/openapi.json)."),
    _e("VALIDATION_FAILED", 422, "Данные заполнены неверно",
       "Исправьте поля, перечисленные в details.fields, и повторите запрос."),
    _e("BAD_REQUEST", 400, "Некорректный запрос",
       "Тело запроса должно быть корректным JSON-объектом.", "Проверьте заголовок Content-Type."),
    _e("CONFLICT", 409, "Конфликт данных",
       "Такой объект уже существует или был изменён. Обновите страницу и повторите."),
    _e("RATE_LIMITED", 429, "Слишком много запросов",
       "Подождите немного и повторите запрос.", "Уменьшите частоту запросов или увеличьте лимит."),
    _e("PAYLOAD_TOO_LARGE", 413, "Слишком большой запрос",
       "Уменьшите размер файла или разбейте его на части."),
    _e("SERVICE_UNAVAILABLE", 503, "Сервис временно недоступен",
       "Повторите через минуту.", "Если ошибка повторяется — проверьте состояние базы данных и Redis."),
    _e("VOICE_CAPACITY_REACHED", 503, "Все голосовые линии заняты",
       "Повторите звонок через несколько минут.",
       "Если это повторяется — увеличьте VOICEAI_MAX_VOICE_CALLS или добавьте сервер для голосового модуля."),
    # Knowledge base: why a document could not be indexed (kb_sources.error_code; details.detail).
    _e("KB_FILE_UNSUPPORTED", 422, "Формат файла не поддерживается",
       "Загрузите документ в формате TXT, MD, HTML, PDF или DOCX."),
    _e("KB_FILE_BROKEN", 422, "Файл повреждён или не читается",
       "Откройте файл на компьютере, сохраните его заново (например, «Сохранить как» PDF или DOCX) "
       "и загрузите ещё раз."),
    _e("KB_FILE_EMPTY", 422, "В файле нет текста",
       "Если это скан, распознайте текст (OCR) и загрузите документ с текстовым слоем."),
    _e("KB_FILE_MISSING", 404, "Файл документа не найден в хранилище",
       "Загрузите документ заново."),
    _e("KB_INDEX_FAILED", 500, "Не удалось проиндексировать документ",
       "Нажмите «Переиндексировать». Если ошибка повторяется — передайте trace_id в поддержку."),
    _e("INTERNAL_ERROR", 500, "Внутренняя ошибка платформы",
       "Повторите действие.", "Если ошибка повторяется — передайте trace_id в поддержку."),
]}


class AppError(Exception):
    """An error with a catalog code; rendered into the spec 9.1 envelope by the web layer."""

    def __init__(self, code: str, details: dict[str, Any] | None = None,
                 http_status: int | None = None, message: str | None = None) -> None:
        if code not in CATALOG:
            raise KeyError(f"unknown error code {code!r}: add it to core.errors.CATALOG")
        self.code = code
        self.entry = CATALOG[code]
        self.details = dict(details or {})
        self.http_status = http_status or self.entry.http_status
        super().__init__(message or f"{code}: {self.entry.human_title}")

    def to_envelope(self, trace_id: str | None = None) -> dict[str, Any]:
        details = dict(self.details)
        if trace_id:
            details["trace_id"] = trace_id
        return error_envelope(self.code, details)


def error_envelope(code: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """Spec 9.1 envelope for a catalog code."""
    entry = CATALOG[code]
    return {"error": {
        "code": entry.code,
        "human_title": entry.human_title,
        "human_how_to_fix": list(entry.human_how_to_fix),
        "details": dict(details or {}),
    }}


class NotFound(AppError):
    def __init__(self, entity: str, entity_id: Any = None) -> None:
        details: dict[str, Any] = {"entity": entity}
        if entity_id is not None:
            details["id"] = str(entity_id)
        super().__init__("NOT_FOUND", details)


class PermissionDenied(AppError):
    def __init__(self, permission: str) -> None:
        super().__init__("PERMISSION_DENIED", {"permission": permission})


class ValidationFailed(AppError):
    """Field-level validation errors: ``fields`` maps a dotted field path to a Russian message."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("VALIDATION_FAILED", {"fields": fields})
