"""Pure telephony domain: E.164 numbers, working-hours schedules, hangup causes and call states.

No database, no FreeSWITCH: these functions take plain values, so the tests drive them directly.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from core.errors import CATALOG
from core.telephony import causes as C
from core.telephony.e164 import (format_for_speech_groups, is_valid_e164, normalize_e164,
                                 region_timezone)
from core.telephony.schedule import (ScheduleError, fs_conditions, fs_holiday_conditions, fs_wday,
                                     is_open, next_open, parse_schedule, validate_schedule)

MSK = ZoneInfo("Europe/Moscow")
VVO = ZoneInfo("Asia/Vladivostok")


# ---------------------------------------------------------------- E.164

@pytest.mark.parametrize("raw", ["8 (495) 123-45-67", "+7 495 1234567", "74951234567", "84951234567",
                                 "4951234567", "+7(495)123-45-67", " 8-495-123-45-67 "])
def test_normalize_russian_forms(raw: str) -> None:
    assert normalize_e164(raw) == "+74951234567"


@pytest.mark.parametrize("raw,expected", [
    ("8 (7172) 12-34-56", "+77172123456"),    # Astana, Kazakhstan shares +7
    ("+7 701 123 45 67", "+77011234567"),      # Kazakh mobile
    ("+375 17 123-45-67", "+375171234567"),    # Minsk
    ("+375 29 123-45-67", "+375291234567"),    # Belarus mobile
    ("375291234567", "+375291234567"),         # international without the plus
    ("+998 71 234 56 78", "+998712345678"),    # Tashkent
    ("8 916 123 45 67", "+79161234567"),
])
def test_normalize_neighbour_countries(raw: str, expected: str) -> None:
    assert normalize_e164(raw) == expected


@pytest.mark.parametrize("raw,fragment", [
    ("", "Укажите номер"),
    ("   ", "Укажите номер"),
    ("abc", "не похоже на номер"),
    ("1234", "не хватает цифр"),
    ("84951234", "не хватает цифр"),
    ("+7 000 000 00 00", "нет в плане нумерации"),
    ("+999 123 45 67", "неизвестный код страны"),
    ("+74951234567 доб. 123", "добавочный"),
    ("+7 495 123 45 67 89 00 11", "лишние цифры"),
])
def test_normalize_rejects_with_russian_message(raw: str, fragment: str) -> None:
    with pytest.raises(ValueError) as exc:
        normalize_e164(raw)
    assert fragment in str(exc.value)


def test_normalize_does_not_turn_a_short_8_number_into_vietnam() -> None:
    with pytest.raises(ValueError):
        normalize_e164("84951234")  # a typo, not +84 951234


def test_is_valid_e164() -> None:
    assert is_valid_e164("+74951234567")
    assert is_valid_e164("+375171234567")
    assert not is_valid_e164("74951234567")       # no plus: not canonical
    assert not is_valid_e164("+7 495 123-45-67")  # formatted
    assert not is_valid_e164("+70000000000")      # not a real range
    assert not is_valid_e164("")
    assert not is_valid_e164(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("e164,tz", [
    ("+74951234567", "Europe/Moscow"),
    ("+74232123456", "Asia/Vladivostok"),
    ("+73432123456", "Asia/Yekaterinburg"),
    ("+77172123456", "Asia/Almaty"),
    ("+77011234567", "Asia/Almaty"),   # Kazakh mobile: the country has one zone
    ("+375171234567", "Europe/Minsk"),
    ("+998712345678", "Asia/Tashkent"),
])
def test_region_timezone(e164: str, tz: str) -> None:
    assert region_timezone(e164) == tz


def test_region_timezone_unknown_for_russian_mobile() -> None:
    # A Russian mobile number may be anywhere in eleven zones: the caller uses the project's.
    assert region_timezone("+79161234567") is None


def test_region_timezone_requires_e164() -> None:
    with pytest.raises(ValueError):
        region_timezone("84951234567")


@pytest.mark.parametrize("e164,groups", [
    ("+74951234567", ["+7", "495", "123", "45", "67"]),
    ("+79161234567", ["+7", "916", "123", "45", "67"]),
    ("+77011234567", ["+7", "701", "123", "45", "67"]),
    ("+77172123456", ["+7", "7172", "12", "34", "56"]),
    ("+375171234567", ["+375", "17", "123", "45", "67"]),
])
def test_format_for_speech_groups(e164: str, groups: list[str]) -> None:
    assert format_for_speech_groups(e164) == groups
    assert "".join(groups) == e164


def test_format_for_speech_groups_requires_e164() -> None:
    with pytest.raises(ValueError):
        format_for_speech_groups("8 495 123 45 67")


# ---------------------------------------------------------------- schedules

OFFICE = {"timezone": "Europe/Moscow",
          "windows": [{"days": [1, 2, 3, 4, 5], "from": "09:00", "to": "18:00"},
                      {"days": [6], "from": "10:00", "to": "14:00"}],
          "holidays": ["2026-01-01", "2026-01-02"], "always_open": False}
NIGHT = {"timezone": "Europe/Moscow",
         "windows": [{"days": [5], "from": "22:00", "to": "02:00"}]}


def msk(*args: int) -> datetime:
    return datetime(*args, tzinfo=MSK)  # type: ignore[misc]


def test_is_open_office_hours() -> None:
    # 2026-11-23 is a Monday.
    assert is_open(OFFICE, msk(2026, 11, 23, 9, 0))
    assert is_open(OFFICE, msk(2026, 11, 23, 17, 59, 59))
    assert not is_open(OFFICE, msk(2026, 11, 23, 18, 0))  # "to" is exclusive
    assert not is_open(OFFICE, msk(2026, 11, 23, 8, 59))
    assert is_open(OFFICE, msk(2026, 11, 28, 11, 0))       # Saturday window
    assert not is_open(OFFICE, msk(2026, 11, 28, 15, 0))
    assert not is_open(OFFICE, msk(2026, 11, 29, 11, 0))   # Sunday


def test_is_open_evaluates_in_schedule_timezone() -> None:
    # 06:30 UTC is 09:30 in Moscow (open) but 16:30 in Vladivostok; 09:30 UTC is 12:30 / 19:30.
    at = datetime(2026, 11, 23, 6, 30, tzinfo=timezone.utc)
    vvo = dict(OFFICE, timezone="Asia/Vladivostok")
    assert is_open(OFFICE, at)
    assert is_open(vvo, at)
    later = datetime(2026, 11, 23, 9, 30, tzinfo=timezone.utc)
    assert is_open(OFFICE, later)
    assert not is_open(vvo, later)


def test_russia_has_no_dst_so_winter_and_summer_agree() -> None:
    # Europe/Moscow is UTC+3 all year: 06:00 UTC is 09:00 local in January and in July.
    for month in (1, 7):
        at = datetime(2027, month, 4 if month == 1 else 5, 6, 0, tzinfo=timezone.utc)
        assert at.astimezone(MSK).utcoffset() == timedelta(hours=3)
        assert is_open(OFFICE, at)


def test_missing_timezone_uses_default() -> None:
    sched = {"windows": [{"days": [1], "from": "09:00", "to": "10:00"}]}
    at = datetime(2026, 11, 22, 23, 30, tzinfo=timezone.utc)  # Mon 09:30 Vladivostok, 02:30 Moscow
    assert is_open(sched, at, default_timezone="Asia/Vladivostok")
    assert not is_open(sched, at)  # default Europe/Moscow


def test_holidays_closed() -> None:
    # 2026-01-01 is a Thursday.
    assert not is_open(OFFICE, msk(2026, 1, 1, 12, 0))
    assert not is_open(OFFICE, msk(2026, 1, 2, 12, 0))
    assert is_open(OFFICE, msk(2026, 1, 5, 12, 0))


def test_wrap_around_window() -> None:
    # Friday 2026-11-27 22:00 -> Saturday 02:00.
    assert not is_open(NIGHT, msk(2026, 11, 27, 21, 59))
    assert is_open(NIGHT, msk(2026, 11, 27, 22, 0))
    assert is_open(NIGHT, msk(2026, 11, 27, 23, 59))
    assert is_open(NIGHT, msk(2026, 11, 28, 0, 0))
    assert is_open(NIGHT, msk(2026, 11, 28, 1, 59))
    assert not is_open(NIGHT, msk(2026, 11, 28, 2, 0))
    assert not is_open(NIGHT, msk(2026, 11, 28, 22, 30))  # Saturday evening: no window
    assert not is_open(NIGHT, msk(2026, 11, 27, 1, 0))    # Friday early morning: Thursday's is absent


def test_wrap_around_after_midnight_part_closed_on_holiday() -> None:
    sched = dict(NIGHT, holidays=["2026-11-28"])
    assert is_open(sched, msk(2026, 11, 27, 23, 0))
    assert not is_open(sched, msk(2026, 11, 28, 1, 0))


def test_sunday_wrap_continues_into_monday() -> None:
    sched = {"windows": [{"days": [7], "from": "20:00", "to": "03:00"}]}
    assert is_open(sched, msk(2026, 11, 30, 2, 0))   # Monday 02:00
    assert not is_open(sched, msk(2026, 12, 1, 2, 0))  # Tuesday


def test_24_00_end_and_all_day() -> None:
    sched = {"windows": [{"days": [1, 2, 3, 4, 5, 6, 7], "from": "00:00", "to": "24:00"}],
             "holidays": ["2026-12-31"]}
    assert is_open(sched, msk(2026, 11, 23, 0, 0))
    assert is_open(sched, msk(2026, 11, 23, 23, 59, 59))
    assert not is_open(sched, msk(2026, 12, 31, 12, 0))


def test_always_open_and_empty_schedules() -> None:
    at = msk(2026, 1, 1, 3, 0)
    assert is_open(None, at)
    assert is_open({}, at)
    assert is_open({"always_open": True, "holidays": ["2026-01-01"]}, at)
    assert next_open({"always_open": True}, at) == at


def test_is_open_requires_aware_datetime() -> None:
    with pytest.raises(ValueError):
        is_open(OFFICE, datetime(2026, 11, 23, 10, 0))


def test_is_open_rejects_invalid_schedule() -> None:
    with pytest.raises(ScheduleError) as exc:
        is_open({"windows": [{"days": [8], "from": "09:00", "to": "18:00"}]}, msk(2026, 11, 23, 10))
    assert "windows.0.days.0" in exc.value.fields


def test_next_open() -> None:
    # Friday 2026-11-27 19:00 -> Saturday 10:00; Saturday 15:00 -> Monday 09:00.
    assert next_open(OFFICE, msk(2026, 11, 27, 19, 0)) == msk(2026, 11, 28, 10, 0)
    assert next_open(OFFICE, msk(2026, 11, 28, 15, 0)) == msk(2026, 11, 30, 9, 0)
    now = msk(2026, 11, 23, 12, 0)
    assert next_open(OFFICE, now) == now
    # New year: closed 1st and 2nd (Thu, Fri); Saturday 3rd opens at 10:00.
    assert next_open(OFFICE, msk(2025, 12, 31, 20, 0)) == msk(2026, 1, 3, 10, 0)


def test_next_open_returns_schedule_timezone() -> None:
    vvo = dict(OFFICE, timezone="Asia/Vladivostok")
    result = next_open(vvo, datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc))  # Mon 22:00 VVO
    assert result == datetime(2026, 11, 24, 9, 0, tzinfo=VVO)
    assert result is not None and result.utcoffset() == timedelta(hours=10)


def test_next_open_midnight_after_holiday_evening() -> None:
    # The Friday window starts on a holiday; its after-midnight part (Saturday) is open.
    sched = dict(NIGHT, holidays=["2026-11-27"])
    assert next_open(sched, msk(2026, 11, 27, 23, 0)) == msk(2026, 11, 28, 0, 0)


def test_validate_schedule_ok() -> None:
    assert validate_schedule(OFFICE) == {}
    assert validate_schedule(NIGHT) == {}
    assert validate_schedule(None) == {}
    assert validate_schedule({}) == {}
    assert validate_schedule({"always_open": True}) == {}


def test_validate_schedule_messages() -> None:
    errors = validate_schedule({
        "timezone": "Mars/Olympus",
        "windows": [{"days": [0, True, 3, 3], "from": "9:00", "to": "25:00", "extra": 1},
                    {"days": [], "from": "24:00", "to": "10:00"},
                    {"days": [1], "from": "10:00", "to": "10:00"},
                    "x"],
        "holidays": ["2026-02-30", "01.01.2026", 5],
        "always_open": "no",
        "color": "red",
    })
    assert errors["timezone"] == "Неизвестный часовой пояс (пример: Europe/Moscow)"
    assert errors["windows.0.days.0"].startswith("День недели — число от 1")
    assert "windows.0.days.1" in errors  # booleans are not weekdays
    assert errors["windows.0.days.3"] == "День недели указан дважды"
    assert errors["windows.0.from"] == "Ожидается время в формате ЧЧ:ММ (пример: 09:00)"
    assert "windows.0.to" in errors
    assert errors["windows.0.extra"] == "Неизвестное поле интервала"
    assert "windows.1.days" in errors
    assert errors["windows.1.from"] == "Время начала — не позже 23:59"
    assert errors["windows.2.to"] == "Время окончания совпадает со временем начала"
    assert "windows.3" in errors
    assert errors["holidays.0"] == "Такой даты нет в календаре"
    assert "ГГГГ-ММ-ДД" in errors["holidays.1"] and "holidays.2" in errors
    assert errors["always_open"] == "Ожидается true или false"
    assert errors["color"] == "Неизвестное поле расписания"
    assert all(any("а" <= ch <= "я" for ch in msg.lower()) for msg in errors.values())


def test_validate_schedule_requires_windows_and_prefix() -> None:
    errors = validate_schedule({"timezone": "Europe/Moscow"}, prefix="schedule_json")
    assert list(errors) == ["schedule_json.windows"]
    assert "Круглосуточно" in errors["schedule_json.windows"]
    assert validate_schedule({"windows": []}) == {
        "windows": "Добавьте хотя бы один интервал работы или включите «Круглосуточно»"}
    assert validate_schedule("09-18") == {"schedule": "Расписание должно быть объектом"}
    assert validate_schedule([1], prefix="p.schedule") == {"p.schedule": "Расписание должно быть объектом"}
    assert validate_schedule({"windows": "x"}) == {"windows": "Ожидается список интервалов"}


def test_parse_schedule_result() -> None:
    s = parse_schedule(OFFICE)
    assert s.timezone == "Europe/Moscow"
    assert s.windows[0].start_min == 9 * 60 and s.windows[0].end_min == 18 * 60
    assert s.holidays == frozenset({date(2026, 1, 1), date(2026, 1, 2)})
    assert parse_schedule(None, "Asia/Vladivostok").always_open
    assert parse_schedule(NIGHT).windows[0].wraps


def test_fs_wday() -> None:
    assert fs_wday([1, 2, 3, 4, 5]) == "2-6"   # Mon-Fri, FreeSWITCH 1=Sunday
    assert fs_wday([6]) == "7"
    assert fs_wday([7]) == "1"
    assert fs_wday([1, 3]) == "2,4"
    assert fs_wday([5, 6, 7]) == "1,6-7"       # Fri-Sun: no wrapping range in FreeSWITCH
    assert fs_wday(range(1, 8)) == "1-7"


def test_fs_conditions() -> None:
    assert fs_conditions(OFFICE) == [{"wday": "2-6", "time-of-day": "09:00-18:00"},
                                     {"wday": "7", "time-of-day": "10:00-14:00"}]
    # Friday 22:00-02:00 splits into Friday 22:00-24:00 and Saturday 00:00-02:00.
    assert fs_conditions(NIGHT) == [{"wday": "6", "time-of-day": "22:00-24:00"},
                                    {"wday": "7", "time-of-day": "00:00-02:00"}]
    sunday = {"windows": [{"days": [6, 7], "from": "23:00", "to": "01:30"}]}
    assert fs_conditions(sunday) == [{"wday": "1,7", "time-of-day": "23:00-24:00"},
                                     {"wday": "1-2", "time-of-day": "00:00-01:30"}]
    to_midnight = {"windows": [{"days": [1], "from": "20:00", "to": "00:00"}]}
    assert fs_conditions(to_midnight) == [{"wday": "2", "time-of-day": "20:00-24:00"}]
    assert fs_conditions(None) == []
    assert fs_conditions({"always_open": True, "windows": OFFICE["windows"]}) == []


def test_fs_conditions_agree_with_is_open() -> None:
    """Evaluate the FreeSWITCH conditions with FreeSWITCH's rules and compare minute by minute."""
    schedules = [OFFICE, NIGHT, {"windows": [{"days": [6, 7], "from": "23:00", "to": "01:30"},
                                             {"days": [3], "from": "00:00", "to": "24:00"}]}]

    def fs_match(conds: list[dict[str, str]], local: datetime) -> bool:
        wday = local.isoweekday() % 7 + 1
        sec = local.hour * 3600 + local.minute * 60
        for c in conds:
            days: set[int] = set()
            for part in c["wday"].split(","):
                lo, _, hi = part.partition("-")
                days.update(range(int(lo), int(hi or lo) + 1))
            start, end = c["time-of-day"].split("-")
            s = int(start[:2]) * 3600 + int(start[3:]) * 60
            e = int(end[:2]) * 3600 + int(end[3:]) * 60
            if wday in days and s <= sec < e:  # switch_tod_cmp: end exclusive
                return True
        return False

    for sched in schedules:
        conds = fs_conditions(sched)
        t = msk(2026, 11, 23, 0, 0)
        while t < msk(2026, 11, 30, 6, 0):
            assert fs_match(conds, t) == is_open(dict(sched, holidays=[]), t), (sched, t)
            t += timedelta(minutes=15)


