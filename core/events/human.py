"""Russian ``human_status`` labels per event type, for events whose producer did not set one.

The cabinet shows ``payload.human_status`` as is; producers usually know better (``Агент отвечает``),
so a label from here is only the fallback the realtime gateway fills in.
"""
from __future__ import annotations

from typing import Any

from core.events.schema import EventType

LABELS: dict[str, str] = {
    EventType.CALL_STARTED.value: "Звонок начался",
    EventType.CALL_STATE_CHANGED.value: "Состояние звонка изменилось",
    EventType.CALL_ENDED.value: "Звонок завершён",
    EventType.TOOL_STARTED.value: "Агент выполняет действие",
    EventType.TOOL_SUCCEEDED.value: "Действие выполнено",
    EventType.TOOL_FAILED.value: "Действие не удалось",
    EventType.MESSAGE_SENT.value: "Сообщение отправлено",
    EventType.MESSAGE_DELIVERED.value: "Сообщение доставлено",
    EventType.MESSAGE_FAILED.value: "Сообщение не доставлено",
    EventType.CAMPAIGN_PROGRESS.value: "Кампания идёт",
    EventType.CAMPAIGN_FINISHED.value: "Кампания завершена",
    EventType.INTEGRATION_UP.value: "Интеграция работает",
    EventType.INTEGRATION_DOWN.value: "Интеграция недоступна",
    EventType.BUDGET_THRESHOLD_REACHED.value: "Достигнут порог расходов",
    EventType.HANDOFF_REQUESTED.value: "Нужен оператор",
    EventType.STREAM_RESET.value: "Часть событий пропущена — обновите данные",
}
FALLBACK = "Событие"


def label(event_type: str) -> str:
    """The Russian label of an event type (a neutral word for types this version does not know)."""
    return LABELS.get(event_type, FALLBACK)


def with_human_status(event: dict[str, Any]) -> dict[str, Any]:
    """The event with ``payload.human_status`` set (kept when the producer gave a non-empty one)."""
    payload = event.get("payload")
    if not isinstance(payload, dict):
        payload = {}
    if not isinstance(payload.get("human_status"), str) or not payload["human_status"].strip():
        payload = {**payload, "human_status": label(str(event.get("type", "")))}
    return {**event, "payload": payload}
