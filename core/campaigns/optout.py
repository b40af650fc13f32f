"""Opt-out detection: a callee saying "не звоните мне" goes straight into the project's DNC list.

Matching is on normalized Russian text (lower case, ё -> е, punctuation dropped) against phrase
patterns that allow a few words in between ("больше никогда мне не звоните"); a plain "не звоните
сейчас, я за рулём" is not an opt-out, so phrases asking to call later are excluded.
"""
from __future__ import annotations

import re

_PATTERNS = [
    r"\bне (надо |нужно |стоит )?(мне |нам |сюда |больше |никогда |сюда больше )*(звоните|звонить|звони|набирайте)\b",
    r"\bхватит (мне |нам )?(звонить|названивать)\b",
    r"\bпрекратите (мне |нам )?(звонить|названивать|звонки)\b",
    r"\bперестаньте (мне |нам )?(звонить|названивать)\b",
    r"\bудалите (мой |мои |этот |наш )?(номер|телефон|данные|контакт)",
    r"\bуберите (мой |этот |наш )?(номер|телефон)",
    r"\bвычеркните (мой |этот )?(номер|телефон|меня)",
    r"\bотпишите меня\b",
    r"\bвнесите (мой номер |меня )?в (черный|стоп) список",
    r"\bне беспокойте (меня|нас) (больше|никогда)",
    r"\bбольше не беспокойте\b",
    r"\bзапрещаю (вам )?(мне )?звонить\b",
]
_LATER = re.compile(r"\b(сейчас|позже|потом|завтра|вечером|утром|в другой раз|через)\b")
_COMPILED = [re.compile(p) for p in _PATTERNS]


def normalize(text: str) -> str:
    text = (text or "").lower().replace("ё", "е")
    text = re.sub(r"[^\w\s-]", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def detect_opt_out(text: str) -> str | None:
    """The matched phrase when ``text`` asks not to be called any more, else None."""
    norm = normalize(text)
    for pattern in _COMPILED:
        m = pattern.search(norm)
        if m is None:
            continue
        tail = norm[m.end():m.end() + 25]
        if pattern is _COMPILED[0] and _LATER.search(tail) and "больше" not in m.group(0) \
                and "никогда" not in m.group(0):
            continue  # "не звоните сейчас" / "не звоните мне позже 18" ask for a better time
        return m.group(0)
    return None
