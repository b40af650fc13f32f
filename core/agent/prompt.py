"""Prompt assembly for the LLM and the guardrail that checks what it says.

The static part (persona, rules, facts, tool list) is the cached prefix of every request; the
dynamic part (knowledge snippets for this turn, collected fields, what to do now) goes after the
conversation so the engine pays only for it. ``unsupported_numbers`` is the "no invented prices"
guardrail: a reply may only name numbers that appear in the config, the knowledge snippets, the
collected fields, tool results or the caller's words.
"""
from __future__ import annotations

import re
from typing import Any, Iterable

from core.agent.parsing import fold, words_to_digits
from core.engines.base import Message


def system_prompt(cfg: dict[str, Any]) -> str:
    """The static instructions of an agent (cached prefix)."""
    informal = cfg["adaptive"]["formality"] == "informal"
    who = " ".join(x for x in (cfg.get("role"), f"компании «{cfg['company']}»" if cfg.get("company") else "") if x)
    lines = [f"Ты — голосовой помощник{(' (' + who + ')') if who else ''}, разговариваешь по телефону."]
    if cfg.get("persona"):
        lines.append(cfg["persona"])
    if cfg.get("goal"):
        lines.append(f"Цель разговора: {cfg['goal']}")
    lines += [
        "Правила:",
        f"- Отвечай по-русски, коротко: одно-два предложения. Обращайся к клиенту на «{'ты' if informal else 'вы'}».",
        "- Называй только факты, цены, сроки и адреса из разделов «Факты» и «База знаний». Если ответа там нет, "
        "честно скажи, что точной информации нет, и предложи соединить с сотрудником. Ничего не выдумывай.",
        "- Если спросят, робот ли ты, честно скажи, что ты голосовой помощник, а не человек.",
        "- Если не понял клиента, переспроси, не угадывай.",
    ]
    if cfg.get("topics"):
        lines.append(f"- Говори только на темы: {', '.join(cfg['topics'])}. На посторонние вопросы вежливо "
                     "возвращай разговор к теме.")
    if cfg.get("facts"):
        lines.append("Факты:")
        lines += [f"- {f}" for f in cfg["facts"]]
    return "\n".join(lines)


def turn_context(snippets: Iterable[Any], fields: dict[str, Any], labels: dict[str, str],
                 instruction: str) -> Message:
    """The dynamic system message of one turn: knowledge, collected fields, what to do now."""
    parts = []
    snippets = list(snippets)
    if snippets:
        parts.append("База знаний:")
        parts += [f"[{i + 1}] {s.text.strip()}" for i, s in enumerate(snippets)]
    if fields:
        parts.append("Уже известно: " + "; ".join(f"{labels.get(k, k)} — {v}" for k, v in fields.items()))
    if instruction:
        parts.append(f"Сейчас: {instruction}")
    return Message("system", "\n".join(parts) or "Продолжай разговор.")


_NUM = re.compile(r"\d+(?:[.,]\d+)?")


def numbers_in(text: str) -> set[str]:
    """Numbers in a text, digits or Russian number words, normalized ("1 000" and "1000" alike)."""
    converted = words_to_digits(fold(text))
    converted = re.sub(r"(?<=\d)[\s\u00a0](?=\d{3}\b)", "", converted)
    return {n.replace(",", ".").lstrip("0") or "0" for n in _NUM.findall(converted)}


def unsupported_numbers(reply: str, allowed_texts: Iterable[str]) -> set[str]:
    """Numbers of ``reply`` (10 and above) that none of ``allowed_texts`` contains."""
    allowed: set[str] = set()
    for text in allowed_texts:
        allowed |= numbers_in(text)
    out = set()
    for n in numbers_in(reply):
        try:
            small = float(n) < 10
        except ValueError:
            small = False
        if not small and n not in allowed:
            out.add(n)
    return out
