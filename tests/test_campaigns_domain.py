"""Pure campaign domain: callee time zones, windows across zones, Russian-law rules per purpose,
retry policy, pacing, contact import and opt-out phrases. No servers."""
from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from core.campaigns import compliance
from core.campaigns.contacts_import import ImportFileError, apply_exclusions, parse_contacts, variable_key
from core.campaigns.limits import after_attempt, parse_limits, validate_limits
from core.campaigns.optout import detect_opt_out
from core.campaigns.pacing import TokenBucket, bucket_for, dial_slots
from core.campaigns.timezones import number_timezone, resolve_timezone
from core.campaigns.windows import callable_now, next_call_time, validate_campaign_schedule

UTC = dt.timezone.utc
KAMCHATKA = "+74152123456"     # Petropavlovsk-Kamchatsky, UTC+12
KALININGRAD = "+74012123456"   # Kaliningrad, UTC+2
MOBILE = "+79161234567"


def utc(*a) -> dt.datetime:
    return dt.datetime(*a, tzinfo=UTC)


# -- time zones ---------------------------------------------------------------------------------
def test_timezone_fallback_chain():
    assert resolve_timezone("Asia/Vladivostok", KAMCHATKA, "Europe/Moscow").name == "Asia/Vladivostok"
    assert resolve_timezone("Asia/Vladivostok", KAMCHATKA, "Europe/Moscow").source == "contact"
    z = resolve_timezone(None, KAMCHATKA, "Europe/Moscow")
    assert (z.name, z.source) == ("Asia/Kamchatka", "region")
    assert resolve_timezone("Not/AZone", KALININGRAD, "Europe/Moscow").name == "Europe/Kaliningrad"
    z = resolve_timezone(None, MOBILE, "Asia/Yekaterinburg")  # mobile: no region, project zone
    assert (z.name, z.source) == ("Asia/Yekaterinburg", "project")
    assert number_timezone("+74951234567") == "Europe/Moscow"
    assert number_timezone("not a number") is None


# -- windows across zones ---------------------------------------------------------------------------
WEEKDAYS_9_18 = {"windows": [{"days": [1, 2, 3, 4, 5], "from": "09:00", "to": "18:00"}]}


def test_same_utc_instant_is_open_in_one_zone_and_closed_in_another():
    # Wednesday 2026-03-11 07:30 UTC = 19:30 in Kamchatka (UTC+12, closed) and 09:30 in Kaliningrad (UTC+2, open)
    now = utc(2026, 3, 11, 7, 30)
    kam = resolve_timezone(None, KAMCHATKA, "Europe/Moscow").name
    kal = resolve_timezone(None, KALININGRAD, "Europe/Moscow").name
    assert not callable_now(WEEKDAYS_9_18, "service", kam, now)
    assert callable_now(WEEKDAYS_9_18, "service", kal, now)
    nxt = next_call_time(WEEKDAYS_9_18, "service", kam, now)
    assert nxt == dt.datetime(2026, 3, 12, 9, 0, tzinfo=ZoneInfo("Asia/Kamchatka"))
    assert nxt.astimezone(UTC) == utc(2026, 3, 11, 21, 0)


def test_friday_evening_in_kamchatka_waits_until_monday():
    now = utc(2026, 3, 13, 6, 0)  # Friday 18:00 in Kamchatka: the window just closed
    nxt = next_call_time(WEEKDAYS_9_18, "service", "Asia/Kamchatka", now)
    assert nxt.isoweekday() == 1 and (nxt.hour, nxt.minute) == (9, 0) and nxt.date() == dt.date(2026, 3, 16)


def test_start_and_end_dates_in_local_time():
    sched = {**WEEKDAYS_9_18, "start_date": "2026-03-16", "end_date": "2026-03-17"}
    nxt = next_call_time(sched, "service", "Europe/Kaliningrad", utc(2026, 3, 11, 10, 0))
    assert nxt == dt.datetime(2026, 3, 16, 9, 0, tzinfo=ZoneInfo("Europe/Kaliningrad"))
    assert next_call_time(sched, "service", "Europe/Kaliningrad", utc(2026, 3, 17, 16, 30)) is None  # 18:30 local, last day
    assert next_call_time(sched, "service", "Europe/Kaliningrad", utc(2026, 3, 17, 15, 0)) is not None


