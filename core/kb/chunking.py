"""Cutting extracted document text into retrieval chunks (pure: no I/O).

Extraction yields ``Block``s (a paragraph with the page it is on and the heading it sits under).
Chunks follow the document's structure: a chunk never spans two sections (headings) or two pages,
so every chunk can be cited as "Прайс.pdf, стр. 2" or "Правила.docx, раздел «Оплата»". Consecutive
paragraphs of one section are packed up to ``max_chars``; a section longer than that is split with
an overlap (the tail of the previous chunk starts the next) so that a fact cut at the border is
still found whole in one of the two chunks. The section heading is repeated at the top of every
chunk: it is often the words a caller uses ("Запись на приём").
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable

MAX_CHARS = 900
OVERLAP_CHARS = 150

_SENTENCE_END = re.compile(r"(?<=[.!?…;:])\s+")
_SPACES = re.compile(r"[ \t\u00a0\u200b]+")


@dataclass(frozen=True)
class Block:
    """One paragraph (or table row) of a document."""

    text: str
    page: int | None = None      # 1-based page of PDFs; None where a format has no pages
    heading: str | None = None   # nearest heading above the paragraph


@dataclass
class Chunk:
    text: str
    meta: dict = field(default_factory=dict)  # page, heading, ordinal of the first block


def normalize_text(text: str) -> str:
    """Collapse runs of spaces inside lines, trim lines, drop empty ones."""
    lines = (_SPACES.sub(" ", line).strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    return "\n".join(line for line in lines if line)


def _split_long(text: str, max_chars: int) -> list[str]:
    """A paragraph longer than a chunk: cut at sentence ends, else at spaces, else hard."""
    if len(text) <= max_chars:
        return [text]
    pieces: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(text):
        while len(sentence) > max_chars:
            cut = sentence.rfind(" ", 0, max_chars)
            cut = cut if cut > max_chars // 2 else max_chars
            head, sentence = sentence[:cut].strip(), sentence[cut:].strip()
            if current:
                pieces.append(current)
                current = ""
            pieces.append(head)
        if current and len(current) + 1 + len(sentence) > max_chars:
            pieces.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}".strip()
    if current:
        pieces.append(current)
    return pieces


def _tail(text: str, chars: int) -> str:
    """The last ``chars`` characters, starting at a word boundary."""
    if len(text) <= chars:
        return text
    tail = text[-chars:]
    space = tail.find(" ")
    return tail[space + 1:] if 0 <= space < len(tail) - 1 else tail


def chunk_blocks(blocks: Iterable[Block], max_chars: int = MAX_CHARS,
                 overlap_chars: int = OVERLAP_CHARS) -> list[Chunk]:
    """Pack paragraphs into chunks per (page, heading) section, with overlap inside a section."""
    if overlap_chars >= max_chars // 2:
        raise ValueError("overlap must be well below the chunk size")
    sections: list[tuple[tuple[int | None, str | None], list[str]]] = []
    for block in blocks:
        text = normalize_text(block.text)
        if not text:
            continue
        key = (block.page, block.heading)
        if sections and sections[-1][0] == key:
            sections[-1][1].append(text)
        else:
            sections.append((key, [text]))

    chunks: list[Chunk] = []
    for (page, heading), paragraphs in sections:
        meta: dict = {}
        if page is not None:
            meta["page"] = page
        if heading:
            meta["heading"] = heading
        budget = max(max_chars - (len(heading) + 1 if heading else 0), 2 * overlap_chars + 50)
        pieces = [p for para in paragraphs for p in _split_long(para, budget - overlap_chars)]
        body: list[str] = []
        size = 0
        fresh = False  # body holds more than the overlap carried from the previous chunk
        for piece in pieces:
            if fresh and size + 1 + len(piece) > budget:
                chunks.append(_make_chunk(heading, body, meta))
                overlap = _tail(body[-1], overlap_chars) if overlap_chars else ""
                body, size = ([overlap], len(overlap) + 1) if overlap else ([], 0)
            body.append(piece)
            size += len(piece) + 1
            fresh = True
        if fresh:
            chunks.append(_make_chunk(heading, body, meta))
    return chunks


def _make_chunk(heading: str | None, body: list[str], meta: dict) -> Chunk:
    text = "\n".join(body)
    if heading and not text.startswith(heading):
        text = f"{heading}\n{text}"
    return Chunk(text=text, meta=dict(meta))


def markdown_blocks(text: str) -> list[Block]:
    """Markdown: ``#`` headings name the section; blank lines separate paragraphs."""
    blocks: list[Block] = []
    heading: str | None = None
    para: list[str] = []

    def flush() -> None:
        if para:
            blocks.append(Block(text="\n".join(para), heading=heading))
            para.clear()

    for line in text.replace("\r\n", "\n").split("\n"):
        m = re.match(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            flush()
            heading = _strip_md(m.group(1)) or heading
            continue
        if not line.strip():
            flush()
            continue
        para.append(_strip_md(line.strip()))
    flush()
    return blocks


def _strip_md(line: str) -> str:
    """Drop the markup that would only pollute search: emphasis, links' targets, list bullets."""
    line = re.sub(r"!\[([^\]]*)\]\([^)]*\)", r"\1", line)
    line = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", line)
    line = re.sub(r"^([-*+]|\d+[.)])\s+", "", line)
    line = re.sub(r"(\*\*|__|`)", "", line)
    return line.strip()


def plain_blocks(text: str) -> list[Block]:
    """Plain text: paragraphs are separated by blank lines."""
    return [Block(text=p) for p in re.split(r"\n\s*\n", text.replace("\r\n", "\n")) if p.strip()]