def test_fs_holiday_conditions() -> None:
    sched = dict(OFFICE, holidays=["2026-01-08", "2026-01-01", "2026-01-02", "2026-01-03",
                                   "2026-01-31", "2026-02-01", "2026-05-09", "2027-01-01"])
    assert fs_holiday_conditions(sched) == [
        {"year": "2026", "mon": "1", "mday": "1-3"},
        {"year": "2026", "mon": "1", "mday": "8"},
        {"year": "2026", "mon": "1", "mday": "31"},
        {"year": "2026", "mon": "2", "mday": "1"},
        {"year": "2026", "mon": "5", "mday": "9"},
        {"year": "2027", "mon": "1", "mday": "1"},
    ]
    assert fs_holiday_conditions(NIGHT) == []
    assert fs_holiday_conditions({"always_open": True, "holidays": ["2026-01-01"]}) == []


# ---------------------------------------------------------------- causes

REQUIRED_CAUSES = ["NORMAL_CLEARING", "USER_BUSY", "NO_ANSWER", "NO_USER_RESPONSE", "CALL_REJECTED",
                   "UNALLOCATED_NUMBER", "NORMAL_TEMPORARY_FAILURE", "RECOVERY_ON_TIMER_EXPIRE",
                   "GATEWAY_DOWN", "INCOMPATIBLE_DESTINATION", "ORIGINATOR_CANCEL",
                   "DESTINATION_OUT_OF_ORDER", "NETWORK_OUT_OF_ORDER", "SUBSCRIBER_ABSENT",
                   "NO_ROUTE_DESTINATION", "INVALID_NUMBER_FORMAT", "MEDIA_TIMEOUT",
                   "ALLOTTED_TIMEOUT", "LOSE_RACE", "MANAGER_REQUEST", "USER_NOT_REGISTERED",
                   "EXCHANGE_ROUTING_ERROR"]