def test_default_window_without_schedule():
    assert callable_now({}, "survey", "Europe/Moscow", utc(2026, 3, 11, 7, 0))  # 10:00 MSK
    assert not callable_now({}, "survey", "Europe/Moscow", utc(2026, 3, 11, 19, 0))  # 22:00 MSK


def test_campaign_schedule_validation():
    assert validate_campaign_schedule(WEEKDAYS_9_18) == {}
    errs = validate_campaign_schedule({"windows": [{"days": [9], "from": "25:00", "to": "18:00"}],
                                       "start_date": "2026-02-30", "end_date": "x"})
    assert "schedule_json.start_date" in errs and "schedule_json.end_date" in errs
    assert any(k.startswith("schedule_json.windows.0") for k in errs)
    assert validate_campaign_schedule({"start_date": "2026-03-10", "end_date": "2026-03-01"}) == {
        "schedule_json.end_date": "Дата окончания раньше даты начала"}


# -- debt collection (230-FZ) ---------------------------------------------------------------------
def test_debt_collection_hours_weekday_weekend_and_holiday():
    always = {"always_open": True}
    msk = ZoneInfo("Europe/Moscow")
    wed = dt.datetime(2026, 3, 11, 7, 59, tzinfo=msk)
    assert not callable_now(always, "debt_collection", "Europe/Moscow", wed)
    assert callable_now(always, "debt_collection", "Europe/Moscow", wed + dt.timedelta(minutes=1))
    assert not callable_now(always, "debt_collection", "Europe/Moscow", dt.datetime(2026, 3, 11, 22, 0, tzinfo=msk))
    sat = dt.datetime(2026, 3, 14, 8, 30, tzinfo=msk)
    assert not callable_now(always, "debt_collection", "Europe/Moscow", sat)
    assert next_call_time(always, "debt_collection", "Europe/Moscow", sat) == dt.datetime(2026, 3, 14, 9, 0, tzinfo=msk)
    assert not callable_now(always, "debt_collection", "Europe/Moscow", dt.datetime(2026, 3, 14, 20, 0, tzinfo=msk))
    # 9 March 2026 (Monday) is a day off: 8 March falls on a Sunday (Labour Code art. 112)
    hol = dt.datetime(2026, 3, 9, 8, 30, tzinfo=msk)
    assert compliance.is_rest_day(hol.date())
    assert not callable_now(always, "debt_collection", "Europe/Moscow", hol)
    assert callable_now(always, "service", "Europe/Moscow", hol)  # other purposes: the campaign's windows only
    # 12 June, 4 November, New Year holidays
    assert {dt.date(2026, 6, 12), dt.date(2026, 11, 4), dt.date(2026, 1, 5)} <= compliance.russian_holidays(2026)
    assert compliance.is_rest_day(dt.date(2026, 5, 11))  # 9 May 2026 is a Saturday
    assert not compliance.is_rest_day(dt.date(2026, 3, 10))


def test_debt_collection_in_callee_local_time_utc12_and_utc2():
    now = utc(2026, 3, 11, 7, 30)  # 19:30 Kamchatka, 09:30 Kaliningrad (Wednesday)
    always = {"always_open": True}
    assert callable_now(always, "debt_collection", "Asia/Kamchatka", now)
    assert callable_now(always, "debt_collection", "Europe/Kaliningrad", now)
    late = utc(2026, 3, 11, 10, 30)  # 22:30 Kamchatka, 12:30 Kaliningrad
    assert not callable_now(always, "debt_collection", "Asia/Kamchatka", late)
    assert callable_now(always, "debt_collection", "Europe/Kaliningrad", late)
    nxt = next_call_time(always, "debt_collection", "Asia/Kamchatka", late)
    assert nxt == dt.datetime(2026, 3, 12, 8, 0, tzinfo=ZoneInfo("Asia/Kamchatka"))


def test_debt_collection_frequency_caps():
    now = utc(2026, 3, 20, 12, 0)
    f = compliance.frequency_next_allowed
    assert f("debt_collection", [], now) is None
    assert f("debt_collection", [now - dt.timedelta(hours=3)], now) == now + dt.timedelta(hours=21)  # 1 a day
    two = [now - dt.timedelta(days=3), now - dt.timedelta(days=2)]
    assert f("debt_collection", two, now) == now + dt.timedelta(days=4)  # 2 a week
    eight = [now - dt.timedelta(days=29 - 3 * i) for i in range(8)]
    assert len([c for c in eight if c > now - dt.timedelta(days=7)]) <= 2
    wait = f("debt_collection", eight, now)
    assert wait is not None and wait >= now + dt.timedelta(days=1)  # 8 a month
    assert f("service", [now - dt.timedelta(minutes=1)] * 5, now) is None


