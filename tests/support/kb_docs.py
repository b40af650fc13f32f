"""Small real documents for the knowledge-base tests, generated on the fly (PDF, DOCX, HTML, ...)."""
from __future__ import annotations

import io
import os

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"  # Cyrillic glyphs (fonts-dejavu-core)

PRICE_PAGES = [
    ["Стоматология «Улыбка»", "Мы лечим зубы взрослым и детям. Приём ведут опытные врачи."],
    ["Прайс-лист", "Профессиональная чистка зубов — 3500 рублей.", "Пломба из светоотверждаемого материала — 4200 рублей."],
]


def make_pdf(pages: list[list[str]] = PRICE_PAGES) -> bytes:
    """A PDF with a real text layer, one list of paragraphs per page."""
    from fpdf import FPDF
    if not os.path.exists(FONT):
        import pytest
        pytest.skip(f"no Cyrillic TTF font at {FONT} (install fonts-dejavu-core)")
    pdf = FPDF()
    pdf.add_font("DejaVu", fname=FONT)
    pdf.set_font("DejaVu", size=12)
    for paragraphs in pages:
        pdf.add_page()
        for text in paragraphs:
            pdf.multi_cell(0, 8, text)
            pdf.ln(8)
    return bytes(pdf.output())


def make_docx(sections: list[tuple[str, list[str]]], table: list[list[str]] | None = None) -> bytes:
    import docx
    document = docx.Document()
    for heading, paragraphs in sections:
        document.add_heading(heading, level=1)
        for text in paragraphs:
            document.add_paragraph(text)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                grid.cell(r, c).text = value
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


HTML = """<!doctype html><html><head><title>Клиника</title><style>p {color: red}</style>
<script>var secret = "не индексировать";</script></head>
<body><h1>Запись на приём</h1><p>Записаться можно по телефону <b>+7 495 000-00-00</b> или на сайте.</p>
<h2>Оплата</h2><ul><li>Наличные</li><li>Банковские карты</li></ul></body></html>"""

MARKDOWN = """# Часы работы

Клиника открыта **ежедневно** с 9:00 до 21:00.

## Парковка

- Бесплатная парковка для пациентов во дворе.
- Подробнее: [схема проезда](https://example.ru/map)
"""