REQUIRED_SIP = [401, 403, 404, 407, 408, 480, 486, 487, 488, 500, 503, 603]

EXPECTED_UNANSWERED = {
    "NORMAL_CLEARING": "no_answer", "USER_BUSY": "busy", "NO_ANSWER": "no_answer",
    "NO_USER_RESPONSE": "no_answer", "CALL_REJECTED": "rejected",
    "UNALLOCATED_NUMBER": "unallocated", "NORMAL_TEMPORARY_FAILURE": "failed",
    "RECOVERY_ON_TIMER_EXPIRE": "failed", "GATEWAY_DOWN": "gateway_down",
    "INCOMPATIBLE_DESTINATION": "failed", "ORIGINATOR_CANCEL": "cancelled",
    "DESTINATION_OUT_OF_ORDER": "failed", "NETWORK_OUT_OF_ORDER": "failed",
    "SUBSCRIBER_ABSENT": "no_answer", "NO_ROUTE_DESTINATION": "failed",
    "INVALID_NUMBER_FORMAT": "unallocated", "MEDIA_TIMEOUT": "failed",
    "ALLOTTED_TIMEOUT": "no_answer", "LOSE_RACE": "cancelled", "MANAGER_REQUEST": "cancelled",
    "USER_NOT_REGISTERED": "failed", "EXCHANGE_ROUTING_ERROR": "failed",
}
EXPECTED_SIP = {401: "failed", 403: "rejected", 404: "unallocated", 407: "failed", 408: "no_answer",
                480: "no_answer", 486: "busy", 487: "cancelled", 488: "failed", 500: "failed",
                503: "failed", 603: "rejected"}


