"""What kind of turn the caller said, by keywords (deterministic, same in every mode).

Escalation triggers and guardrail questions must not depend on an LLM's mood: "позовите оператора"
always reaches a person, "вы робот?" always gets the honest answer.
"""
from __future__ import annotations

import re

from core.agent.parsing import fold

HUMAN = (r"оператор", r"живо\w* (человек|сотрудник)", r"\bс человеком\b", r"менеджер", r"\bсоедини",
         r"\bпереключи", r"\bпозови", r"\bпереведи\w* (меня|на)")
ROBOT = (r"\b(вы|ты)\s+(робот|бот|машина|автомат|живой|живая|человек|настоящ)", r"\bэто\s+(робот|бот|автоответчик)",
         r"\b(робот|бот)\s+(ли|или)\b", r"с (роботом|ботом|машиной) (говорю|разговариваю)",
         r"(говорю|разговариваю) с (роботом|ботом|человеком|машиной)", r"искусственн\w+ интеллект",
         r"\bкто (это|звонит|говорит)\b", r"откуда (вы )?звоните")
BYE = (r"до свидания", r"всего доброго", r"\bпока\b", r"больше ничего", r"это вс[её]", r"вс[её],? спасибо",
       r"ничего не нужно", r"до встречи", r"всего хорошего")
NEGATIVE = (r"ужасн", r"безобраз", r"жалоб", r"идиот", r"надоел", r"отвратительн", r"кошмар", r"обман",
            r"верните деньги", r"хамств", r"мошенни", r"суд\b", r"претензи", r"достали", r"бесит", r"тупой",
            r"бесполезн")
QUESTION_WORDS = (r"\bсколько\b", r"\bкак\b", r"\bгде\b", r"\bкогда\b", r"\bпочему\b", r"\bзачем\b", r"\bчто\b",
                  r"\bкакой\b", r"\bкакая\b", r"\bкакие\b", r"\bможно ли\b", r"\bесть ли\b", r"\bли\b",
                  r"\bподскажите\b", r"\bрасскажите\b", r"\bцен[аыу]\b", r"\bстоимост", r"\bстоит\b",
                  r"\bадрес\b", r"\bработаете\b", r"\bчасы работы\b")


def _any(patterns: tuple[str, ...] | list[str], text: str) -> bool:
    f = fold(text)
    return any(re.search(p, f) for p in patterns)


def wants_human(text: str) -> bool:
    f = fold(text)
    if re.search(r"\bне (нужно|надо|хочу)\b.*(оператор|человек|менеджер)", f):
        return False
    return _any(HUMAN, text) and not asks_robot(text)


def asks_robot(text: str) -> bool:
    return _any(ROBOT, text)


def says_bye(text: str) -> bool:
    return _any(BYE, text)


def negative(text: str, extra_keywords: list[str] | None = None) -> str | None:
    """The negative keyword found (sentiment or the agent's own list), else None."""
    f = fold(text)
    for kw in extra_keywords or []:
        if fold(kw) and fold(kw) in f:
            return kw
    for p in NEGATIVE:
        m = re.search(p, f)
        if m:
            return m.group(0)
    return None


INFO_WORDS = (r"\bсколько\b", r"\bгде\b", r"\bпочему\b", r"\bзачем\b", r"\bцен[аыу]\b", r"\bстоимост",
              r"\bстоит\b", r"\bадрес\b", r"\bчасы работы\b", r"\bподскажите\b", r"\bрасскажите\b",
              r"\bво сколько\b", r"\bкак (добраться|проехать|оплатить|подключить)")


def is_question(text: str) -> bool:
    return "?" in text or _any(QUESTION_WORDS, text)


def asks_info(text: str) -> bool:
    """A request for information ("сколько стоит", "где вы"), not an answer that ends with "?"."""
    return _any(INFO_WORDS, text)
