"""Reading field values out of what the caller said (Russian), deterministically.

Used by the dialog runtime in every mode: in scripted mode it is the only understanding there is;
with an LLM, values the LLM extracts still go through the same ``parse_field`` so a value is never
stored unvalidated. Parsers take recognised speech (digits or number words, any case, "ё"/"е")
and return the normalized value or ``None`` ("ask again instead of guessing").
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

MONTHS = ("январ", "феврал", "март", "апрел", "ма", "июн", "июл", "август", "сентябр", "октябр", "ноябр", "декабр")
MONTHS_GEN = ("января", "февраля", "марта", "апреля", "мая", "июня", "июля", "августа", "сентября", "октября",
              "ноября", "декабря")
WEEKDAYS = ("понедельник", "вторник", "сред", "четверг", "пятниц", "суббот", "воскресень")
WEEKDAYS_ACC = ("понедельник", "вторник", "среду", "четверг", "пятницу", "субботу", "воскресенье")

_UNITS = {"ноль": 0, "один": 1, "одна": 1, "одну": 1, "первого": 1, "два": 2, "две": 2, "три": 3, "четыре": 4,
          "пять": 5, "шесть": 6, "семь": 7, "восемь": 8, "девять": 9, "десять": 10, "одиннадцать": 11,
          "двенадцать": 12, "тринадцать": 13, "четырнадцать": 14, "пятнадцать": 15, "шестнадцать": 16,
          "семнадцать": 17, "восемнадцать": 18, "девятнадцать": 19}
_TENS = {"двадцать": 20, "тридцать": 30, "сорок": 40, "пятьдесят": 50, "шестьдесят": 60, "семьдесят": 70,
         "восемьдесят": 80, "девяносто": 90}
_HUNDREDS = {"сто": 100, "двести": 200, "триста": 300, "четыреста": 400, "пятьсот": 500, "шестьсот": 600,
             "семьсот": 700, "восемьсот": 800, "девятьсот": 900}
_ORDINAL_DAYS = {"первое": 1, "второе": 2, "третье": 3, "четвертое": 4, "пятое": 5, "шестое": 6, "седьмое": 7,
                 "восьмое": 8, "девятое": 9, "десятое": 10, "одиннадцатое": 11, "двенадцатое": 12,
                 "тринадцатое": 13, "четырнадцатое": 14, "пятнадцатое": 15, "шестнадцатое": 16,
                 "семнадцатое": 17, "восемнадцатое": 18, "девятнадцатое": 19, "двадцатое": 20, "тридцатое": 30}
_ORDINALS = {"перв": 1, "втор": 2, "трет": 3, "четверт": 4, "пят": 5, "шест": 6, "седьм": 7, "восьм": 8, "девят": 9}

YES = ("да", "верно", "правильно", "конечно", "ага", "угу", "точно", "подтверждаю", "все так", "всё так",
       "именно", "так точно", "да да", "хорошо", "согласен", "согласна", "приду", "ок", "окей", "давайте")
NO = ("нет", "неверно", "неправильно", "не так", "ошибка", "не то", "не верно", "нет нет", "не надо", "отмена",
      "не правильно")

NAME_STOP = {"меня", "зовут", "это", "я", "мое", "моё", "имя", "звать", "здравствуйте", "добрый", "день", "вечер",
             "утро", "алло", "да", "нет", "ну", "вот", "так", "слушаю", "пожалуйста", "привет"}


def fold(text: str) -> str:
    """Lower case, "ё" as "е", punctuation as spaces, single spaces."""
    text = text.lower().replace("ё", "е")
    return " ".join(re.sub(r"[^\w+:.\-/]+", " ", text).split())


def words(text: str) -> list[str]:
    return re.findall(r"[a-zа-я0-9]+", fold(text))


def words_to_digits(text: str) -> str:
    """Number words to digits: "восемь девятьсот шестнадцать" -> "8 916"; keeps other words."""
    out: list[str] = []
    pending: int | None = None
    for w in re.findall(r"\d+(?:[:./-]\d+)*|[a-zа-яё]+|\S", text.lower().replace("ё", "е")):
        if w.startswith("тысяч") and (pending is None or pending < 1000):
            pending = (pending or 1) * 1000
            continue
        if w in _HUNDREDS or w in _TENS or w in _UNITS:
            value = _HUNDREDS.get(w, _TENS.get(w, _UNITS.get(w, 0)))
            if pending is not None and (
                    (pending % 1000 == 0 and pending >= 1000 and value < 1000)
                    or (pending % 100 == 0 and pending >= 100 and value < 100)
                    or (pending % 10 == 0 and pending >= 20 and pending % 100 != 0 and value < 10)
                    or (pending >= 100 and pending % 100 == 0 and value < 100)):
                pending += value
            else:
                if pending is not None:
                    out.append(str(pending))
                pending = value
            continue
        if pending is not None:
            out.append(str(pending))
            pending = None
        out.append(w)
    if pending is not None:
        out.append(str(pending))
    return " ".join(out)


def is_yes(text: str) -> bool:
    f = fold(text)
    if is_no(text):
        return False
    return any(re.search(rf"(^|\s){re.escape(y)}($|\s)", f) for y in YES)


def is_no(text: str) -> bool:
    f = fold(text)
    return any(re.search(rf"(^|\s){re.escape(n)}($|\s)", f) for n in NO)


# ---- phone ----------------------------------------------------------------------------------------

def parse_phone(text: str, caller_phone: str | None = None, use_caller_phone: bool = True) -> str | None:
    """An E.164 number from digits or number words; "этот номер" means the caller's number."""
    from core.telephony.e164 import normalize_e164
    f = fold(text)
    if use_caller_phone and caller_phone and re.search(r"(этот|этого|этому|с которого|текущ|тот же|мой) номер", f):
        try:
            return normalize_e164(caller_phone)
        except ValueError:
            return None
    digits = re.sub(r"\D", "", words_to_digits(text))
    if len(digits) < 10 or len(digits) > 15:
        return None
    if len(digits) == 10:
        digits = "7" + digits
    if len(digits) == 11 and digits[0] == "8":
        digits = "7" + digits[1:]
    try:
        return normalize_e164("+" + digits)
    except ValueError:
        return None