def _russian(text: str) -> bool:
    return any("а" <= ch <= "я" for ch in text.lower())


@pytest.mark.parametrize("cause", REQUIRED_CAUSES)
def test_every_required_cause_is_mapped(cause: str) -> None:
    assert cause in C.CAUSES
    info = C.describe_cause(cause, answered=False)
    assert info.cause == cause
    assert info.outcome == C.CallOutcome(EXPECTED_UNANSWERED[cause])
    assert _russian(info.title) and _russian(info.how_to_fix)
    assert info.error_code is None or info.error_code in CATALOG


@pytest.mark.parametrize("code", REQUIRED_SIP)
def test_every_required_sip_code_is_mapped(code: int) -> None:
    assert code in C.SIP_CODES
    info = C.describe_cause("NORMAL_CLEARING", answered=False, sip_code=code)
    assert info.outcome == C.CallOutcome(EXPECTED_SIP[code])
    assert info.sip_code == code
    assert _russian(info.title) and _russian(info.how_to_fix)
    assert info.error_code is None or info.error_code in CATALOG


def test_all_catalog_entries_are_consistent() -> None:
    for table in (C.CAUSES.values(), C.SIP_CODES.values()):
        for info in table:
            assert isinstance(info.outcome, C.CallOutcome)
            assert info.error_code is None or info.error_code in CATALOG
            assert info.title and info.how_to_fix


