"""Text out of uploaded documents: txt, md, html, pdf, docx -> paragraphs with page and heading.

Every failure is an ``AppError`` with a ``KB_FILE_*`` code of ``core.errors`` (unsupported format, broken file, no text)
so the cabinet can tell the user what to do. PDF needs ``pypdf``, DOCX ``python-docx``; HTML uses
the standard library parser.
"""
from __future__ import annotations

import io
import os
import zipfile
from html.parser import HTMLParser

from core.kb.chunking import Block, markdown_blocks, plain_blocks
from core.errors import AppError

DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
FORMATS = ("txt", "md", "html", "pdf", "docx")
_BY_EXTENSION = {".txt": "txt", ".text": "txt", ".md": "md", ".markdown": "md", ".html": "html",
                 ".htm": "html", ".pdf": "pdf", ".docx": "docx"}
_BY_TYPE = {"text/plain": "txt", "text/markdown": "md", "text/x-markdown": "md", "text/html": "html",
            "application/xhtml+xml": "html", "application/pdf": "pdf", DOCX_TYPE: "docx"}
# Content types browsers send for any file; the extension decides then.
GENERIC_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})


def detect_format(filename: str | None, content_type: str | None, head: bytes = b"") -> str | None:
    """One of FORMATS, or None when the file is not a supported document.

    The file's own signature wins over its name (a PDF renamed to .txt is still a PDF); then the
    extension; then the declared content type.
    """
    if head.startswith(b"%PDF-"):
        return "pdf"
    ext = os.path.splitext(filename or "")[1].lower()
    if head.startswith(b"PK\x03\x04"):
        return "docx" if ext == ".docx" or (content_type or "").split(";")[0].strip() == DOCX_TYPE else None
    if ext in _BY_EXTENSION:
        fmt = _BY_EXTENSION[ext]
        return None if fmt in ("pdf", "docx") else fmt  # a .pdf/.docx without its signature is broken
    ctype = (content_type or "").split(";")[0].strip().lower()
    return _BY_TYPE.get(ctype)


def decode_text(data: bytes) -> str:
    """UTF-8 (with or without BOM), else Windows-1251, the usual encoding of Russian text files."""
    if b"\x00" in data[:4096]:
        raise AppError("KB_FILE_BROKEN", {"detail": "похоже на двоичный файл, а не на текст"})
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1251", errors="replace")


def extract(data: bytes, filename: str | None, content_type: str | None = None) -> list[Block]:
    """Paragraphs of a document; raises AppError (``KB_FILE_*``) when it cannot be read or holds no text."""
    fmt = detect_format(filename, content_type, data[:8])
    if fmt is None:
        ext = os.path.splitext(filename or "")[1].lower()
        if ext in (".pdf", ".docx"):
            raise AppError("KB_FILE_BROKEN", {"detail": f"файл {ext} не похож на документ этого формата"})
        raise AppError("KB_FILE_UNSUPPORTED", {"detail": f"файл «{filename or 'без имени'}»"})
    blocks = {"txt": lambda d: plain_blocks(decode_text(d)),
              "md": lambda d: markdown_blocks(decode_text(d)),
              "html": lambda d: html_blocks(decode_text(d)),
              "pdf": pdf_blocks, "docx": docx_blocks}[fmt](data)
    if not any(b.text.strip() for b in blocks):
        raise AppError("KB_FILE_EMPTY", {"detail": "не найдено ни одного абзаца"})
    return blocks


# ---- HTML ----------------------------------------------------------------------------------------

_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_BREAKS = {"p", "div", "li", "tr", "br", "section", "article", "blockquote", "pre", "dd", "dt", "table",
           "ul", "ol", "header", "footer", "main", "td", "th"}
_SKIP = {"script", "style", "noscript", "template", "head", "svg"}


class _HtmlText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self.heading: str | None = None
        self.buf: list[str] = []
        self.in_heading = False
        self.skip = 0

    def _flush(self) -> None:
        text = " ".join("".join(self.buf).split())
        self.buf = []
        if not text:
            return
        if self.in_heading:
            self.heading = text
        else:
            self.blocks.append(Block(text=text, heading=self.heading))

    def handle_starttag(self, tag: str, attrs) -> None:  # type: ignore[no-untyped-def]
        if tag in _SKIP:
            self.skip += 1
        elif tag in _HEADINGS:
            self._flush()
            self.in_heading = True
        elif tag in _BREAKS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag in _HEADINGS:
            self._flush()
            self.in_heading = False
        elif tag in _BREAKS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.buf.append(data)


def html_blocks(text: str) -> list[Block]:
    parser = _HtmlText()
    parser.feed(text)
    parser.close()
    parser._flush()
    return parser.blocks


# ---- PDF -----------------------------------------------------------------------------------------

def pdf_blocks(data: bytes) -> list[Block]:
    try:
        from pypdf import PdfReader
        from pypdf.errors import PyPdfError
    except ImportError as exc:  # pragma: no cover - pypdf is an install requirement
        raise AppError("KB_FILE_UNSUPPORTED", {"detail": "чтение PDF не установлено (пакет pypdf)"}) from exc
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise AppError("KB_FILE_BROKEN", {"detail": "PDF защищён паролем"})
        pages = [page.extract_text() or "" for page in reader.pages]
    except AppError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError) as exc:
        raise AppError("KB_FILE_BROKEN", {"detail": "PDF не читается"}) from exc
    blocks: list[Block] = []
    for number, text in enumerate(pages, start=1):
        blocks.extend(Block(text=b.text, page=number) for b in plain_blocks(text))
    return blocks


# ---- DOCX ----------------------------------------------------------------------------------------

def _is_heading(style_name: str) -> bool:
    name = (style_name or "").lower()
    return name.startswith(("heading", "заголовок", "title"))


def docx_blocks(data: bytes) -> list[Block]:
    try:
        import docx
        from docx.table import Table
        from docx.text.paragraph import Paragraph
    except ImportError as exc:  # pragma: no cover - python-docx is an install requirement
        raise AppError("KB_FILE_UNSUPPORTED", {"detail": "чтение DOCX не установлено (пакет python-docx)"}) from exc
    try:
        document = docx.Document(io.BytesIO(data))
        blocks: list[Block] = []
        heading: str | None = None
        for child in document.element.body.iterchildren():
            tag = child.tag.rsplit("}", 1)[-1]
            if tag == "p":
                para = Paragraph(child, document)
                text = para.text.strip()
                if not text:
                    continue
                style = para.style.name if para.style is not None else ""
                if _is_heading(style):
                    heading = text
                else:
                    blocks.append(Block(text=text, heading=heading))
            elif tag == "tbl":
                for row in Table(child, document).rows:
                    cells = []
                    for cell in row.cells:
                        value = " ".join(cell.text.split())
                        if value and (not cells or cells[-1] != value):  # merged cells repeat
                            cells.append(value)
                    if cells:
                        blocks.append(Block(text=" | ".join(cells), heading=heading))
        return blocks
    except (zipfile.BadZipFile, KeyError, ValueError, AttributeError) as exc:
        raise AppError("KB_FILE_BROKEN", {"detail": "DOCX не читается"}) from exc
    except Exception as exc:  # noqa: BLE001 - python-docx raises its own PackageNotFoundError, lxml errors
        if type(exc).__module__.startswith(("docx", "lxml")):
            raise AppError("KB_FILE_BROKEN", {"detail": "DOCX не читается"}) from exc
        raise