def test_advertising_requires_consent_and_others_do_not():
    assert compliance.rules_for("advertising").requires_consent
    assert not any(compliance.rules_for(p).requires_consent for p in ("service", "reminder", "survey", "debt_collection"))
    with pytest.raises(ValueError):
        compliance.rules_for("spam")


# -- retries per outcome ----------------------------------------------------------------------------
def test_retries_per_outcome():
    limits = parse_limits({"max_attempts": 3, "retry_delays_min": {"busy": 10, "no_answer": 60, "failed": 5,
                                                                  "voicemail": 240}})
    now = utc(2026, 3, 11, 9, 0)
    assert after_attempt("completed", 1, limits, now).state == "done"
    assert after_attempt("transferred", 3, limits, now).state == "done"
    for outcome, minutes in (("busy", 10), ("no_answer", 60), ("failed", 5), ("voicemail", 240), ("rejected", 60),
                             ("gateway_down", 5)):
        d = after_attempt(outcome, 1, limits, now)
        assert (d.state, d.next_attempt_at, d.final) == ("pending", now + dt.timedelta(minutes=minutes), False), outcome
    assert after_attempt("busy", 3, limits, now).state == "failed"
    assert after_attempt("unallocated", 1, limits, now).state == "failed"
    assert after_attempt(None, 1, limits, now).state == "pending"


def test_limits_validation_and_defaults():
    assert validate_limits({"max_concurrent": 10, "calls_per_minute": 30, "budget": "100.50",
                            "amd": {"enabled": True, "policy": "leave_message"}}) == {}
    errs = validate_limits({"max_concurrent": 0, "calls_per_minute": "x", "retry_delays_min": {"busy": -1, "other": 1},
                            "budget": "-5", "amd": {"policy": "sing"}, "bogus": 1})
    assert set(errs) == {"limits_json.max_concurrent", "limits_json.calls_per_minute", "limits_json.retry_delays_min.busy",
                         "limits_json.retry_delays_min.other", "limits_json.budget", "limits_json.amd.policy",
                         "limits_json.bogus"}
    limits = parse_limits({"budget": "100.50"})
    assert limits.budget == Decimal("100.50") and limits.max_attempts == 3 and limits.retry_delays_s["busy"] == 900


# -- pacing -----------------------------------------------------------------------------------------------
def test_default_burst_keeps_any_minute_within_five_percent():
    b = bucket_for(600)  # 10 a second
    assert b.capacity == 30  # 3 s of calls
    started = 0
    t = 1000.0
    for _ in range(600):  # a dialer ticking every 100 ms for a minute, always wanting more
        n = b.available(t)
        b.take(n, t)
        started += n
        t += 0.1
    assert 600 <= started <= 630


def test_token_bucket_paces_calls_per_minute():
    b = bucket_for(120, burst_s=1.0)  # 2 a second, burst of 2
    t = 1000.0
    assert b.available(t) == 1
    b.take(1, t)
    assert b.available(t + 0.5) == 1
    b.take(1, t + 0.5)
    assert b.available(t + 0.6) == 0
    assert b.available(t + 100) == 2  # capped burst
    started, clock = 0, 2000.0
    bucket = TokenBucket(rate_per_s=0.5, capacity=1)
    for _ in range(600):  # 60 s in 0.1 s ticks
        clock += 0.1
        n = bucket.available(clock)
        bucket.take(n, clock)
        started += n
    assert 29 <= started <= 31


def test_dial_slots_takes_the_smallest_limit():
    assert dial_slots(tokens=10, max_concurrent=5, live=3, daily_left=None, project_daily_left=None) == 2
    assert dial_slots(10, 50, 0, 4, 1) == 1
    assert dial_slots(0, 50, 0, None, None) == 0
    assert dial_slots(10, 5, 9, None, None) == 0