def test_answered_normal_clearing_is_completed() -> None:
    info = C.describe_cause("NORMAL_CLEARING", answered=True)
    assert info.outcome is C.CallOutcome.COMPLETED
    assert info.title == "Разговор завершён"
    assert C.describe_cause("MANAGER_REQUEST", answered=True).outcome is C.CallOutcome.COMPLETED
    assert C.describe_cause(None, answered=True).outcome is C.CallOutcome.COMPLETED
    limit = C.describe_cause("ALLOTTED_TIMEOUT", answered=True)
    assert limit.outcome is C.CallOutcome.COMPLETED and "длительност" in limit.title


def test_answered_then_cut_off_is_answered() -> None:
    media = C.describe_cause("MEDIA_TIMEOUT", answered=True)
    assert media.outcome is C.CallOutcome.ANSWERED
    assert "звук" in media.title
    net = C.describe_cause("NETWORK_OUT_OF_ORDER", answered=True)
    assert net.outcome is C.CallOutcome.ANSWERED and net.title.startswith("Разговор прервался")
    odd = C.describe_cause("SOMETHING_NEW", answered=True)
    assert odd.outcome is C.CallOutcome.ANSWERED and "SOMETHING_NEW" in odd.title


def test_sip_code_refines_cause() -> None:
    provider = C.describe_cause("CALL_REJECTED", answered=False, sip_code=403)
    person = C.describe_cause("CALL_REJECTED", answered=False, sip_code="603")
    assert provider.outcome is person.outcome is C.CallOutcome.REJECTED
    assert provider.title != person.title
    assert "баланс" in provider.how_to_fix
    assert provider.cause == "CALL_REJECTED"
    auth = C.describe_cause("", answered=False, sip_code=401)
    assert auth.error_code == "SIP_CONNECT_FAILED" and auth.cause == "SIP_401"


