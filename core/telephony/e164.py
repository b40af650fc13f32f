"""Phone numbers in E.164: normalization, validation, callee timezone, digit groups for speech.

Everything the platform stores, routes and dials is E.164 with a leading ``+`` (``+74951234567``).
Users type numbers the Russian way (``8 (495) 123-45-67``, ``+7 495 1234567``, ``74951234567``),
so input goes through :func:`normalize_e164` once, at the API boundary; errors carry a Russian
message the cabinet shows next to the field.

Russia and Kazakhstan share the country code +7; ``phonenumbers`` tells them apart by the area
code (``+7 7172 ...`` is Astana), which matters for the callee's local time in campaigns.
"""
from __future__ import annotations

import re

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult
from phonenumbers import timezone as pn_timezone

__all__ = ["normalize_e164", "is_valid_e164", "region_timezone", "format_for_speech_groups",
           "E164_RE"]

# Syntactic E.164: "+", a non-zero first digit, at most 15 digits in all.
E164_RE = re.compile(r"^\+[1-9]\d{6,14}$")

_EXAMPLE = "Пример: +7 495 123-45-67"

# Single-timezone countries where phonenumbers' per-prefix data is missing or misleading (+7 mobile
# ranges are shared with Russia and come back with every Russian zone). Russia itself spans 11
# zones, so an ambiguous Russian number has no answer and the caller uses the project timezone.
_COUNTRY_TIMEZONE = {
    "KZ": "Asia/Almaty",      # one zone (UTC+5) since March 2024
    "BY": "Europe/Minsk",
    "UZ": "Asia/Tashkent",
    "KG": "Asia/Bishkek",
    "TJ": "Asia/Dushanbe",
    "AM": "Asia/Yerevan",
    "AZ": "Asia/Baku",
    "GE": "Asia/Tbilisi",
    "MD": "Europe/Chisinau",
    "TM": "Asia/Ashgabat",
}

_REASON_TEXT = {
    ValidationResult.INVALID_COUNTRY_CODE: "неизвестный код страны",
    ValidationResult.TOO_SHORT: "в номере не хватает цифр",
    ValidationResult.INVALID_LENGTH: "неверное количество цифр",
    ValidationResult.TOO_LONG: "в номере лишние цифры",
}


def _parse(raw: str, default_region: str) -> phonenumbers.PhoneNumber:
    text = (raw or "").strip()
    if not text:
        raise ValueError("Укажите номер телефона. " + _EXAMPLE)
    digits = re.sub(r"\D", "", text)
    try:
        number = phonenumbers.parse(text, default_region)
    except NumberParseException as exc:
        if exc.error_type == NumberParseException.INVALID_COUNTRY_CODE:
            raise ValueError(f"Некорректный номер «{text}»: неизвестный код страны. {_EXAMPLE}") from None
        if exc.error_type in (NumberParseException.TOO_SHORT_NSN,
                              NumberParseException.TOO_SHORT_AFTER_IDD):
            raise ValueError(f"Некорректный номер «{text}»: в номере не хватает цифр. {_EXAMPLE}") from None
        if exc.error_type == NumberParseException.TOO_LONG:
            raise ValueError(f"Некорректный номер «{text}»: в номере лишние цифры. {_EXAMPLE}") from None
        raise ValueError(f"«{text}» не похоже на номер телефона. {_EXAMPLE}") from None
    meta = phonenumbers.PhoneMetadata.metadata_for_region(default_region or "")
    national_prefix = (meta.national_prefix or "") if meta else ""
    if (not phonenumbers.is_valid_number(number) and not text.startswith("+") and digits
            and not (national_prefix and digits.startswith(national_prefix))):
        # "375291234567" typed without "+": an international number without the plus sign. Not
        # tried for "8..." in Russia: that is the trunk prefix, and "+84..." would be Vietnam.
        try:
            alt = phonenumbers.parse("+" + digits, None)
        except NumberParseException:
            alt = None
        if alt is not None and phonenumbers.is_valid_number(alt):
            number = alt
    return number


