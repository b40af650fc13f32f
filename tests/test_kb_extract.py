"""Knowledge base, pure parts: text extraction per format, chunking, citations, query terms."""
from __future__ import annotations

import pytest

from core.kb.chunking import Block, chunk_blocks, markdown_blocks
from core.kb.citations import document_citation, faq_citation
from core.errors import CATALOG, AppError
from core.kb.indexing import failure_text
from core.kb.extract import detect_format, extract
from core.kb.retrieval import build_query_terms
from tests.support.kb_docs import HTML, MARKDOWN, make_docx, make_pdf


def test_txt_utf8_and_cp1251():
    text = "Первый абзац.\n\nВторой абзац\nв две строки."
    for data in (text.encode("utf-8"), b"\xef\xbb\xbf" + text.encode("utf-8"), text.encode("cp1251")):
        blocks = extract(data, "faq.txt", "text/plain")
        assert [b.text for b in blocks] == ["Первый абзац.", "Второй абзац\nв две строки."]


def test_markdown_headings_and_markup():
    blocks = extract(MARKDOWN.encode(), "info.md", None)
    assert blocks == [Block("Клиника открыта ежедневно с 9:00 до 21:00.", heading="Часы работы"),
                      Block("Бесплатная парковка для пациентов во дворе.\nПодробнее: схема проезда",
                            heading="Парковка")]


def test_html_headings_lists_and_no_scripts():
    blocks = extract(HTML.encode(), "page.html", "text/html")
    texts = [(b.heading, b.text) for b in blocks]
    assert texts == [("Запись на приём", "Записаться можно по телефону +7 495 000-00-00 или на сайте."),
                     ("Оплата", "Наличные"), ("Оплата", "Банковские карты")]
    assert all("secret" not in b.text and "color" not in b.text for b in blocks)


def test_pdf_pages():
    blocks = extract(make_pdf(), "Прайс.pdf", "application/pdf")
    by_page = {b.page for b in blocks}
    assert by_page == {1, 2}
    page2 = " ".join(b.text for b in blocks if b.page == 2)
    assert "Профессиональная чистка зубов — 3500 рублей." in page2
    assert "Стоматология" not in page2


def test_docx_headings_and_tables():
    data = make_docx([("Оплата", ["Принимаем карты Мир и наличные."]), ("Гарантия", ["Год на пломбы."])],
                     table=[["Услуга", "Цена"], ["Чистка", "3500"]])
    blocks = extract(data, "Правила.docx", None)
    assert Block("Принимаем карты Мир и наличные.", heading="Оплата") in blocks
    assert Block("Год на пломбы.", heading="Гарантия") in blocks
    assert Block("Чистка | 3500", heading="Гарантия") in blocks


def test_signature_beats_the_name():
    assert detect_format("scan.txt", "text/plain", make_pdf()[:8]) == "pdf"
    assert detect_format("doc.docx", None, b"PK\x03\x04") == "docx"
    assert detect_format("notes", "text/markdown") == "md"
    assert detect_format("old.doc", "application/msword", b"\xd0\xcf\x11\xe0") is None
    assert detect_format("archive.zip", "application/zip", b"PK\x03\x04") is None


@pytest.mark.parametrize("data,name,code", [
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, "old.doc", "KB_FILE_UNSUPPORTED"),
    (b"%PDF-1.4\n1 0 obj garbage", "broken.pdf", "KB_FILE_BROKEN"),
    (b"not a pdf at all", "fake.pdf", "KB_FILE_BROKEN"),
    (b"PK\x03\x04garbage", "broken.docx", "KB_FILE_BROKEN"),
    (b"   \n\n  ", "blank.txt", "KB_FILE_EMPTY"),
    (b"ab\x00\x00cd", "binary.txt", "KB_FILE_BROKEN"),
])
def test_unreadable_files_have_codes_and_russian_messages(data, name, code):
    with pytest.raises(AppError) as info:
        extract(data, name, None)
    assert info.value.code == code
    text = failure_text(info.value)  # what kb_sources.error shows: catalog title, detail, what to do
    assert text.startswith(CATALOG[code].human_title) and info.value.details["detail"] in text
    assert text.endswith(" ".join(CATALOG[code].human_how_to_fix))


def test_chunks_follow_sections_and_overlap():
    long_text = " ".join(f"Предложение номер {i} о записи на приём." for i in range(60))
    blocks = [Block(long_text, heading="Запись"), Block("Картой или наличными.", heading="Оплата"),
              Block("Стр. 3 текст", page=3)]
    chunks = chunk_blocks(blocks, max_chars=400, overlap_chars=80)
    record = [c for c in chunks if c.meta.get("heading") == "Запись"]
    assert len(record) > 3 and all(len(c.text) <= 400 for c in chunks)
    assert all(c.text.startswith("Запись\n") for c in record)  # the heading heads every piece
    for prev, nxt in zip(record, record[1:]):  # the tail of one chunk starts the next
        prev_body = prev.text.split("\n", 1)[1]
        next_body = nxt.text.split("\n", 1)[1]
        assert next_body.split("\n")[0] in prev_body
    # all sentences survive
    joined = " ".join(c.text for c in record)
    assert all(f"номер {i} " in joined for i in range(60))
    assert [c.meta for c in chunks if c.meta.get("heading") != "Запись"] == [{"heading": "Оплата"}, {"page": 3}]
    assert chunks[-2].text == "Оплата\nКартой или наличными."


def test_small_sections_make_one_chunk_each():
    blocks = markdown_blocks(MARKDOWN)
    assert [c.text for c in chunk_blocks(blocks)] == [
        "Часы работы\nКлиника открыта ежедневно с 9:00 до 21:00.",
        "Парковка\nБесплатная парковка для пациентов во дворе.\nПодробнее: схема проезда"]


def test_citations():
    assert document_citation("Прайс.pdf", {"page": 2, "heading": "x"}) == "Прайс.pdf, стр. 2"
    assert document_citation("Правила.docx", {"heading": "Оплата"}) == "Правила.docx, раздел «Оплата»"
    assert document_citation("notes.txt", {}) == "notes.txt"
    assert faq_citation(" Как записаться? ") == "FAQ: «Как записаться?»"


def test_query_terms_loose_variants():
    zapis, price = build_query_terms(["цен", "записа"])
    assert zapis.exact == "'записа'" and price.exact == "'цен'"
    # 'запись' is stemmed to 'зап': a truncation of 'записа' reaches it; short stems get no variants
    assert zapis.loose.split(" | ") == ["'запис'", "'запи'", "'зап'", "'записа':*"]
    assert price.loose == ""
    assert build_query_terms([]) == [] and build_query_terms(["it's"])[0].exact == "'it''s'"