# ---- name -----------------------------------------------------------------------------------------

def parse_name(text: str) -> str | None:
    """A person's name: "меня зовут Анна Петрова" -> "Анна Петрова"; 1-3 words of letters."""
    raw = re.sub(r"[^\w\s-]", " ", text)
    m = re.search(r"(?:меня зовут|зовут|моё имя|мое имя|это|я)\s+(.+)$", raw, re.IGNORECASE)
    if m:
        raw = m.group(1)
    parts = [p for p in raw.split() if p.lower().replace("ё", "е") not in NAME_STOP]
    if not parts or len(parts) > 3 or any(not re.fullmatch(r"[A-Za-zА-Яа-яЁё-]{2,}", p) for p in parts):
        return None
    return " ".join(p[:1].upper() + p[1:].lower() for p in parts)


# ---- dates and times ------------------------------------------------------------------------------

def parse_date(text: str, today: dt.date) -> dt.date | None:
    """"сегодня", "завтра", "послезавтра", "в пятницу", "15 марта", "15.03", "2025-03-15"."""
    f = fold(words_to_digits(text))
    if "послезавтра" in f:
        return today + dt.timedelta(days=2)
    if "завтра" in f:
        return today + dt.timedelta(days=1)
    if "сегодня" in f:
        return today
    m = re.search(r"(\d{4})-(\d{2})-(\d{2})", f)
    if m:
        return _safe_date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    m = re.search(r"(?<![\d:])(?<!в )(\d{1,2})[./](\d{1,2})(?:[./](\d{2,4}))?(?![\d:])", f)
    if m:
        year = int(m.group(3)) if m.group(3) else today.year
        year = year + 2000 if year < 100 else year
        found = _safe_date(year, int(m.group(2)), int(m.group(1)))
        if found and not m.group(3) and found < today:
            found = _safe_date(year + 1, found.month, found.day)
        return found
    for word, day in _ORDINAL_DAYS.items():
        f = re.sub(rf"\b{word}\b", str(day), f)
    m = re.search(r"(\d{1,2})\s+([а-я]+)", f)
    if m:
        for i, stem in enumerate(MONTHS):
            if m.group(2).startswith(stem) and (stem != "ма" or m.group(2) in ("мая", "май")):
                found = _safe_date(today.year, i + 1, int(m.group(1)))
                if found and found < today:
                    found = _safe_date(today.year + 1, i + 1, int(m.group(1)))
                return found
    for i, stem in enumerate(WEEKDAYS):
        if re.search(rf"\b{stem}", f):
            ahead = (i - today.weekday()) % 7
            if "следующ" in f:
                ahead += 7 if ahead else 7
            return today + dt.timedelta(days=ahead or 7)
    return None


def _safe_date(y: int, m: int, d: int) -> dt.date | None:
    try:
        return dt.date(y, m, d)
    except ValueError:
        return None


def parse_time(text: str) -> dt.time | None:
    """"в 10", "в 10:30", "в 15.00", "в десять утра", "в три часа дня", "в половине одиннадцатого"."""
    f = fold(words_to_digits(text))
    half = re.search(r"половин[аеу]?\s+([а-я]+)", f)
    if half:
        for stem, n in {**_ORDINALS, "десят": 10, "одиннадцат": 11, "двенадцат": 12}.items():
            if half.group(1).startswith(stem):
                hour = n - 1
                return _adjust(hour, 30, f)
    m = re.search(r"(?<![\d.])(\d{1,2}):(\d{2})(?!\d)", f) or \
        re.search(r"(?:^|\s)(?:в|к|на|около|после|с)\s+(\d{1,2})\.(\d{2})(?![\d.])", f)
    if m:
        return _adjust(int(m.group(1)), int(m.group(2)), f)
    m = re.search(r"(?:^|\s)(?:в|к|на|около|после)\s+(\d{1,2})(?:\s+(\d{2}))?(?!\d)", f) or \
        re.search(r"(\d{1,2})\s*(?:час|ч\b)", f)
    if m:
        minute = int(m.group(2)) if m.lastindex and m.lastindex >= 2 and m.group(2) else 0
        return _adjust(int(m.group(1)), minute, f)
    m = re.fullmatch(r"(\d{1,2})(?:\s+(\d{2}))?", f.strip())
    if m:
        return _adjust(int(m.group(1)), int(m.group(2) or 0), f)
    if "полдень" in f:
        return dt.time(12, 0)
    return None