def normalize_e164(raw: str, default_region: str = "RU") -> str:
    """Return ``raw`` as E.164 (``+74951234567``); raise ``ValueError`` with a Russian message.

    Accepts the forms people actually type: ``8 (495) 123-45-67``, ``+7 495 1234567``,
    ``74951234567``, ``84951234567``, ``4951234567`` and foreign numbers with ``+``. Numbers with an
    extension (``доб. 123``) are refused: an extension cannot be dialled as part of E.164.
    """
    number = _parse(raw, default_region)
    text = raw.strip()
    if number.extension:
        raise ValueError(f"Некорректный номер «{text}»: добавочный номер указать нельзя, "
                         "оставьте только основной номер")
    if not phonenumbers.is_valid_number(number):
        reason = phonenumbers.is_possible_number_with_reason(number)
        detail = _REASON_TEXT.get(reason)
        if detail is None:
            detail = "такого номера нет в плане нумерации, проверьте код города или оператора"
        raise ValueError(f"Некорректный номер «{text}»: {detail}. {_EXAMPLE}")
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def is_valid_e164(value: str) -> bool:
    """True when ``value`` is already canonical E.164 and a real number range (no normalization)."""
    if not isinstance(value, str) or not E164_RE.match(value):
        return False
    try:
        number = phonenumbers.parse(value, None)
    except NumberParseException:
        return False
    return (phonenumbers.is_valid_number(number)
            and phonenumbers.format_number(number, PhoneNumberFormat.E164) == value)


def region_timezone(e164: str) -> str | None:
    """IANA timezone of the callee (``Europe/Moscow``, ``Asia/Vladivostok``) or None when unknown.

    Campaigns use it to call people within their local hours. Geographic (landline) numbers map
    to one zone; Russian mobile numbers are not tied to a region, so they return None and the
    caller falls back to the project's timezone. Raises ``ValueError`` for a non-E.164 input.
    """
    if not isinstance(e164, str) or not E164_RE.match(e164):
        raise ValueError(f"Ожидается номер в формате E.164 (+74951234567), получено «{e164}»")
    try:
        number = phonenumbers.parse(e164, None)
    except NumberParseException:
        return None
    region = phonenumbers.region_code_for_number(number)
    if region in _COUNTRY_TIMEZONE:
        return _COUNTRY_TIMEZONE[region]
    zones = [z for z in pn_timezone.time_zones_for_number(number) if z != "Etc/Unknown"]
    if len(zones) == 1:
        return zones[0]
    return None


def format_for_speech_groups(e164: str) -> list[str]:
    """Digit groups in the order a Russian speaker reads a number: ``["+7", "495", "123", "45", "67"]``.

    The TTS layer turns each group into words; grouping follows the national format of the number's
    country (Russian numbers: code, then 3-2-2), which is how people dictate and remember numbers.
    """
    if not isinstance(e164, str) or not E164_RE.match(e164):
        raise ValueError(f"Ожидается номер в формате E.164 (+74951234567), получено «{e164}»")
    try:
        number = phonenumbers.parse(e164, None)
        text = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
    except NumberParseException:
        text = e164
    groups = [g for g in re.split(r"[\s\-()]+", text) if g]
    if not groups or not groups[0].startswith("+"):
        return [e164]
    if groups[0] == "+7" and len(groups) > 2:
        # Russia and Kazakhstan: whatever the library's layout, read the subscriber part as
        # 3-2-2 (or 2-2-2), the way it is dictated ("701 123 4567" -> "123-45-67").
        tail = "".join(groups[2:])
        sizes = _RU_TAIL_SPLIT.get(len(tail))
        if sizes:
            parts, pos = [], 0
            for size in sizes:
                parts.append(tail[pos:pos + size])
                pos += size
            groups = groups[:2] + parts
    return groups


_RU_TAIL_SPLIT = {7: (3, 2, 2), 6: (2, 2, 2), 5: (3, 2)}
