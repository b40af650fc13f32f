"""What each chunk is embedded as (pure): several views of one FAQ entry, one of a document chunk.

A caller rarely words a question like the stored one; often they ask about something only the
answer mentions ("Где оставить машину?" for "Есть ли парковка?" whose answer says "парковка во
дворе"). So an FAQ entry is embedded as its question, as question plus answer, as its answer and as
each sentence of a longer answer; a document chunk as its text. Retrieval scores a chunk per *group*
of views (the best view of the group) and fuses the groups (``core.kb.fusion``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# view kind -> group it is scored in
GROUP_OF_KIND = {"question": "question", "qa": "whole", "text": "whole", "answer": "answer", "sentence": "answer"}

_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+(?=\S)")
_MIN_SENTENCE = 12  # characters: shorter pieces ("Да.") say nothing on their own


@dataclass(frozen=True)
class View:
    kind: str       # question | qa | answer | sentence | text
    text: str
    is_query: bool  # embedded as a query (a question), else as a passage (asymmetric models)

    @property
    def group(self) -> str:
        return GROUP_OF_KIND[self.kind]


def sentences(text: str) -> list[str]:
    """Sentences of an answer (split after . ! ? ;), short fragments dropped."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if len(s.strip()) >= _MIN_SENTENCE]


def entry_views(question: str, answer: str) -> list[View]:
    """An FAQ entry's views; per-sentence views only when the answer has more than one sentence."""
    question, answer = question.strip(), answer.strip()
    views = [View("question", question, True), View("qa", f"{question}\n{answer}", False)]
    if answer:
        views.append(View("answer", answer, False))
        parts = sentences(answer)
        if len(parts) > 1:
            views += [View("sentence", s, False) for s in parts]
    return views


def document_views(text: str) -> list[View]:
    """A document chunk is one view: its text (headings are already repeated on top of it)."""
    return [View("text", text.strip(), False)]