def _adjust(hour: int, minute: int, f: str) -> dt.time | None:
    if ("дня" in f or "вечера" in f) and hour < 12:
        hour += 12
    elif "ночи" in f and hour == 12:
        hour = 0
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        return None
    return dt.time(hour, minute)


# ---- choice ---------------------------------------------------------------------------------------

def _stem(word: str) -> str:
    return word[:5] if len(word) > 5 else word


def parse_choice(text: str, choices: list[dict[str, Any]], dtmf: str | None = None) -> str | None:
    """The ``value`` of the choice the caller named (label, synonym, stem, "первый", or its digit)."""
    if dtmf and dtmf.isdigit() and 1 <= int(dtmf) <= len(choices):
        return choices[int(dtmf) - 1]["value"]
    f = fold(text)
    tokens = set(_stem(w) for w in words(text))
    best: tuple[int, str] | None = None
    for c in choices:
        phrases = [c["label"], c["value"], *(c.get("synonyms") or [])]
        for phrase in phrases:
            pf = fold(phrase)
            if not pf:
                continue
            if re.search(rf"(^|\s){re.escape(pf)}($|\s)", f):
                score = 100 + len(pf)
            else:
                pw = [_stem(w) for w in words(phrase)]
                hit = sum(1 for w in pw if w in tokens)
                score = hit * 10 if pw and hit == len(pw) else 0
            if score and (best is None or score > best[0]):
                best = (score, c["value"])
    if best:
        return best[1]
    for stem, n in _ORDINALS.items():
        if re.search(rf"\b{stem}(ый|ой|ий|ая|ое|ье|ья|ую)\b", f) and n <= len(choices):
            return choices[n - 1]["value"]
    return None


# ---- one entry point ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Parsed:
    value: Any          # JSON-able normalized value
    spoken: str         # how to read it back


def spoken_date(d: dt.date) -> str:
    return f"{d.day} {MONTHS_GEN[d.month - 1]}, {WEEKDAYS_ACC[d.weekday()]}"


def spoken_time(t: dt.time) -> str:
    return f"{t.hour}:{t.minute:02d}"


def spoken_phone(e164: str) -> str:
    d = e164.lstrip("+")
    if len(d) == 11:
        return f"+{d[0]} {d[1:4]} {d[4:7]}-{d[7:9]}-{d[9:]}"
    return e164


def parse_field(field: dict[str, Any], text: str, *, today: dt.date, caller_phone: str | None = None,
                dtmf: str | None = None) -> Parsed | None:
    """The value of ``field`` in ``text`` (or DTMF digits), validated, or None."""
    kind = field["type"]
    source = dtmf if dtmf and kind in ("phone", "text") else text
    if kind == "phone":
        value = parse_phone(source or "", caller_phone, field.get("use_caller_phone", True))
        return Parsed(value, spoken_phone(value)) if value else None
    if kind == "name":
        value = parse_name(text)
        return Parsed(value, value) if value else None
    if kind == "choice":
        value = parse_choice(text, field.get("choices") or [], dtmf)
        if value is None:
            return None
        label = next(c["label"] for c in field["choices"] if c["value"] == value)
        return Parsed(value, label)
    if kind == "date":
        d = parse_date(text, today)
        if d is None or (field.get("future_only", True) and d < today):
            return None
        return Parsed(d.isoformat(), spoken_date(d))
    if kind == "time":
        t = parse_time(text)
        return Parsed(t.strftime("%H:%M"), spoken_time(t)) if t else None
    if kind == "datetime":
        d, t = parse_date(text, today), parse_time(text)
        if d is None or t is None or (field.get("future_only", True) and d < today):
            return None
        return Parsed(f"{d.isoformat()}T{t.strftime('%H:%M')}", f"{spoken_date(d)}, в {spoken_time(t)}")
    value = " ".join((source or "").split())
    if len(value) < max(1, int(field.get("min_length", 2))) or len(value) > int(field.get("max_length", 1000)):
        return None
    if field.get("pattern") and not re.search(field["pattern"], value):
        return None
    return Parsed(value, value)


def parse_partial_datetime(field: dict[str, Any], text: str, today: dt.date,
                           have: dict[str, str]) -> dict[str, str]:
    """For datetime fields said in two turns ("завтра" ... "в десять"): the parts found so far."""
    out = dict(have)
    d, t = parse_date(text, today), parse_time(text)
    if d is not None and not (field.get("future_only", True) and d < today):
        out["date"] = d.isoformat()
    if t is not None:
        out["time"] = t.strftime("%H:%M")
    return out