def test_local_cause_beats_echoed_sip_status() -> None:
    # Captured: originate_timeout -> NO_ANSWER with sip_invite_failure_status 487 (our CANCEL).
    info = C.describe_cause("NO_ANSWER", answered=False, sip_code=487)
    assert info.outcome is C.CallOutcome.NO_ANSWER and info.sip_code == 487
    assert C.describe_cause("USER_BUSY", answered=False, sip_code=486).outcome is C.CallOutcome.BUSY


def test_unknown_and_empty_causes() -> None:
    odd = C.describe_cause("WEIRD_CAUSE", answered=False)
    assert odd.outcome is C.CallOutcome.FAILED and "WEIRD_CAUSE" in odd.title
    empty = C.describe_cause(None, answered=False)
    assert empty.outcome is C.CallOutcome.FAILED
    assert C.describe_cause("user_busy", answered=False).outcome is C.CallOutcome.BUSY
    assert C.describe_cause("NO_ANSWER", answered=False, sip_code="garbage").sip_code is None


def test_retryable_flags() -> None:
    assert C.describe_cause("USER_BUSY", False).retryable
    assert C.describe_cause("NO_ANSWER", False).retryable
    assert not C.describe_cause("UNALLOCATED_NUMBER", False).retryable
    assert not C.describe_cause("CALL_REJECTED", False, 603).retryable


