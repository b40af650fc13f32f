"""Why a knowledge-base document could not be indexed: catalog-style codes with Russian texts.

The indexing job stores ``code`` in ``kb_sources.error_code`` and ``message`` (what happened and
what to do) in ``kb_sources.error``; the cabinet shows them next to the document.
"""
from __future__ import annotations

from dataclasses import dataclass

KB_FILE_UNSUPPORTED = "KB_FILE_UNSUPPORTED"
KB_FILE_BROKEN = "KB_FILE_BROKEN"
KB_FILE_EMPTY = "KB_FILE_EMPTY"
KB_FILE_MISSING = "KB_FILE_MISSING"
KB_INDEX_FAILED = "KB_INDEX_FAILED"

# code -> (title, how to fix)
KB_ERRORS: dict[str, tuple[str, str]] = {
    KB_FILE_UNSUPPORTED: ("Формат файла не поддерживается",
                          "Загрузите документ в формате TXT, MD, HTML, PDF или DOCX."),
    KB_FILE_BROKEN: ("Файл повреждён или не читается",
                     "Откройте файл на компьютере, сохраните его заново (например, «Сохранить как» PDF "
                     "или DOCX) и загрузите ещё раз."),
    KB_FILE_EMPTY: ("В файле нет текста",
                    "Если это скан, распознайте текст (OCR) и загрузите документ с текстовым слоем."),
    KB_FILE_MISSING: ("Файл документа не найден в хранилище",
                      "Загрузите документ заново."),
    KB_INDEX_FAILED: ("Не удалось проиндексировать документ",
                      "Нажмите «Переиндексировать». Если ошибка повторяется — передайте trace_id в поддержку."),
}


@dataclass
class KbIndexError(Exception):
    """A document-level failure with a catalog code; ``detail`` says what exactly went wrong."""

    code: str
    detail: str = ""

    def __post_init__(self) -> None:
        if self.code not in KB_ERRORS:
            raise KeyError(f"unknown knowledge-base error code {self.code!r}")
        super().__init__(self.message)

    @property
    def title(self) -> str:
        return KB_ERRORS[self.code][0]

    @property
    def how_to_fix(self) -> str:
        return KB_ERRORS[self.code][1]

    @property
    def message(self) -> str:
        """Russian text for ``kb_sources.error``: title, detail, what to do."""
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.title}{detail}. {self.how_to_fix}"
