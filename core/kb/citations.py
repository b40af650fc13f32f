"""How a snippet names where it came from (pure): "Прайс.pdf, стр. 2", "FAQ: «Как записаться?»"."""
from __future__ import annotations


def document_citation(source_name: str, meta: dict | None) -> str:
    """Document name plus the page (PDF) or else the section heading the chunk sits under."""
    meta = meta or {}
    if meta.get("page"):
        return f"{source_name}, стр. {meta['page']}"
    if meta.get("heading"):
        return f"{source_name}, раздел «{meta['heading']}»"
    return source_name


def faq_citation(question: str, source_name: str | None = None) -> str:
    """An FAQ entry is cited by its question (and its FAQ set's name when it belongs to one)."""
    return f"{source_name or 'FAQ'}: «{question.strip()}»"


def faq_chunk_text(question: str, answer: str) -> str:
    """What an FAQ entry's single chunk holds (searched, and what the agent reads): the question on
    the first line, the answer after it. No "Вопрос:/Ответ:" labels: they would be search words
    shared by every entry."""
    return f"{question.strip()}\n{answer.strip()}"
