"""The callee's time zone: the contact's own, else the number's region, else the project's.

Russian geographic (ABC) codes map to one region and so to one zone; mobile (DEF, 9xx) codes are
not tied to a region since number portability (2013), so a mobile number without a contact time
zone falls back to the project's zone. The small table below pins the ABC codes whose zone is
unambiguous and matters most (the far east and Kaliningrad, where a Moscow-time guess is off by
many hours); other numbers go through ``core.telephony.e164.region_timezone`` (phonenumbers'
geocoding data), which returns None when a number spans several zones.
"""
from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.telephony.e164 import E164_RE, region_timezone

# "+7" + ABC code -> zone. Source: Rossvyaz numbering plan (ABC codes are per subject of the
# federation) and the federal law on time calculation (107-FZ, zones per subject).
RU_ABC_TIMEZONES: dict[str, str] = {
    "+7401": "Europe/Kaliningrad",    # Kaliningrad oblast, UTC+2
    "+7495": "Europe/Moscow", "+7499": "Europe/Moscow",  # Moscow, UTC+3
    "+7812": "Europe/Moscow",          # Saint Petersburg
    "+7846": "Europe/Samara",          # Samara, UTC+4
    "+7343": "Asia/Yekaterinburg",     # Sverdlovsk oblast, UTC+5
    "+7381": "Asia/Omsk",              # Omsk, UTC+6
    "+7383": "Asia/Novosibirsk",       # Novosibirsk, UTC+7
    "+7391": "Asia/Krasnoyarsk",       # Krasnoyarsk krai, UTC+7
    "+7395": "Asia/Irkutsk",           # Irkutsk oblast, UTC+8
    "+7411": "Asia/Yakutsk",           # Yakutia (Yakutsk), UTC+9
    "+7423": "Asia/Vladivostok",       # Primorsky krai, UTC+10
    "+7421": "Asia/Vladivostok",       # Khabarovsk krai, UTC+10
    "+7413": "Asia/Magadan",           # Magadan oblast, UTC+11
    "+7415": "Asia/Kamchatka",         # Kamchatka krai, UTC+12
    "+7427": "Asia/Kamchatka",         # Chukotka, UTC+12
}


@dataclass(frozen=True)
class ResolvedZone:
    name: str
    source: str  # contact | region | project


def known_zone(name: str | None) -> bool:
    if not name:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def number_timezone(e164: str) -> str | None:
    """Zone of the number's region, or None when the number does not pin one (mobile, unknown)."""
    if not isinstance(e164, str) or not E164_RE.match(e164):
        return None
    for length in (5,):
        zone = RU_ABC_TIMEZONES.get(e164[:length])
        if zone:
            return zone
    try:
        return region_timezone(e164)
    except ValueError:
        return None


def resolve_timezone(contact_tz: str | None, e164: str, project_tz: str) -> ResolvedZone:
    """Fallback chain of issue 7: contact's zone -> the number region's zone -> the project's."""
    if known_zone(contact_tz):
        return ResolvedZone(str(contact_tz), "contact")
    zone = number_timezone(e164)
    if zone:
        return ResolvedZone(zone, "region")
    return ResolvedZone(project_tz if known_zone(project_tz) else "Europe/Moscow", "project")
