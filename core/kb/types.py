"""What retrieval returns to the dialog runtime: text plus where it came from."""
from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class Snippet:
    text: str
    score: float
    chunk_id: uuid.UUID
    source_id: uuid.UUID | None   # document source, None for a FAQ entry without a source
    entry_id: uuid.UUID | None    # FAQ entry, None for document chunks
    source_name: str              # document name or the FAQ question
    citation: str                 # human-readable reference, e.g. "Прайс.pdf, стр. 2"
