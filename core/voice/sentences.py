"""Cutting streamed LLM text into sentences, so the first one is spoken while the rest generates."""
from __future__ import annotations

import re

_ABBREV = re.compile(r"(?:\b(?:т\.е|т\.д|т\.п|т\.к|г|ул|д|кв|руб|коп|тыс|млн|млрд|мин|ч|см|им|др|пр|тел|стр|каб|корп)\.)$", re.IGNORECASE)
_END = re.compile(r"[.!?…]+[»\"')\]]*$")


class SentenceStream:
    """Feed text pieces; get back the sentences completed so far (never splits 3.5 or «т.е.»)."""

    def __init__(self, min_chars: int = 2) -> None:
        self.buf = ""
        self.min_chars = min_chars

    def feed(self, piece: str) -> list[str]:
        self.buf += piece
        out: list[str] = []
        while True:
            cut = self._find_cut()
            if cut is None:
                break
            sentence, self.buf = self.buf[:cut].strip(), self.buf[cut:]
            if len(sentence) >= self.min_chars:
                out.append(sentence)
        return out

    def flush(self) -> list[str]:
        rest, self.buf = self.buf.strip(), ""
        return [rest] if rest else []

    def _find_cut(self) -> int | None:
        for m in re.finditer(r"[.!?…]+[»\"')\]]*(\s+)", self.buf):
            head = self.buf[:m.start() + len(m.group(0).rstrip())]
            before = self.buf[:m.start()]
            if m.group(0).startswith(".") and re.search(r"\d$", before) and \
                    re.match(r"\s*\d", self.buf[m.end() - len(m.group(1)):]):
                continue  # 3. 5 style numbering is rare; "3.5" has no space and never matches
            if _ABBREV.search(head.rstrip("»\"')]")):
                continue
            return m.end()
        return None
