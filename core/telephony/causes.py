"""Why a call ended, in words a customer understands: FreeSWITCH hangup causes and SIP codes.

``describe_cause`` turns ``Hangup-Cause`` (plus the SIP status FreeSWITCH saw, when it has one:
``variable_sip_invite_failure_status`` / ``variable_sip_term_status``) into a :class:`CauseInfo`:
the call's :class:`CallOutcome` (what the Inbox, campaign statistics and retry rules use), a short
Russian title and a Russian how-to-fix. The SIP status wins over the cause for unanswered calls
because it is more specific: ``CALL_REJECTED`` is a person pressing "decline" when the provider
sent 603, but a provider refusing the call (balance, caller ID, direction) when it sent 403. Causes
FreeSWITCH decides itself (``NO_ANSWER`` after ``originate_timeout``, which comes with a 487 for its
own CANCEL) keep precedence over the SIP status.

``originate_error_outcome`` reads the ``-ERR USER_BUSY`` body of a ``BACKGROUND_JOB`` answering
``bgapi originate``; ``human_status`` gives the short live status of a call for the Live monitor
(spec 10.2 ``payload.human_status``).
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass, replace

__all__ = ["CallOutcome", "CallState", "CauseInfo", "describe_cause", "originate_error_outcome",
           "human_status", "outcome_label", "CAUSES", "SIP_CODES"]


# One outcome vocabulary for the whole platform: the one stored in ``calls.outcome``.
from models.calls import CallOutcome  # noqa: E402


_OUTCOME_LABELS = {
    CallOutcome.ANSWERED: "Соединение прервалось",
    CallOutcome.COMPLETED: "Разговор состоялся",
    CallOutcome.BUSY: "Занято",
    CallOutcome.NO_ANSWER: "Нет ответа",
    CallOutcome.FAILED: "Ошибка вызова",
    CallOutcome.REJECTED: "Вызов отклонён",
    CallOutcome.UNALLOCATED: "Номер не существует",
    CallOutcome.GATEWAY_DOWN: "SIP-подключение недоступно",
    CallOutcome.CANCELLED: "Вызов отменён",
    CallOutcome.VOICEMAIL: "Автоответчик",
    CallOutcome.TRANSFERRED: "Переведён на оператора",
    CallOutcome.CALLBACK: "Назначен обратный звонок",
    CallOutcome.ABANDONED: "Клиент положил трубку",
}


def outcome_label(outcome: CallOutcome | str) -> str:
    """Russian label of an outcome for lists and filters (``busy`` -> «Занято»)."""
    return _OUTCOME_LABELS[CallOutcome(outcome)]


class CallState(str, enum.Enum):
    """Live state of a call (``call.state_changed`` events)."""

    RINGING = "ringing"
    ANSWERED = "answered"
    AGENT_SPEAKING = "agent_speaking"
    LISTENING = "listening"
    THINKING = "thinking"
    TRANSFERRING = "transferring"
    OPERATOR = "operator"
    ON_HOLD = "on_hold"
    ENDED = "ended"


_STATE_TEXT = {
    CallState.RINGING: "Звонит",
    CallState.ANSWERED: "Разговор с агентом",
    CallState.AGENT_SPEAKING: "Агент отвечает",
    CallState.LISTENING: "Агент слушает",
    CallState.THINKING: "Агент думает",
    CallState.TRANSFERRING: "Перевод на оператора",
    CallState.OPERATOR: "Разговор с оператором",
    CallState.ON_HOLD: "На удержании",
    CallState.ENDED: "Звонок завершён",
}


def human_status(state: CallState | str) -> str:
    """Short Russian status of a live call; «Неизвестное состояние» for a state this build lacks.

    Never raises: the Live monitor must keep rendering when a newer app sends a new state.
    """
    try:
        return _STATE_TEXT[CallState(state)]
    except ValueError:
        return "Неизвестное состояние"


@dataclass(frozen=True)
class CauseInfo:
    """A hangup explained. ``error_code`` names a ``core.errors`` catalog entry when the cause is a
    configuration problem the customer must fix; ``retryable`` tells campaigns to try again later."""

    cause: str
    outcome: CallOutcome
    title: str
    how_to_fix: str
    retryable: bool = False
    sip_code: int | None = None
    error_code: str | None = None


_O = CallOutcome
_RETRY_LATER = "Ничего делать не нужно: при обзвоне номер будет набран повторно по правилам кампании."
_CHECK_TRUNK = ("Проверьте SIP-подключение в разделе «Номера» и нажмите «Проверить подключение»; "
                "если ошибка повторяется — обратитесь к провайдеру телефонии.")


def _c(cause: str, outcome: CallOutcome, title: str, fix: str, retryable: bool = False,
       error_code: str | None = None) -> CauseInfo:
    return CauseInfo(cause, outcome, title, fix, retryable, None, error_code)


# Unanswered calls, by FreeSWITCH hangup cause (Q.850 names as FreeSWITCH prints them).
CAUSES: dict[str, CauseInfo] = {c.cause: c for c in [
    _c("NORMAL_CLEARING", _O.NO_ANSWER, "Звонок завершён до ответа",
       "Собеседник положил трубку, не ответив. " + _RETRY_LATER, True),
    _c("NORMAL_UNSPECIFIED", _O.NO_ANSWER, "Звонок завершён до ответа",
       "Собеседник или сеть завершили вызов без указания причины. " + _RETRY_LATER, True),
    _c("USER_BUSY", _O.BUSY, "Абонент занят", _RETRY_LATER, True),
    _c("NO_ANSWER", _O.NO_ANSWER, "Абонент не ответил",
       "Звонок не приняли за отведённое время. " + _RETRY_LATER, True),
    _c("NO_USER_RESPONSE", _O.NO_ANSWER, "Абонент недоступен",
       "Телефон абонента не отвечает сети (выключен или вне зоны). " + _RETRY_LATER, True),
    _c("SUBSCRIBER_ABSENT", _O.NO_ANSWER, "Абонент недоступен",
       "Телефон выключен или вне зоны действия сети. " + _RETRY_LATER, True),
    _c("PROGRESS_TIMEOUT", _O.NO_ANSWER, "Сеть не начала вызов вовремя",
       "Провайдер не сообщил о начале вызова. " + _RETRY_LATER, True),
    _c("NO_PICKUP", _O.NO_ANSWER, "Абонент не ответил", _RETRY_LATER, True),
    _c("CALL_REJECTED", _O.REJECTED, "Вызов отклонён",
       "Абонент сбросил звонок или провайдер отказал в вызове. Если так отклоняются все звонки — "
       "проверьте у провайдера баланс, разрешённые направления и номер, который передаётся как номер "
       "звонящего."),
    _c("UNALLOCATED_NUMBER", _O.UNALLOCATED, "Номер не существует",
       "Проверьте номер: в нём ошибка или он больше не обслуживается. Повторный набор не поможет."),
    _c("NUMBER_CHANGED", _O.UNALLOCATED, "Номер изменился",
       "Абонент сменил номер. Обновите контакт."),
    _c("INVALID_NUMBER_FORMAT", _O.UNALLOCATED, "Неверный формат номера",
       "Номер набран не полностью или с ошибкой. Проверьте, что номер сохранён в формате "
       "+7 XXX XXX-XX-XX."),
    _c("NO_ROUTE_DESTINATION", _O.FAILED, "Нет маршрута для номера",
       "FreeSWITCH не нашёл, куда направить вызов: проверьте, что номер добавлен и включён в разделе "
       "«Номера», и примените настройки телефонии; для исходящих — что у проекта есть SIP-подключение.",
       False, "TEST_CALL_FAILED"),
    _c("NORMAL_TEMPORARY_FAILURE", _O.FAILED, "Временный сбой связи",
       "Провайдер или сеть временно не смогли соединить вызов. " + _RETRY_LATER + " Если так "
       "завершаются все звонки — " + _CHECK_TRUNK[0].lower() + _CHECK_TRUNK[1:], True),
    _c("RECOVERY_ON_TIMER_EXPIRE", _O.FAILED, "Провайдер не ответил вовремя",
       "На запрос вызова не пришёл ответ: провайдер недоступен по сети или перегружен. Проверьте "
       "адрес провайдера, доступ в интернет и межсетевой экран (порты SIP).", True,
       "TEST_CALL_FAILED"),
    _c("GATEWAY_DOWN", _O.GATEWAY_DOWN, "SIP-подключение недоступно",
       "Регистрация у провайдера не активна или провайдер не отвечает на проверки. " + _CHECK_TRUNK,
       True, "SIP_CONNECT_FAILED"),
    _c("INCOMPATIBLE_DESTINATION", _O.FAILED, "Несовместимые настройки связи",
       "Провайдер не принял предложенные кодеки. Проверьте, что провайдер поддерживает G.711 "
       "(PCMA/PCMU), или сообщите администратору FreeSWITCH.", False, "TEST_CALL_FAILED"),
    _c("ORIGINATOR_CANCEL", _O.CANCELLED, "Вызов отменён до ответа",
       "Звонящий положил трубку или платформа прекратила набор до ответа. Действий не требуется."),
    _c("LOSE_RACE", _O.CANCELLED, "Ответили на другом телефоне",
       "Вызов одновременно шёл на несколько телефонов, и ответили на другом. Действий не требуется."),
    _c("PICKED_OFF", _O.CANCELLED, "Вызов перехвачен",
       "Звонок принял другой сотрудник. Действий не требуется."),
    _c("MANAGER_REQUEST", _O.CANCELLED, "Вызов остановлен платформой",
       "Звонок завершила платформа или администратор (например, остановка кампании). Действий не "
       "требуется."),
    _c("DESTINATION_OUT_OF_ORDER", _O.FAILED, "Телефон абонента неисправен или недоступен",
       "Сеть не может доставить вызов до абонента. " + _RETRY_LATER, True),
    _c("NETWORK_OUT_OF_ORDER", _O.FAILED, "Сбой сети",
       "Сеть провайдера или связь с ней нарушена. " + _RETRY_LATER + " Если сбой массовый — "
       "проверьте доступ к провайдеру.", True),
    _c("MEDIA_TIMEOUT", _O.FAILED, "Пропал звук",
       "От собеседника перестал приходить звук (RTP). Проверьте межсетевой экран: должен быть открыт "
       "диапазон RTP-портов 16384–32768/UDP, и настройки NAT (внешний IP).", True),
    _c("ALLOTTED_TIMEOUT", _O.NO_ANSWER, "Истекло время вызова",
       "Вызов прерван по ограничению длительности. " + _RETRY_LATER, True),
    _c("USER_NOT_REGISTERED", _O.FAILED, "Телефон не зарегистрирован",
       "Телефон или софтфон оператора не подключён к FreeSWITCH. Включите его и проверьте логин и "
       "пароль внутреннего номера.", True),
    _c("EXCHANGE_ROUTING_ERROR", _O.FAILED, "Ошибка маршрутизации у провайдера",
       "Вызов зациклился или превысил число переадресаций. Проверьте переадресации на номере и "
       "маршруты у провайдера.", False, "TEST_CALL_FAILED"),
    _c("NORMAL_CIRCUIT_CONGESTION", _O.FAILED, "Линии провайдера перегружены",
       "Нет свободных линий у провайдера или превышен лимит одновременных звонков. Уменьшите число "
       "одновременных звонков кампании или расширьте лимит у провайдера.", True),
    _c("SWITCH_CONGESTION", _O.FAILED, "FreeSWITCH перегружен",
       "Превышен лимит одновременных звонков или звонков в секунду FreeSWITCH. Уменьшите скорость "
       "обзвона.", True),
    _c("REQUESTED_CHAN_UNAVAIL", _O.FAILED, "Нет свободной линии",
       "Провайдер не выделил линию для звонка. " + _RETRY_LATER, True),
    _c("SERVICE_UNAVAILABLE", _O.FAILED, "Услуга недоступна",
       "Провайдер временно не предоставляет эту услугу. " + _RETRY_LATER, True),
    _c("FACILITY_REJECTED", _O.REJECTED, "Провайдер отклонил вызов",
       "Провайдер не поддерживает запрошенную функцию. Обратитесь к провайдеру.", False,
       "TEST_CALL_FAILED"),
    _c("BEARERCAPABILITY_NOTAVAIL", _O.FAILED, "Несовместимые настройки связи",
       "Провайдер не поддерживает такой тип вызова. Обратитесь к провайдеру.", False,
       "TEST_CALL_FAILED"),
    _c("INTERWORKING", _O.FAILED, "Ошибка на стороне сети",
       "Сети не смогли согласовать вызов. " + _RETRY_LATER, True),
    _c("MANDATORY_IE_MISSING", _O.FAILED, "Некорректный запрос вызова",
       "Провайдер счёл запрос неполным. Проверьте формат номеров и настройки подключения.", False,
       "TEST_CALL_FAILED"),
    _c("SYSTEM_SHUTDOWN", _O.FAILED, "FreeSWITCH перезапускался",
       "Звонок прервался из-за остановки FreeSWITCH. " + _RETRY_LATER, True),
    _c("CRASH", _O.FAILED, "Сбой FreeSWITCH",
       "FreeSWITCH аварийно завершил вызов. Передайте время звонка администратору.", True),
    _c("BLIND_TRANSFER", _O.COMPLETED, "Звонок переведён", "Действий не требуется."),
    _c("ATTENDED_TRANSFER", _O.COMPLETED, "Звонок переведён", "Действий не требуется."),
]}

# Answered calls: only the wording differs; the outcome is ``completed`` for an ordinary end and
# ``answered`` (connected, then cut off) for a failure.
_ANSWERED_NORMAL = {"NORMAL_CLEARING", "NORMAL_UNSPECIFIED", "MANAGER_REQUEST", "ORIGINATOR_CANCEL",
                    "ALLOTTED_TIMEOUT", "BLIND_TRANSFER", "ATTENDED_TRANSFER", "LOSE_RACE",
                    "PICKED_OFF", "USER_BUSY", "CALL_REJECTED", "NO_ANSWER", "NO_USER_RESPONSE"}
_ANSWERED_TEXT = {
    "NORMAL_CLEARING": ("Разговор завершён", "Действий не требуется."),
    "MANAGER_REQUEST": ("Разговор завершён платформой",
                        "Звонок завершил агент, оператор или администратор. Действий не требуется."),
    "ALLOTTED_TIMEOUT": ("Достигнута максимальная длительность разговора",
                         "Звонок завершён по лимиту длительности. При необходимости увеличьте лимит "
                         "в настройках агента."),
    "MEDIA_TIMEOUT": ("Пропал звук во время разговора",
                      "От собеседника перестал приходить звук (RTP), и звонок завершён. Проверьте "
                      "межсетевой экран (RTP-порты 16384–32768/UDP), NAT и качество канала связи."),
}


def _sip(code: int, outcome: CallOutcome, title: str, fix: str, retryable: bool = False,
         error_code: str | None = None) -> CauseInfo:
    return CauseInfo("", outcome, title, fix, retryable, code, error_code)


# Unanswered calls, by the SIP final response FreeSWITCH received.
SIP_CODES: dict[int, CauseInfo] = {c.sip_code: c for c in [  # type: ignore[misc]
    _sip(401, _O.FAILED, "Провайдер не принял логин и пароль",
         "Проверьте логин и пароль SIP-подключения в разделе «Номера» и нажмите «Проверить "
         "подключение».", False, "SIP_CONNECT_FAILED"),
    _sip(407, _O.FAILED, "Провайдер не принял логин и пароль",
         "Проверьте логин, пароль и realm (домен) SIP-подключения и нажмите «Проверить подключение».",
         False, "SIP_CONNECT_FAILED"),
    _sip(402, _O.REJECTED, "Провайдер требует оплату",
         "Пополните баланс у провайдера телефонии.", False, "TEST_CALL_FAILED"),
    _sip(403, _O.REJECTED, "Провайдер запретил вызов",
         "Проверьте у провайдера баланс, разрешённые направления и номер, который передаётся как "
         "номер звонящего (Caller ID); при авторизации по IP — что IP-адрес сервера разрешён у "
         "провайдера.", False, "TEST_CALL_FAILED"),
    _sip(404, _O.UNALLOCATED, "Номер не найден",
         "Провайдер не знает такого номера. Проверьте номер; повторный набор не поможет."),
    _sip(408, _O.NO_ANSWER, "Абонент не ответил вовремя",
         "Сеть не дождалась ответа абонента. " + _RETRY_LATER, True),
    _sip(410, _O.UNALLOCATED, "Номер больше не обслуживается", "Обновите контакт."),
    _sip(480, _O.NO_ANSWER, "Абонент временно недоступен",
         "Телефон выключен, вне зоны или не отвечает. " + _RETRY_LATER, True),
    _sip(484, _O.UNALLOCATED, "Номер набран не полностью",
         "Проверьте, что номер сохранён полностью, в формате +7 XXX XXX-XX-XX."),
    _sip(486, _O.BUSY, "Абонент занят", _RETRY_LATER, True),
    _sip(487, _O.CANCELLED, "Вызов отменён до ответа",
         "Набор прекращён до ответа (истекло время ожидания или вызов отменён). Действий не "
         "требуется."),
    _sip(488, _O.FAILED, "Несовместимые кодеки",
         "Провайдер не принял предложенные аудиокодеки. Проверьте, что провайдер поддерживает G.711 "
         "(PCMA/PCMU).", False, "TEST_CALL_FAILED"),
    _sip(500, _O.FAILED, "Внутренняя ошибка у провайдера", _RETRY_LATER, True),
    _sip(502, _O.FAILED, "Сбой сети провайдера", _RETRY_LATER, True),
    _sip(503, _O.FAILED, "Провайдер временно недоступен",
         "Провайдер перегружен или превышен лимит одновременных звонков. Уменьшите число "
         "одновременных звонков или повторите позже.", True),
    _sip(504, _O.FAILED, "Сеть провайдера не ответила вовремя", _RETRY_LATER, True),
    _sip(600, _O.BUSY, "Абонент занят", _RETRY_LATER, True),
    _sip(603, _O.REJECTED, "Абонент отклонил вызов",
         "Абонент сбросил звонок. При обзвоне номер можно исключить или набрать позже."),
    _sip(604, _O.UNALLOCATED, "Номер не существует", "Проверьте номер; повторный набор не поможет."),
]}


# Causes FreeSWITCH sets from its own decision; the SIP status that comes with them only echoes it
# (an originate_timeout ends NO_ANSWER with sip_invite_failure_status 487 after our CANCEL).
_LOCAL_CAUSES = {"NO_ANSWER", "ORIGINATOR_CANCEL", "LOSE_RACE", "PICKED_OFF", "MANAGER_REQUEST",
                 "ALLOTTED_TIMEOUT", "GATEWAY_DOWN", "NO_ROUTE_DESTINATION", "USER_NOT_REGISTERED",
                 "SYSTEM_SHUTDOWN", "CRASH", "MEDIA_TIMEOUT", "PROGRESS_TIMEOUT",
                 "SWITCH_CONGESTION", "BLIND_TRANSFER", "ATTENDED_TRANSFER"}


def _norm_cause(cause: str | None) -> str:
    return (cause or "").strip().upper()


def describe_cause(cause: str | None, answered: bool, sip_code: int | str | None = None) -> CauseInfo:
    """Explain a finished call. ``answered`` is whether it was ever connected (``answered_time``).

    An answered call that ended ``NORMAL_CLEARING`` (or any ordinary end) is ``completed``; an
    answered call cut off by a failure is ``answered``. Unknown causes become ``failed`` with the
    raw cause in the title so support can still search for it.
    """
    name = _norm_cause(cause)
    code: int | None
    try:
        code = int(sip_code) if sip_code not in (None, "") else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        code = None
    if answered:
        if not name or name in _ANSWERED_NORMAL:
            title, fix = _ANSWERED_TEXT.get(name, _ANSWERED_TEXT["NORMAL_CLEARING"])
            return CauseInfo(name or "NORMAL_CLEARING", CallOutcome.COMPLETED, title, fix, False, code)
        if name in _ANSWERED_TEXT:
            title, fix = _ANSWERED_TEXT[name]
            return CauseInfo(name, CallOutcome.ANSWERED, title, fix, True, code)
        base = CAUSES.get(name)
        if base is not None:
            return CauseInfo(name, CallOutcome.ANSWERED, "Разговор прервался: " + base.title.lower(),
                             base.how_to_fix, base.retryable, code, base.error_code)
        return CauseInfo(name, CallOutcome.ANSWERED, f"Разговор прервался ({name})",
                         "Передайте время звонка и причину администратору.", True, code)
    if code is not None and code in SIP_CODES and name not in _LOCAL_CAUSES:
        return replace(SIP_CODES[code], cause=name or f"SIP_{code}")
    if not name:
        return CauseInfo("", CallOutcome.FAILED, "Звонок не состоялся",
                         "Причина неизвестна. " + _CHECK_TRUNK, True, code, "TEST_CALL_FAILED")
    base = CAUSES.get(name)
    if base is not None:
        return replace(base, sip_code=code)
    return CauseInfo(name, CallOutcome.FAILED, f"Звонок не состоялся ({name})",
                     "Причина нестандартная. " + _CHECK_TRUNK, True, code, "TEST_CALL_FAILED")


_ERR_RE = re.compile(r"^-ERR\s+(?P<rest>.*)$", re.S)
_CAUSE_TOKEN_RE = re.compile(r"^[A-Z][A-Z0-9_]+$")


def originate_error_outcome(text: str | bytes | None) -> CauseInfo | None:
    """Read a ``bgapi originate`` result (the ``BACKGROUND_JOB`` body or an ``api`` reply).

    ``+OK <uuid>`` -> None (the call is up); ``-ERR USER_BUSY`` -> ``describe_cause("USER_BUSY",
    answered=False)``; any other ``-ERR``/``-USAGE`` text -> ``failed`` carrying that text.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    body = (text or "").strip()
    if body.startswith("+OK"):
        return None
    m = _ERR_RE.match(body)
    if m:
        token = m.group("rest").strip().split()[0] if m.group("rest").strip() else ""
        if _CAUSE_TOKEN_RE.match(token):
            return describe_cause(token, answered=False)
        detail = m.group("rest").strip() or body
    else:
        detail = body or "пустой ответ"
    return CauseInfo("ORIGINATE_ERROR", CallOutcome.FAILED, "FreeSWITCH не начал вызов",
                     f"Ответ FreeSWITCH: «{detail}». Проверьте SIP-подключение и номер; если ошибка "
                     "повторяется — передайте этот текст администратору.", False, None,
                     "TEST_CALL_FAILED")