def test_originate_error_outcome_from_captures() -> None:
    # BACKGROUND_JOB bodies from shared/fixtures/freeswitch/esl*_events_plain.txt.
    busy = C.originate_error_outcome("-ERR USER_BUSY\n")
    assert busy is not None and busy.outcome is C.CallOutcome.BUSY
    no_answer = C.originate_error_outcome(b"-ERR NO_ANSWER\n")
    assert no_answer is not None and no_answer.outcome is C.CallOutcome.NO_ANSWER
    temp = C.originate_error_outcome("-ERR NORMAL_TEMPORARY_FAILURE\n")
    assert temp is not None and temp.outcome is C.CallOutcome.FAILED and temp.retryable
    gw = C.originate_error_outcome("-ERR GATEWAY_DOWN")
    assert gw is not None and gw.outcome is C.CallOutcome.GATEWAY_DOWN
    assert C.originate_error_outcome("+OK 74a2604e-4125-48cd-8df5-44a33bab5815\n") is None


def test_originate_error_outcome_free_text() -> None:
    info = C.originate_error_outcome("-ERR No such channel!")
    assert info is not None and info.outcome is C.CallOutcome.FAILED
    assert "No such channel!" in info.how_to_fix
    usage = C.originate_error_outcome("-USAGE: <call url> <exten>")
    assert usage is not None and usage.cause == "ORIGINATE_ERROR"
    assert C.originate_error_outcome("") is not None


def test_outcome_labels() -> None:
    for outcome in C.CallOutcome:
        assert _russian(C.outcome_label(outcome))
    assert C.outcome_label("busy") == "Занято"
    assert C.CallOutcome("voicemail") is C.CallOutcome.VOICEMAIL


def test_human_status() -> None:
    assert C.human_status("ringing") == "Звонит"
    assert C.human_status(C.CallState.ANSWERED) == "Разговор с агентом"
    assert C.human_status("agent_speaking") == "Агент отвечает"  # spec 10.2 example
    for state in C.CallState:
        assert _russian(C.human_status(state))
    assert C.human_status("teleporting") == "Неизвестное состояние"
    assert {s.value for s in C.CallState} == {"ringing", "answered", "agent_speaking", "listening",
                                              "thinking", "transferring", "operator", "on_hold",
                                              "ended"}