# -- contact import --------------------------------------------------------------------------------------
CSV = ("Телефон;ФИО;Часовой пояс;Сумма долга\n"
       "8 (916) 123-45-67;Иванов Иван;;1500\n"
       "+7 916 123 45 67;;Asia/Kamchatka;\n"
       "12345;Петров;;100\n"
       ";Пустой;;\n"
       "84012123456;Калининград;Mars/Base;200\n"
       "+79031112233;Сидорова;Europe/Moscow;300\n")


def test_csv_import_normalizes_merges_and_reports_rows():
    report = parse_contacts(CSV.encode("utf-8"), "list.csv")
    assert report.total_rows == 6
    phones = [c.phone_e164 for c in report.contacts]
    assert phones == ["+79161234567", "+74012123456", "+79031112233"]
    ivan = report.contacts[0]
    assert ivan.name == "Иванов Иван" and ivan.variables == {"summa_dolga": "1500"} and ivan.timezone == "Asia/Kamchatka"
    codes = {(i.row, i.code) for i in report.issues}
    assert codes == {(3, "duplicate"), (4, "invalid_phone"), (5, "missing_phone"), (6, "bad_timezone")}
    assert report.contacts[1].timezone is None  # bad zone dropped: region fallback applies
    out = report.to_dict()
    assert out["accepted"] == 3 and out["rejected"] == 2 and out["duplicates"] == 1


def test_mapping_and_cp1251_and_exclusions():
    data = "tel,client,debt\n89161234567,Анна,10\n89031112233,Борис,20\n89051112233,Вера,30\n".encode("cp1251")
    report = parse_contacts(data, "x.csv", {"phone": "tel", "name": "client", "variables": {"amount": "debt"}})
    assert [c.variables for c in report.contacts] == [{"amount": "10"}, {"amount": "20"}, {"amount": "30"}]
    apply_exclusions(report, dnc={"+79031112233"}, consented={"+79161234567"}, existing={"+79051112233"})
    states = {c.phone_e164: (c.state, c.exclusion_reason) for c in report.contacts}
    assert states == {"+79161234567": ("pending", None), "+79031112233": ("excluded", "dnc")}
    assert {i.code for i in report.issues} == {"dnc", "already_in_campaign"}


def test_xlsx_import():
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Phone", "Name", "Visit"])
    sheet.append([79161234567, "Анна", "2026-03-20 10:00"])
    sheet.append(["8-903-111-22-33", "Борис", None])
    buf = io.BytesIO()
    book.save(buf)
    report = parse_contacts(buf.getvalue(), "list.xlsx")
    assert [(c.phone_e164, c.name, c.variables) for c in report.contacts] == [
        ("+79161234567", "Анна", {"visit": "2026-03-20 10:00"}), ("+79031112233", "Борис", {})]


@pytest.mark.parametrize("data,name,fragment", [
    (b"", "a.csv", "пустой"),
    (b"name,city\nAnna,Moscow\n", "a.csv", "колонка с телефоном"),
    (b"phone\n", "a.csv", "нет ни одной строки"),
    (b"PK\x03\x04garbage", "a.xlsx", "XLSX"),
    (b"phone\x00,x\n1,2\n", "a.csv", "нулевые байты"),
])
def test_malformed_files_are_refused_whole(data, name, fragment):
    with pytest.raises(ImportFileError) as err:
        parse_contacts(data, name, None)
    assert fragment in err.value.message_ru


def test_missing_mapped_column_names_the_columns():
    with pytest.raises(ImportFileError) as err:
        parse_contacts(b"tel,name\n89161234567,A\n", "a.csv", {"phone": "Телефон"})
    assert "Телефон" in err.value.message_ru and "tel" in err.value.message_ru


def test_variable_keys_are_safe():
    assert variable_key("Дата визита") == "data_vizita"
    assert variable_key("  Amount (RUB) ") == "amount_rub"
    assert variable_key("!!!") == "col"


# -- opt-out ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["Не звоните мне больше!", "пожалуйста, удалите мой номер из базы",
                                  "Хватит мне звонить", "больше никогда мне не звоните", "Прекратите звонить",
                                  "не надо сюда звонить", "Внесите меня в чёрный список", "Отпишите меня"])
def test_opt_out_phrases(text):
    assert detect_opt_out(text)


@pytest.mark.parametrize("text", ["Не звоните сейчас, я за рулём", "не звоните мне позже шести", "Да, удобно",
                                  "звоните завтра", "я не понял, кто звонит", "не знаю"])
def test_not_opt_out(text):
    assert detect_opt_out(text) is None
