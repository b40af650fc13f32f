"""Russian dictionary forms for the word-match part of retrieval, and caller filler words.

Snowball stems (PostgreSQL's ``russian`` configuration) miss many pairs a caller produces:
"машину"/"машина" agree, but "вырвать"/"вырываю", "лечу"/"лечить" or "запись"/"записи" do
not always. pymorphy3 (OpenCorpora dictionary shipped inside ``pymorphy3-dicts-ru``, nothing
downloaded) maps every form to its dictionary form, so a chunk's lemmas (``kb_chunks.lemmas``,
written at indexing) and a question's lemmas meet exactly. When pymorphy3 is not installed the
lowercased word itself is used, which still matches identical forms.
"""
from __future__ import annotations

import logging
import re
import threading
from functools import lru_cache
from typing import Any

log = logging.getLogger("voiceai.kb.lemmas")

_WORD = re.compile(r"[0-9a-zа-яё]+", re.IGNORECASE)

# Function words and verbs of asking that carry no topic ("подскажите, можно ли ..."): dropped from
# the word match so they neither create candidates nor dilute the coverage of the real words.
STOP_LEMMAS = frozenset("""
а и в во на ко не что он она оно они я ты мы вы с со как то все всё так его её но да к у же за бы по
только мне меня мной нас нам вас вам ваш свой наш мой твой ли если уже или ни быть был была было
были есть нет до о об из от при для без под над про через после перед между там тут здесь где
когда куда откуда зачем почему какой какая какое какие который чей кто чем это этот эта эти тот
та те такой весь сам себя себе ещё еще вот ну бы же ж либо нибудь можно нельзя надо нужно
подсказать сказать пожалуйста здравствуйте алло хотеть мочь узнать интересовать спасибо
""".split())

# Politeness and hesitation a caller opens with; stripped from the question before it is embedded.
_FILLERS = re.compile(
    r"^(?:\s*(?:а|ну|алло|слушайте|девушка|извините|здравствуйте|добрый\s+(?:день|вечер)|доброе\s+утро|"
    r"подскажите|скажите|пожалуйста|будьте\s+добры|можно\s+вопрос|у\s+меня\s+вопрос|вопрос|"
    r"я\s+хотел(?:а)?\s+(?:бы\s+)?(?:узнать|спросить)|хочу\s+(?:узнать|спросить))\b\s*[,.!:-]*)+\s*",
    re.IGNORECASE,
)

_lock = threading.Lock()
_analyzer: Any = None
_loaded = False


def _morph() -> Any:
    """The process's pymorphy3 analyzer (about 15 MB, loaded once), None when not installed."""
    global _analyzer, _loaded
    if not _loaded:
        with _lock:
            if not _loaded:
                try:
                    import pymorphy3
                    _analyzer = pymorphy3.MorphAnalyzer(lang="ru")
                except Exception:  # noqa: BLE001 - no dictionary: identical forms still match
                    log.warning("pymorphy3 is not available: knowledge base matches word forms as written")
                _loaded = True
    return _analyzer


@lru_cache(maxsize=50000)
def lemma(word: str) -> str:
    """Dictionary form of one lowercased word ("машину" -> "машина"); ``ё`` spelled ``е``."""
    morph = _morph()
    form = morph.parse(word)[0].normal_form if morph is not None and not word.isdigit() else word
    return form.replace("ё", "е")


def lemmas(text: str, *, drop_stop: bool = True) -> list[str]:
    """Lemmas of a text in order (repeats kept), stop words dropped unless told otherwise."""
    out: list[str] = []
    for word in _WORD.findall(text.lower()):
        form = lemma(word)
        if drop_stop and (form in STOP_LEMMAS or word in STOP_LEMMAS):
            continue
        out.append(form)
    return out


def lemma_text(text: str) -> str:
    """What ``kb_chunks.lemmas`` holds: the text's lemmas joined by spaces (searched with the
    ``simple`` configuration, which leaves them as they are)."""
    return " ".join(lemmas(text))


def strip_fillers(question: str) -> str:
    """The question without the caller's opening politeness ("Подскажите, пожалуйста, а где ...")."""
    stripped = _FILLERS.sub("", question.strip())
    return stripped or question.strip()
