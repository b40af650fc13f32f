"""Russian text normalization for speech synthesis: digits, dates, money, phones... into words.

Russian TTS voices (Festival's ``msu_ru_nsh`` in particular) read digits badly or not at all, and
an LLM answer is full of them: "Приём 25.11.2026 в 14:30, стоимость 2 499,90 руб., тел.
+7 (495) 123-45-67". ``normalize`` turns such text into words a voice can read, with the number
agreeing with the noun after it ("1 минута" -> "одна минута", "до 5 мин." -> "до пяти минут").
``split_sentences`` cuts an answer into sentences for sentence-by-sentence synthesis.

Readings chosen (consistent, as a call-centre operator would say them):

* Dates are ordinal and genitive by default: "25.11.2026" and "25 ноября 2026 г." ->
  "двадцать пятого ноября две тысячи двадцать шестого года" (a year after a month always gets
  "года"). A preposition changes the day's case: "на/по 25 ноября" -> "двадцать пятое", "к ..." ->
  "двадцать пятому", "о ..." -> "двадцать пятом"; after "сегодня/завтра/вчера" the nominative
  "двадцать пятое" is used. A month without a day is not touched.
* Times are "hours minutes": "14:30" -> "четырнадцать тридцать", "9:05" -> "девять ноль пять",
  "14:00" -> "четырнадцать ноль ноль"; after "с/до/к/от/после/около" both parts decline and ":00"
  is dropped: "с 9:00 до 18:00" -> "с девяти до восемнадцати".
* Working hours "9-18" (after words like "работаем", "пн-пт", "часы работы") -> "с девяти до
  восемнадцати"; other ranges "5-7 дней" -> "от пяти до семи дней".
* Money: "2 499,90 руб." -> "две тысячи четыреста девяносто девять рублей девяносто копеек";
  ",00" kopecks are dropped. ₽, руб., р., $, €, USD/EUR/RUB are recognised.
* Phones are read in groups separated by commas (Festival pauses on commas):
  "+7 (495) 123-45-67" -> "плюс семь, четыреста девяносто пять, сто двадцать три, сорок пять,
  шестьдесят семь"; a group with a leading zero is read "ноль пять".
* Decimals: "3,5" -> "три целых пять десятых"; a noun after a decimal is left as written.
* Case and gender of a number come from the word after it (skipping up to two adjectives) and the
  preposition before it. Unknown nouns are guessed from their endings; animate accusative
  ("вижу 2 клиентов") is not modelled. Nouns the author wrote are never changed; abbreviations
  (руб., мин., ч., %...) are expanded in the form the number needs.
* Latin words are left as they are (the synthesizer reads them letter by letter), except inside
  e-mail addresses and web addresses, which are spoken ("info@clinic.ru" -> "инфо собака клиник
  точка ру") with a small dictionary of common words and a rule-based transliteration.
* Cyrillic acronyms without vowels ("МФЦ", "ГИБДД") and a few common ones ("ООО", "ИНН") are
  spelled letter by letter.

Everything here is pure string processing (no I/O, no state), so it is cheap to call per sentence.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass

_log = logging.getLogger(__name__)

__all__ = ["normalize", "split_sentences", "cardinal", "ordinal", "decimal", "agree", "transliterate"]

CASES = ("nom", "gen", "dat", "acc", "ins", "prep")
_CI = {c: i for i, c in enumerate(CASES)}
_G = {"m": 0, "f": 1, "n": 2}

# ---- cardinal numbers -----------------------------------------------------------------------------

# Words that decline the same for every gender: nom, gen, dat, acc, ins, prep.
_CARD: dict[int, tuple[str, ...]] = {
    3: ("три", "трёх", "трём", "три", "тремя", "трёх"),
    4: ("четыре", "четырёх", "четырём", "четыре", "четырьмя", "четырёх"),
    40: ("сорок", "сорока", "сорока", "сорок", "сорока", "сорока"),
    90: ("девяносто", "девяноста", "девяноста", "девяносто", "девяноста", "девяноста"),
    100: ("сто", "ста", "ста", "сто", "ста", "ста"),
    200: ("двести", "двухсот", "двумстам", "двести", "двумястами", "двухстах"),
    300: ("триста", "трёхсот", "трёмстам", "триста", "тремястами", "трёхстах"),
    400: ("четыреста", "четырёхсот", "четырёмстам", "четыреста", "четырьмястами", "четырёхстах"),
}
# 5..20 and 30 end in -ь: gen/dat/prep -и, ins -ью.
for _n, _w in {5: "пять", 6: "шесть", 7: "семь", 9: "девять", 10: "десять", 11: "одиннадцать",
               12: "двенадцать", 13: "тринадцать", 14: "четырнадцать", 15: "пятнадцать",
               16: "шестнадцать", 17: "семнадцать", 18: "восемнадцать", 19: "девятнадцать",
               20: "двадцать", 30: "тридцать"}.items():
    _CARD[_n] = (_w, _w[:-1] + "и", _w[:-1] + "и", _w, _w[:-1] + "ью", _w[:-1] + "и")
_CARD[8] = ("восемь", "восьми", "восьми", "восемь", "восемью", "восьми")
for _n, (_nom, _obl, _ins) in {50: ("пятьдесят", "пятидесяти", "пятьюдесятью"),
                               60: ("шестьдесят", "шестидесяти", "шестьюдесятью"),
                               70: ("семьдесят", "семидесяти", "семьюдесятью"),
                               80: ("восемьдесят", "восьмидесяти", "восемьюдесятью")}.items():
    _CARD[_n] = (_nom, _obl, _obl, _nom, _ins, _obl)
for _n, (_nom, _stem, _ins) in {500: ("пятьсот", "пяти", "пятью"), 600: ("шестьсот", "шести", "шестью"),
                                700: ("семьсот", "семи", "семью"), 800: ("восемьсот", "восьми", "восемью"),
                                900: ("девятьсот", "девяти", "девятью")}.items():
    _CARD[_n] = (_nom, _stem + "сот", _stem + "стам", _nom, _ins + "стами", _stem + "стах")

# Gendered 1 and 2: [case][gender m/f/n]
_ONE = {"nom": ("один", "одна", "одно"), "gen": ("одного", "одной", "одного"),
        "dat": ("одному", "одной", "одному"), "acc": ("один", "одну", "одно"),
        "ins": ("одним", "одной", "одним"), "prep": ("одном", "одной", "одном")}
_TWO = {"nom": ("два", "две", "два"), "gen": ("двух",) * 3, "dat": ("двум",) * 3,
        "acc": ("два", "две", "два"), "ins": ("двумя",) * 3, "prep": ("двух",) * 3}
_ZERO = ("ноль", "нуля", "нулю", "ноль", "нулём", "нуле")


@dataclass(frozen=True)
class Noun:
    """A noun's 12 forms (singular and plural, in ``CASES`` order) and its gender."""

    lemma: str
    gender: str
    sg: tuple[str, ...]
    pl: tuple[str, ...]


def _noun(gender: str, forms: str) -> Noun:
    sg, pl = (tuple(part.split()) for part in forms.split("|"))
    assert len(sg) == 6 and len(pl) == 6, forms
    return Noun(sg[0], gender, sg, pl)


_SCALES = (
    None,
    _noun("f", "тысяча тысячи тысяче тысячу тысячей тысяче | тысячи тысяч тысячам тысячи тысячами тысячах"),
    _noun("m", "миллион миллиона миллиону миллион миллионом миллионе | "
               "миллионы миллионов миллионам миллионы миллионами миллионах"),
    _noun("m", "миллиард миллиарда миллиарду миллиард миллиардом миллиарде | "
               "миллиарды миллиардов миллиардам миллиарды миллиардами миллиардах"),
    _noun("m", "триллион триллиона триллиону триллион триллионом триллионе | "
               "триллионы триллионов триллионам триллионы триллионами триллионах"),
)


def agree(n: int, case: str, noun: Noun) -> str:
    """The form of ``noun`` after the integer ``n`` in ``case`` ("2" + минута -> "минуты")."""
    last2, last = n % 100, n % 10
    if case in ("nom", "acc"):
        if 11 <= last2 <= 14:
            return noun.pl[1]
        if last == 1:
            return noun.sg[_CI[case]]
        if 2 <= last <= 4:
            return noun.sg[1]
        return noun.pl[1]
    if last == 1 and last2 != 11:
        return noun.sg[_CI[case]]
    return noun.pl[_CI[case]]


def _triple(n: int, gender: str, case: str) -> list[str]:
    """Words for 1..999 in ``gender``/``case``."""
    out: list[str] = []
    h, rest = n // 100 * 100, n % 100
    if h:
        out.append(_CARD[h][_CI[case]])
    if 10 <= rest <= 19:
        out.append(_CARD[rest][_CI[case]])
        return out
    t, u = rest // 10 * 10, rest % 10
    if t:
        out.append(_CARD[t][_CI[case]])
    if u == 1:
        out.append(_ONE[case][_G[gender]])
    elif u == 2:
        out.append(_TWO[case][_G[gender]])
    elif u:
        out.append(_CARD[u][_CI[case]])
    return out


def cardinal(n: int, gender: str = "m", case: str = "nom") -> str:
    """Cardinal number in words, agreeing in gender (m/f/n) and case (nom/gen/dat/acc/ins/prep).

    ``cardinal(1500, case="gen")`` -> "тысячи пятисот"; a leading 1 before тысяча/миллион is not
    said ("тысяча", "миллион"), as people say it.
    """
    if n < 0:
        return "минус " + cardinal(-n, gender, case)
    if n == 0:
        return _ZERO[_CI[case]]
    groups: list[int] = []
    while n:
        groups.append(n % 1000)
        n //= 1000
    if len(groups) > len(_SCALES):  # beyond trillions: read the digits
        return " ".join(_CARD_DIGIT[int(d)] for d in str(sum(g * 1000 ** i for i, g in enumerate(groups))))
    words: list[str] = []
    top = len(groups) - 1
    for scale in range(top, -1, -1):
        g = groups[scale]
        if not g:
            continue
        if scale == 0:
            words += _triple(g, gender, case)
            continue
        noun = _SCALES[scale]
        assert noun is not None
        if not (g == 1 and scale == top):
            words += _triple(g, noun.gender, case)
        words.append(agree(g, case, noun))
    return " ".join(words)


# ---- ordinal numbers ------------------------------------------------------------------------------

# stem, ending type: "y" (-ый), "o" (stressed -ой), "3" (третий)
_ORD_UNITS = {1: ("перв", "y"), 2: ("втор", "o"), 3: ("трет", "3"), 4: ("четвёрт", "y"), 5: ("пят", "y"),
              6: ("шест", "o"), 7: ("седьм", "o"), 8: ("восьм", "o"), 9: ("девят", "y"),
              10: ("десят", "y"), 11: ("одиннадцат", "y"), 12: ("двенадцат", "y"),
              13: ("тринадцат", "y"), 14: ("четырнадцат", "y"), 15: ("пятнадцат", "y"),
              16: ("шестнадцат", "y"), 17: ("семнадцат", "y"), 18: ("восемнадцат", "y"),
              19: ("девятнадцат", "y"), 20: ("двадцат", "y"), 30: ("тридцат", "y"), 40: ("сороков", "o"),
              50: ("пятидесят", "y"), 60: ("шестидесят", "y"), 70: ("семидесят", "y"),
              80: ("восьмидесят", "y"), 90: ("девяност", "y"), 100: ("сот", "y"), 200: ("двухсот", "y"),
              300: ("трёхсот", "y"), 400: ("четырёхсот", "y"), 500: ("пятисот", "y"),
              600: ("шестисот", "y"), 700: ("семисот", "y"), 800: ("восьмисот", "y"),
              900: ("девятисот", "y")}
_ADJ_END = {  # gender/number -> endings in CASES order
    "m": ("ый", "ого", "ому", "ый", "ым", "ом"),
    "f": ("ая", "ой", "ой", "ую", "ой", "ой"),
    "n": ("ое", "ого", "ому", "ое", "ым", "ом"),
    "p": ("ые", "ых", "ым", "ые", "ыми", "ых"),
}
_THIRD_END = {"m": ("ий", "ьего", "ьему", "ий", "ьим", "ьем"), "f": ("ья", "ьей", "ьей", "ью", "ьей", "ьей"),
              "n": ("ье", "ьего", "ьему", "ье", "ьим", "ьем"), "p": ("ьи", "ьих", "ьим", "ьи", "ьими", "ьих")}
# Prefix of a round-thousands/millions ordinal ("двухтысячный", "пятимиллионный").
_ORD_PREFIX = {1: "", 2: "двух", 3: "трёх", 4: "четырёх", 5: "пяти", 6: "шести", 7: "семи", 8: "восьми",
               9: "девяти", 10: "десяти", 20: "двадцати", 100: "сто"}


def _ord_word(stem: str, kind: str, gender: str, case: str) -> str:
    if kind == "3":
        return stem + _THIRD_END[gender][_CI[case]]
    end = _ADJ_END[gender][_CI[case]]
    if kind == "o" and gender == "m" and case in ("nom", "acc"):
        end = "ой"
    return stem + end


def ordinal(n: int, gender: str = "m", case: str = "nom") -> str:
    """Ordinal in words; ``gender`` is m/f/n or p (plural). Only the last word is ordinal.

    ``ordinal(2026, "m", "gen")`` -> "две тысячи двадцать шестого".
    """
    if n <= 0:
        return cardinal(n, gender if gender != "p" else "m", case)
    if n % 1000 == 0:
        # round thousands/millions: "двухтысячный", "тысячный", "миллионный"
        scale, k = 0, n
        while k % 1000 == 0:
            k //= 1000
            scale += 1
        stems = {1: "тысячн", 2: "миллионн", 3: "миллиардн"}
        if scale in stems:
            head, low = k // 1000 * 1000, k % 1000
            prefix = _ORD_PREFIX.get(low)
            if prefix is not None:
                lead = cardinal(head * 1000 ** scale) + " " if head else ""
                return lead + prefix + _ord_word(stems[scale], "y", gender, case)
        return cardinal(n) + " " + _ord_word("тысячн", "y", gender, case)  # rare: fall back
    head, low = n // 100 * 100, n % 100
    if low == 0:
        head, low = n // 1000 * 1000, n % 1000  # "две тысячи сотый", "тысяча девятисотый"
        key = low
    elif low < 20 or low % 10 == 0:
        key = low
    else:
        head, key = n - n % 10, n % 10
    stem, kind = _ORD_UNITS[key]
    words = [cardinal(head)] if head else []
    words.append(_ord_word(stem, kind, gender, case))
    return " ".join(words)


# ---- decimals -------------------------------------------------------------------------------------

_FRACTION_STEMS = {1: "десят", 2: "сот", 3: "тысячн", 4: "десятитысячн", 5: "стотысячн", 6: "миллионн"}
_WHOLE = _noun("f", "целая целой целой целую целой целой | целых целых целым целых целыми целых")


def _adj_after(n: int, case: str, stem: str) -> str:
    """An adjective-noun ("целая", "десятая") after a count: одна десятая, две/пять десятых."""
    if n % 10 == 1 and n % 100 != 11:
        return _ord_word(stem, "y", "f", case)
    if case in ("nom", "acc"):
        case = "gen"
    return _ord_word(stem, "y", "p", case)


def decimal(int_part: int, frac_digits: str, case: str = "nom") -> str:
    """"3", "5" -> "три целых пять десятых"; up to six fraction digits."""
    frac_digits = frac_digits[:6]
    num = int(frac_digits)
    whole = cardinal(int_part, "f", case) + " " + _adj_after(int_part, case, "цел")
    if num == 0:
        return whole
    return f"{whole} {cardinal(num, 'f', case)} {_adj_after(num, case, _FRACTION_STEMS[len(frac_digits)])}"


# ---- nouns used for agreement --------------------------------------------------------------------

_NOUNS_SRC = {
    "рубль": ("m", "рубль рубля рублю рубль рублём рубле | рубли рублей рублям рубли рублями рублях"),
    "копейка": ("f", "копейка копейки копейке копейку копейкой копейке | "
                     "копейки копеек копейкам копейки копейками копейках"),
    "доллар": ("m", "доллар доллара доллару доллар долларом долларе | "
                    "доллары долларов долларам доллары долларами долларах"),
    "евро": ("m", "евро евро евро евро евро евро | евро евро евро евро евро евро"),
    "процент": ("m", "процент процента проценту процент процентом проценте | "
                     "проценты процентов процентам проценты процентами процентах"),
    "градус": ("m", "градус градуса градусу градус градусом градусе | "
                    "градусы градусов градусам градусы градусами градусах"),
    "минута": ("f", "минута минуты минуте минуту минутой минуте | минуты минут минутам минуты минутами минутах"),
    "секунда": ("f", "секунда секунды секунде секунду секундой секунде | "
                     "секунды секунд секундам секунды секундами секундах"),
    "час": ("m", "час часа часу час часом часе | часы часов часам часы часами часах"),
    "день": ("m", "день дня дню день днём дне | дни дней дням дни днями днях"),
    "неделя": ("f", "неделя недели неделе неделю неделей неделе | недели недель неделям недели неделями неделях"),
    "месяц": ("m", "месяц месяца месяцу месяц месяцем месяце | месяцы месяцев месяцам месяцы месяцами месяцах"),
    "год": ("m", "год года году год годом годе | годы лет годам годы годами годах"),
    "сутки": ("p", "сутки суток суткам сутки сутками сутках | сутки суток суткам сутки сутками сутках"),
    "раз": ("m", "раз раза разу раз разом разе | разы раз разам разы разами разах"),
    "человек": ("m", "человек человека человеку человека человеком человеке | "
                     "человек человек человекам человек человеками человеках"),
    "штука": ("f", "штука штуки штуке штуку штукой штуке | штуки штук штукам штуки штуками штуках"),
    "тысяча": ("f", " ".join(_SCALES[1].sg) + " | " + " ".join(_SCALES[1].pl)),  # type: ignore[union-attr]
    "миллион": ("m", " ".join(_SCALES[2].sg) + " | " + " ".join(_SCALES[2].pl)),  # type: ignore[union-attr]
    "миллиард": ("m", " ".join(_SCALES[3].sg) + " | " + " ".join(_SCALES[3].pl)),  # type: ignore[union-attr]
    "километр": ("m", "километр километра километру километр километром километре | "
                      "километры километров километрам километры километрами километрах"),
    "метр": ("m", "метр метра метру метр метром метре | метры метров метрам метры метрами метрах"),
    "сантиметр": ("m", "сантиметр сантиметра сантиметру сантиметр сантиметром сантиметре | "
                       "сантиметры сантиметров сантиметрам сантиметры сантиметрами сантиметрах"),
    "миллиметр": ("m", "миллиметр миллиметра миллиметру миллиметр миллиметром миллиметре | "
                       "миллиметры миллиметров миллиметрам миллиметры миллиметрами миллиметрах"),
    "килограмм": ("m", "килограмм килограмма килограмму килограмм килограммом килограмме | "
                       "килограммы килограммов килограммам килограммы килограммами килограммах"),
    "грамм": ("m", "грамм грамма грамму грамм граммом грамме | граммы граммов граммам граммы граммами граммах"),
    "литр": ("m", "литр литра литру литр литром литре | литры литров литрам литры литрами литрах"),
    "гигабайт": ("m", "гигабайт гигабайта гигабайту гигабайт гигабайтом гигабайте | "
                      "гигабайты гигабайт гигабайтам гигабайты гигабайтами гигабайтах"),
    "мегабайт": ("m", "мегабайт мегабайта мегабайту мегабайт мегабайтом мегабайте | "
                      "мегабайты мегабайт мегабайтам мегабайты мегабайтами мегабайтах"),
    # common nouns after numbers in call-centre answers: analysis only
    "ночь": ("f", "ночь ночи ночи ночь ночью ночи | ночи ночей ночам ночи ночами ночах"),
    "запись": ("f", "запись записи записи запись записью записи | записи записей записям записи записями записях"),
    "очередь": ("f", "очередь очереди очереди очередь очередью очереди | "
                     "очереди очередей очередям очереди очередями очередях"),
    "дверь": ("f", "дверь двери двери дверь дверью двери | двери дверей дверям двери дверями дверях"),
    "площадь": ("f", "площадь площади площади площадь площадью площади | "
                     "площади площадей площадям площади площадями площадях"),
    "вещь": ("f", "вещь вещи вещи вещь вещью вещи | вещи вещей вещам вещи вещами вещах"),
    "место": ("n", "место места месту место местом месте | места мест местам места местами местах"),
    "окно": ("n", "окно окна окну окно окном окне | окна окон окнам окна окнами окнах"),
    "письмо": ("n", "письмо письма письму письмо письмом письме | письма писем письмам письма письмами письмах"),
    "сообщение": ("n", "сообщение сообщения сообщению сообщение сообщением сообщении | "
                       "сообщения сообщений сообщениям сообщения сообщениями сообщениях"),
    "занятие": ("n", "занятие занятия занятию занятие занятием занятии | "
                     "занятия занятий занятиям занятия занятиями занятиях"),
    "число": ("n", "число числа числу число числом числе | числа чисел числам числа числами числах"),
    "мужчина": ("m", "мужчина мужчины мужчине мужчину мужчиной мужчине | "
                     "мужчины мужчин мужчинам мужчин мужчинами мужчинах"),
    "этаж": ("m", "этаж этажа этажу этаж этажом этаже | этажи этажей этажам этажи этажами этажах"),
    "звонок": ("m", "звонок звонка звонку звонок звонком звонке | звонки звонков звонкам звонки звонками звонках"),
    "балл": ("m", "балл балла баллу балл баллом балле | баллы баллов баллам баллы баллами баллах"),
}
NOUNS: dict[str, Noun] = {k: _noun(g, f) for k, (g, f) in _NOUNS_SRC.items()}

# form -> [(noun, number "sg"/"pl", case)]
_FORMS: dict[str, list[tuple[Noun, str, str]]] = {}
for _nn in NOUNS.values():
    for _num, _forms in (("sg", _nn.sg), ("pl", _nn.pl)):
        for _c, _f in zip(CASES, _forms):
            _FORMS.setdefault(_f, []).append((_nn, _num, _c))

_ADJ_RE = re.compile(r"(?:ый|ий|ой|ая|яя|ое|ее|ые|ие|ых|их|ую|юю|ым|им|ыми|ими|ого|его|ому|ему)$")
_ADJ_GENDER = (("ая", "f"), ("яя", "f"), ("ую", "f"), ("юю", "f"), ("ое", "n"), ("ее", "n"),
               ("ый", "m"), ("ий", "m"))

# ---- grammar helpers ------------------------------------------------------------------------------

_PREP_CASES: dict[str, tuple[str, ...]] = {
    "до": ("gen",), "от": ("gen",), "из": ("gen",), "без": ("gen",), "для": ("gen",), "около": ("gen",),
    "после": ("gen",), "более": ("gen",), "менее": ("gen",), "свыше": ("gen",), "кроме": ("gen",),
    "у": ("gen",), "вместо": ("gen",), "течение": ("gen",), "порядка": ("gen",), "больше": ("gen",),
    "меньше": ("gen",), "выше": ("gen",), "ниже": ("gen",), "среди": ("gen",), "из-за": ("gen",),
    "против": ("gen",), "мимо": ("gen",), "возле": ("gen",), "накануне": ("gen",), "ради": ("gen",),
    "с": ("gen", "ins"), "со": ("gen", "ins"),
    "к": ("dat",), "ко": ("dat",), "согласно": ("dat",), "благодаря": ("dat",),
    "по": ("acc", "dat"),
    "в": ("acc", "prep"), "во": ("acc", "prep"), "на": ("acc", "prep"),
    "за": ("acc", "ins"), "через": ("acc",), "про": ("acc",), "спустя": ("acc",), "сквозь": ("acc",),
    "о": ("prep",), "об": ("prep",), "обо": ("prep",), "при": ("prep",),
    "под": ("ins", "acc"), "над": ("ins",), "перед": ("ins",), "между": ("ins",),
}
_SKIP_BACK = {"примерно", "всего", "лишь", "только", "ещё", "еще", "уже", "ровно", "почти", "целых",
              "минимум", "максимум", "приблизительно", "где-то", "как", "не"}
_WORD_RE = re.compile(r"[A-Za-zА-Яа-яЁё][A-Za-zА-Яа-яЁё-]*")


def _prev_words(text: str, pos: int, n: int = 3) -> list[str]:
    """Up to ``n`` words before ``pos`` (nearest first), stopping at sentence punctuation."""
    chunk = text[max(0, pos - 80):pos]
    chunk = re.split(r"[.!?;:\n]", chunk)[-1]
    return [w.lower() for w in _WORD_RE.findall(chunk)][::-1][:n]


def _prep_before(text: str, pos: int) -> str | None:
    for w in _prev_words(text, pos, 3):
        if w in _PREP_CASES:
            return w
        if w not in _SKIP_BACK:
            return None
    return None


def _next_words(text: str, pos: int, n: int = 4) -> list[str]:
    chunk = text[pos:pos + 80]
    chunk = re.split(r"[.!?;:\n(]", chunk)[0]
    return [w.lower() for w in re.findall(r"[A-Za-zА-Яа-яЁё]+(?:-[A-Za-zА-Яа-яЁё]+)?|\d+", chunk)][:n]


def _analyses(word: str) -> list[tuple[str, str, str]]:
    """Possible (gender, number, case) of a noun form after a number; known nouns first."""
    if word in _FORMS:
        return [(nn.gender, num, c) for nn, num, c in _FORMS[word]]
    w = word
    out: list[tuple[str, str, str]] = []
    if w.endswith(("ами", "ями")):
        return [("m", "pl", "ins")]
    if w.endswith(("ам", "ям")):
        return [("m", "pl", "dat")]
    if w.endswith(("ах", "ях")):
        return [("m", "pl", "prep")]
    if w.endswith(("ов", "ев")):
        return [("m", "pl", "gen")]
    if w.endswith(("а", "я")):
        out += [("f", "sg", "nom"), ("m", "sg", "gen")]
    elif w.endswith(("ы", "и")):
        out += [("f", "sg", "gen"), ("m", "pl", "nom")]
    elif w.endswith(("у", "ю")):
        out += [("f", "sg", "acc"), ("m", "sg", "dat")]
    elif w.endswith(("ой", "ей")):
        out += [("f", "sg", "ins"), ("f", "sg", "gen"), ("f", "sg", "dat"), ("f", "sg", "prep"), ("m", "pl", "gen")]
    elif w.endswith(("ом", "ем", "ём")):
        out += [("m", "sg", "ins")]
    elif w.endswith(("о", "е", "ё")):
        out += [("m", "sg", "prep"), ("n", "sg", "nom")]
    elif w.endswith(("ость", "есть")):
        out += [("f", "sg", "nom")]
    else:
        out += [("m", "sg", "nom"), ("f", "pl", "gen")]
    return out


def _cases_for_count(n: int, number: str, case: str, is_int: bool = True) -> tuple[str, ...]:
    """Cases of the numeral that fit a noun form (number, case) after the count ``n``."""
    if not is_int:  # decimals take the genitive singular in any case
        return ("nom", "acc", "gen", "dat", "ins", "prep") if (number, case) == ("sg", "gen") else ()
    last2, last = n % 100, n % 10
    one = last == 1 and last2 != 11
    few = 2 <= last <= 4 and not 12 <= last2 <= 14
    if one:
        if number != "sg":
            return ()
        return ("nom", "acc") if case in ("nom", "acc") else (case,)
    if number == "sg":
        return ("nom", "acc") if few and case == "gen" else ()
    if case == "gen":
        return ("gen",) if few else ("nom", "acc", "gen")
    if case in ("nom", "acc"):
        return ()
    return (case,)


def _find_noun(words: list[str]) -> tuple[str | None, str | None]:
    """(noun, adjective gender hint) among the words after a number, skipping adjectives."""
    hint = None
    for w in words[:3]:
        if w.isdigit():
            return None, hint
        if w in _FORMS or not _ADJ_RE.search(w) or len(w) <= 3:
            return w, hint
        if hint is None:
            hint = next((g for end, g in _ADJ_GENDER if w.endswith(end)), None)
    return None, hint


def _number_grammar(text: str, start: int, end: int, n: int, is_int: bool = True) -> tuple[str, str]:
    """(gender, case) for the number at text[start:end] from its preposition and following noun."""
    prep = _prep_before(text, start)
    prep_cases = _PREP_CASES.get(prep or "", ())
    words = _next_words(text, end)
    # a range or list: "от 5 до 10 минут", "1 или 2 дня" -> the noun after the second number
    if len(words) >= 2 and words[0] in ("до", "по", "и", "или") and words[1].isdigit():
        words = words[2:]
    elif words and words[0].isdigit():
        words = words[1:]
    noun, hint = _find_noun(words)
    gender, case = "m", None
    if noun is not None and not noun.isdigit():
        candidates: list[tuple[str, str]] = []
        for g, num, c in _analyses(noun):
            for fit in _cases_for_count(n, num, c, is_int):
                candidates.append((g, fit))
        if candidates:
            chosen = None
            if prep_cases:
                chosen = next(((g, c) for g, c in candidates if c in prep_cases), None)
            if chosen is None:
                chosen = next(((g, c) for g, c in candidates if c == "nom"), None) or candidates[0]
                if prep_cases and chosen[1] == "nom" and "acc" in prep_cases:
                    chosen = (chosen[0], "acc")
            gender, case = chosen
        if noun in _FORMS:
            gender = _FORMS[noun][0][0].gender
            if gender == "p":
                gender = "m"
    if hint and (noun is None or noun not in _FORMS):
        gender = hint
    if case is None:
        case = prep_cases[0] if prep_cases else "nom"
    if case == "acc" and "acc" not in prep_cases and prep_cases:
        case = prep_cases[0]
    return gender, case


# ---- digit strings --------------------------------------------------------------------------------

def _digits_group(s: str) -> str:
    """A phone group: "495" -> "четыреста девяносто пять", "05" -> "ноль пять", "00" -> "ноль ноль"."""
    if len(s) > 1 and s.startswith("0"):
        zeros = len(s) - len(s.lstrip("0"))
        rest = s[zeros:]
        return " ".join(["ноль"] * zeros + ([cardinal(int(rest))] if rest else []))
    return cardinal(int(s))


def _say_int(digits: str, gender: str = "m", case: str = "nom") -> str:
    digits = re.sub(r"\D", "", digits)
    if len(digits) > 15:
        return " ".join(_CARD_DIGIT[int(d)] for d in digits)
    if len(digits) > 1 and digits.startswith("0"):
        return _digits_group(digits)
    return cardinal(int(digits), gender, case)


_CARD_DIGIT = ("ноль", "один", "два", "три", "четыре", "пять", "шесть", "семь", "восемь", "девять")

# ---- patterns -------------------------------------------------------------------------------------

_SP = "[ \u00a0\u202f\u2009]"          # spaces that may separate digit groups
_NUM = rf"\d{{1,3}}(?:{_SP}\d{{3}})+(?!\d)|\d+"  # 1 500 000 or 1500000
_MONTHS = ("января", "февраля", "марта", "апреля", "мая", "июня", "июля", "августа", "сентября",
           "октября", "ноября", "декабря")
_MONTH_RE = "|".join(_MONTHS)
_DATE_NOM_WORDS = {"сегодня", "завтра", "вчера", "послезавтра", "позавчера", "дата", "сейчас", "это"}

_WORK_CONTEXT = re.compile(
    r"(работ|час[аы]?\b|график|режим|при[её]м|открыт|ежедневно|будн|выходн|\bпн\b|\bвт\b|\bср\b|\bчт\b|"
    r"\bпт\b|\bсб\b|\bвс\b|понедельник|вторник|сред[ау]|четверг|пятниц|суббот|воскресень|обед|перерыв)",
    re.I)


def _keep_period(m: re.Match[str], out: str) -> str:
    """Keep a sentence-final period that was also an abbreviation's period ("... 500 руб. Спасибо")."""
    if not m.group(0).endswith("."):
        return out
    rest = m.string[m.end():]
    if not rest.strip() or re.match(r"\s*\n|\s+[А-ЯЁA-Z«\"]", rest):
        return out + "."
    return out


def _date_case(text: str, pos: int) -> str:
    prev = _prev_words(text, pos, 2)
    if prev and prev[0] in _DATE_NOM_WORDS:
        return "nom"
    prep = _prep_before(text, pos)
    return {"на": "acc", "по": "acc", "в": "acc", "во": "acc", "к": "dat", "ко": "dat", "о": "prep",
            "об": "prep", "при": "prep", "за": "acc", "перед": "ins", "между": "ins"}.get(prep or "", "gen")


def _say_date(day: int, month: int, year: int | None, case: str) -> str:
    words = [ordinal(day, "n", case), _MONTHS[month - 1]]
    if year is not None:
        words += [ordinal(year, "m", "gen"), "года"]
    return " ".join(words)


def _full_year(y: str) -> int:
    return int(y) + 2000 if len(y) == 2 else int(y)


# e-mail and web addresses -----------------------------------------------------------------------

_LATIN_WORDS = {
    "info": "инфо", "mail": "мэйл", "gmail": "джимэйл", "yandex": "яндекс", "ya": "я", "inbox": "инбокс",
    "list": "лист", "bk": "бэ ка", "rambler": "рамблер", "outlook": "аутлук", "hotmail": "хотмэйл",
    "icloud": "айклауд", "com": "ком", "ru": "ру", "org": "орг", "net": "нэт", "su": "эс у", "io": "ай о",
    "support": "саппорт", "help": "хэлп", "admin": "админ", "office": "офис", "sales": "сэйлс",
    "clinic": "клиник", "shop": "шоп", "order": "ордер", "booking": "букинг", "hello": "хэллоу",
    "contact": "контакт", "contacts": "контакты", "service": "сервис", "online": "онлайн", "site": "сайт",
    "web": "веб", "team": "тим", "hr": "эйч ар", "pr": "пи ар", "noreply": "ноу риплай", "no": "ноу",
    "reply": "риплай", "test": "тест", "med": "мед", "dental": "дентал", "doctor": "доктор",
    "center": "центр", "centre": "центр", "group": "груп", "pro": "про", "www": "вэ вэ вэ",
    "http": "", "https": "", "me": "ми", "biz": "биз", "club": "клаб", "store": "стор", "app": "апп",
    "mobile": "мобайл", "smile": "смайл", "care": "кэа", "health": "хэлс", "home": "хоум",
    "city": "сити", "mos": "мос", "msk": "эм эс ка", "spb": "эс пэ бэ", "rf": "эр эф", "vk": "вэ ка",
    "ok": "окей", "my": "май", "the": "зе", "and": "энд", "main": "мэйн", "post": "пост",
}
_TRANSLIT = [("shch", "щ"), ("sch", "щ"), ("sh", "ш"), ("ch", "ч"), ("zh", "ж"), ("kh", "х"), ("ts", "ц"),
             ("tz", "ц"), ("ya", "я"), ("yu", "ю"), ("yo", "ё"), ("ye", "е"), ("ja", "я"), ("ju", "ю"),
             ("jo", "ё"), ("ph", "ф"), ("th", "т"), ("ck", "к"), ("qu", "кв"), ("oo", "у"), ("ee", "и"),
             ("ai", "ай"), ("ay", "эй"), ("ey", "эй"), ("ei", "эй"), ("iy", "ий"), ("x", "кс"), ("j", "дж"),
             ("w", "в"), ("h", "х"), ("q", "к"), ("a", "а"), ("b", "б"), ("d", "д"), ("f", "ф"), ("g", "г"),
             ("i", "и"), ("k", "к"), ("l", "л"), ("m", "м"), ("n", "н"), ("o", "о"), ("p", "п"),
             ("r", "р"), ("s", "с"), ("t", "т"), ("u", "у"), ("v", "в"), ("z", "з")]
_LETTER_NAMES = {"a": "эй", "b": "би", "c": "си", "d": "ди", "e": "и", "f": "эф", "g": "джи", "h": "эйч",
                 "i": "ай", "j": "джей", "k": "кей", "l": "эл", "m": "эм", "n": "эн", "o": "оу", "p": "пи",
                 "q": "кью", "r": "ар", "s": "эс", "t": "ти", "u": "ю", "v": "ви", "w": "дабл ю", "x": "икс",
                 "y": "уай", "z": "зэд"}
_VOWELS_LAT = set("aeiouy")


def transliterate(word: str) -> str:
    """Speakable Cyrillic for a simple Latin word ("clinic" -> "клиник", "ivanov" -> "иванов")."""
    w = word.lower()
    if w in _LATIN_WORDS:
        return _LATIN_WORDS[w]
    if len(w) == 1:
        return _LETTER_NAMES.get(w, w)
    if not any(ch in _VOWELS_LAT for ch in w):  # "bk", "spb": spell
        return " ".join(_LETTER_NAMES.get(ch, ch) for ch in w)
    out, i = [], 0
    while i < len(w):
        if w[i] == "c":
            out.append("с" if i + 1 < len(w) and w[i + 1] in "eiy" else "к")
            i += 1
            continue
        if w[i] == "y":
            prev_vowel = i > 0 and w[i - 1] in _VOWELS_LAT
            nxt = w[i + 1] if i + 1 < len(w) else ""
            if not nxt and not prev_vowel:
                out.append("и")
                i += 1
                continue
        if w[i] == "e" and i == 0:
            out.append("э")
            i += 1
            continue
        for lat, cyr in _TRANSLIT:
            if w.startswith(lat, i):
                out.append(cyr)
                i += len(lat)
                break
        else:
            if w[i] == "y":
                out.append("й")
            elif w[i] == "e":
                out.append("е")
            else:
                out.append(w[i])
            i += 1
    return "".join(out)


def _say_address_part(part: str) -> str:
    """A piece of an e-mail or domain between separators: Latin word, digits or Cyrillic."""
    out: list[str] = []
    for tok in re.findall(r"[A-Za-z]+|\d+|[А-Яа-яЁё]+", part):
        if tok.isdigit():
            out.append(_say_int(tok))
        elif re.fullmatch(r"[A-Za-z]+", tok):
            out.append(transliterate(tok))
        else:
            out.append(tok.lower())
    return " ".join(o for o in out if o)


_SEP_WORDS = {".": "точка", "_": "нижнее подчёркивание", "-": "дефис", "+": "плюс", "/": "слэш",
              "@": "собака", ":": "двоеточие"}


def _say_address(addr: str) -> str:
    words: list[str] = []
    for tok in re.split(r"([._\-+/@:])", addr):
        if not tok:
            continue
        if tok in _SEP_WORDS:
            words.append(_SEP_WORDS[tok])
        else:
            said = _say_address_part(tok)
            if said:
                words.append(said)
    return " ".join(words)


_EMAIL_RE = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_TLDS = "ru|com|org|net|su|рф|info|io|me|biz|pro|online|site|shop|clinic|moscow|app|dev|club|store"
_URL_RE = re.compile(
    rf"(?<![\w@.])(?:https?://)?(?:www\.)?(?:[A-Za-z0-9-]+\.)+(?:{_TLDS})(?![\w-])(?:/[A-Za-z0-9._~/-]*[A-Za-z0-9/])?",
    re.I)


def _url_sub(m: re.Match[str]) -> str:
    url = re.sub(r"^https?://", "", m.group(0), flags=re.I).rstrip("/")
    return _say_address(url)


# phones -----------------------------------------------------------------------------------------

_PHONE_RE = re.compile(
    r"(?<![\w+])(?:(?P<plus>\+)\s?(?P<cc>7)|(?P<eight>8))[\s\-]?\(?(?P<a>\d{3})\)?[\s\-]?"
    r"(?P<b>\d{3})[\s\-]?(?P<c>\d{2})[\s\-]?(?P<d>\d{2})(?!\d)"
    r"|(?<![\w+\-])(?P<lb>\d{3})-(?P<lc>\d{2})-(?P<ld>\d{2})(?![\d\-])"
    r"|(?<![\w+])\((?P<pa>\d{3,5})\)\s?(?P<pb>\d{1,3})[\s\-](?P<pc>\d{2})[\s\-](?P<pd>\d{2})(?!\d)")


def _phone_sub(m: re.Match[str]) -> str:
    if m.group("lb"):
        groups = [m.group("lb"), m.group("lc"), m.group("ld")]
    elif m.group("pa"):
        groups = [m.group("pa"), m.group("pb"), m.group("pc"), m.group("pd")]
    else:
        groups = [m.group("a"), m.group("b"), m.group("c"), m.group("d")]
        groups.insert(0, "плюс семь" if m.group("plus") else "восемь")
        return ", ".join([groups[0]] + [_digits_group(g) for g in groups[1:]]) + ","
    return ", ".join(_digits_group(g) for g in groups) + ","


# ---- the passes -----------------------------------------------------------------------------------

_ABBR_UNITS: dict[str, str] = {
    "руб": "рубль", "р": "рубль", "₽": "рубль", "rub": "рубль", "коп": "копейка", "$": "доллар",
    "usd": "доллар", "€": "евро", "eur": "евро", "%": "процент", "°": "градус", "мин": "минута",
    "ч": "час", "сек": "секунда", "дн": "день", "мес": "месяц", "нед": "неделя", "шт": "штука",
    "чел": "человек", "км": "километр", "м": "метр", "см": "сантиметр", "мм": "миллиметр",
    "кг": "килограмм", "г": "грамм", "гр": "грамм", "л": "литр", "гб": "гигабайт", "мб": "мегабайт",
    "тыс": "тысяча", "млн": "миллион", "млрд": "миллиард",
}
_SCALE_ABBR = {"тыс": 1, "млн": 2, "млрд": 3}
_CURRENCY = {"руб": "рубль", "р": "рубль", "₽": "рубль", "rub": "рубль", "$": "доллар", "usd": "доллар",
             "€": "евро", "eur": "евро"}
_UNIT_RE = r"руб|р|₽|rub|коп|\$|usd|€|eur|%|°[CС]?|мин|ч|сек|дн|мес|нед|шт|чел|км|м|см|мм|кг|гр|г|л|гб|мб|тыс|млн|млрд"


def _join_groups(s: str) -> str:
    return re.sub(_SP, "", s)


def _num_with_unit(text: str, m: re.Match[str]) -> str:
    sign, num, frac, unit, scale_unit = (m.group("sign") or "", _join_groups(m.group("num")), m.group("frac"),
                                         m.group("unit").lower()[:4], (m.group("cur") or "").lower())
    if unit.startswith("°"):
        unit = "°"
    prefix = "минус " if sign in ("-", "−") else ("плюс " if sign == "+" else "")
    n = int(num)
    gender_unit = NOUNS[_ABBR_UNITS[unit]]
    case = _case_from_prep(text, m.start())
    if unit in _SCALE_ABBR:
        scale = NOUNS[_ABBR_UNITS[unit]]
        if frac:
            words = f"{decimal(n, frac, case)} {scale.sg[1]}"
        else:
            words = f"{cardinal(n, scale.gender, case)} {agree(n, case, scale)}"
        if scale_unit:
            cur = NOUNS[_CURRENCY[scale_unit]]
            words += " " + (cur.pl[1] if case in ("nom", "acc") else cur.pl[_CI[case]])
        return prefix + words
    if frac and unit in _CURRENCY and _CURRENCY[unit] == "рубль" and len(frac) <= 2 or (
            frac and unit in ("$", "usd", "€", "eur") and len(frac) <= 2):
        cents = int(frac.ljust(2, "0"))
        cur = NOUNS[_CURRENCY[unit]]
        words = f"{cardinal(n, cur.gender, case)} {agree(n, case, cur)}"
        if cents:
            sub = NOUNS["копейка"] if cur.lemma == "рубль" else None
            if sub is not None:
                words += f" {cardinal(cents, 'f', case)} {agree(cents, case, sub)}"
            else:
                words += f" {cardinal(cents, 'm', case)} цент" + ("" if cents % 10 == 1 and cents % 100 != 11
                                                                 else "а" if 2 <= cents % 10 <= 4 and not
                                                                 12 <= cents % 100 <= 14 else "ов")
        return prefix + words
    if frac:
        return f"{prefix}{decimal(n, frac, case)} {gender_unit.sg[1]}"
    return f"{prefix}{cardinal(n, gender_unit.gender if gender_unit.gender != 'p' else 'm', case)} " \
           f"{agree(n, case, gender_unit)}"


def _case_from_prep(text: str, pos: int) -> str:
    prep = _prep_before(text, pos)
    if prep is None:
        return "nom"
    cases = _PREP_CASES[prep]
    if prep in ("в", "во", "на", "за", "через", "про", "по", "спустя"):
        return "acc"
    return cases[0]


def _pass_units(text: str) -> str:
    # currency symbol before the number: "$100" -> "100 $"
    text = re.sub(rf"([$€₽])\s?({_NUM}(?:[.,]\d{{1,2}})?)", r"\2 \1", text)
    pat = re.compile(
        rf"(?<![\w.,])(?P<sign>[-−+](?=\d))?(?P<num>{_NUM})(?:[.,](?P<frac>\d+))?\s?"
        rf"(?P<unit>{_UNIT_RE})(?:\.|(?![A-Za-zА-Яа-яЁё]))"
        rf"(?:\s?(?P<cur>руб|р|₽|\$|€|usd|eur|rub)(?:\.|(?![A-Za-zА-Яа-яЁё])))?",
        re.I)

    def sub(m: re.Match[str]) -> str:
        unit = m.group("unit").lower()
        if unit.startswith("°"):
            unit = "°"
        if m.group("cur") and unit not in _SCALE_ABBR:
            return m.group(0)
        if unit == "г" and not m.group("frac"):
            n = int(_join_groups(m.group("num")))
            if 1000 <= n <= 2100:  # "2025 г." is a year, handled later
                return m.group(0)
        return _keep_period(m, _num_with_unit(text, m))

    text = pat.sub(sub, text)
    return text


def _pass_dates(text: str) -> str:
    def numeric(m: re.Match[str]) -> str:
        if m.group("iy"):
            y, mo, d = int(m.group("iy")), int(m.group("im")), int(m.group("id"))
        else:
            d, mo, y = int(m.group("d")), int(m.group("m")), _full_year(m.group("y"))
        if not (1 <= d <= 31 and 1 <= mo <= 12):
            return m.group(0)
        # a trailing "г."/"года" is dropped: the date reading already ends with "года"
        return _keep_period(m, _say_date(d, mo, y, _date_case(text, m.start())))

    text = re.sub(r"(?<![\d.])(?:(?P<d>\d{1,2})\.(?P<m>\d{1,2})\.(?P<y>\d{4}|\d{2})"
                  r"|(?P<iy>\d{4})-(?P<im>\d{2})-(?P<id>\d{2}))(?![\d.]\d)(?P<tail>\s*(?:г\.|года|г\b))?",
                  numeric, text)

    def worded(m: re.Match[str]) -> str:
        d1, d2, conn = int(m.group("d1")), m.group("d2"), (m.group("conn") or "").lower()
        month = m.group("mon").lower()
        year = m.group("y")
        year_words = f" {ordinal(int(year), 'm', 'gen')} года" if year else ""
        if d2:
            if not (1 <= d1 <= 31 and 1 <= int(d2) <= 31):
                return m.group(0)
            conn = conn.strip()
            if conn in ("по", "до"):
                first = ordinal(d1, "n", _date_case(text, m.start()))
                second = ordinal(int(d2), "n", "acc" if conn == "по" else "gen")
                return f"{first} {conn} {second} {month}{year_words}"
            prev = _prev_words(text, m.start(), 1)
            lead = "" if prev and prev[0] == "с" else "с "
            return f"{lead}{ordinal(d1, 'n', 'gen')} по {ordinal(int(d2), 'n', 'acc')} {month}{year_words}"
        if not 1 <= d1 <= 31:
            return m.group(0)
        return _keep_period(m, f"{ordinal(d1, 'n', _date_case(text, m.start()))} {month}{year_words}")

    text = re.sub(rf"(?<![\d.,])(?P<d1>\d{{1,2}})(?:-?(?:го|е|ое))?"
                  rf"(?:\s?(?P<conn>[-–—]|\sпо\s|\sдо\s)\s?(?P<d2>\d{{1,2}})(?:-?(?:го|е|ое))?)?\s+"
                  rf"(?P<mon>{_MONTH_RE})(?:\s+(?P<y>\d{{4}})(?:\s*(?:года|г\.|г\b))?)?",
                  worded, text, flags=re.I)
    # remaining years: "в 2025 году", "2025 г.", "2020 год"
    year_forms = {"год": "nom", "года": "gen", "году": "dat", "годом": "ins", "годе": "prep"}

    def year(m: re.Match[str]) -> str:
        y = int(m.group("y"))
        word = m.group("w").lower()
        if word.startswith("г") and not word.startswith("год"):
            case = _case_from_prep(text, m.start())
            if case == "acc":
                prep = _prep_before(text, m.start())
                case = "prep" if prep in ("в", "во") else "nom"
            if case == "nom" and _prep_before(text, m.start()) is None:
                case = "nom"
            form = NOUNS["год"].sg[_CI[case]]
            if case == "prep" and _prep_before(text, m.start()) in ("в", "во", "на"):
                form = "году"  # locative: "в году", not "о годе"
            return _keep_period(m, f"{ordinal(y, 'm', case)} {form}")
        case = year_forms[word]
        if case == "dat":
            prep = _prep_before(text, m.start())
            case = "prep" if prep in ("в", "во", "о", "об", "при", "на") else "dat"
        return f"{ordinal(y, 'm', case)} {m.group('w')}"

    text = re.sub(r"(?<![\d.,])(?P<y>1\d{3}|20\d{2}|2100)\s*(?P<w>году|годом|годе|года|год|г\.|г)(?![А-Яа-яЁё])",
                  year, text, flags=re.I)
    return text


def _pass_times(text: str) -> str:
    def time_words(h: int, mi: int, case: str) -> str:
        if h in (0, 24) and mi == 0:
            return ("полночь", "полуночи", "полуночи", "полночь", "полуночью", "полуночи")[_CI[case]]
        hours = cardinal(h, "m", case)
        if case in ("nom", "acc"):
            if mi == 0:
                return f"{hours} ноль ноль"
            if mi < 10:
                return f"{hours} ноль {cardinal(mi, 'f', case)}"
            return f"{hours} {cardinal(mi, 'f', case)}"
        if mi == 0:
            return hours
        if mi < 10:
            return f"{hours} ноль {cardinal(mi, 'f', case)}"
        return f"{hours} {cardinal(mi, 'f', case)}"

    def rng(m: re.Match[str]) -> str:
        h1, m1, h2, m2 = int(m.group(1)), int(m.group(2) or 0), int(m.group(3)), int(m.group(4) or 0)
        if not (h1 <= 24 and h2 <= 24 and m1 < 60 and m2 < 60):
            return m.group(0)
        prev = _prev_words(text, m.start(), 1)
        lead = "" if prev and prev[0] == "с" else "с "
        return f"{lead}{time_words(h1, m1, 'gen')} до {time_words(h2, m2, 'gen')}"

    text = re.sub(r"(?<![\d:.,])(\d{1,2})(?::(\d{2}))?\s?[-–—]\s?(\d{1,2})(?::(\d{2}))?(?![\d:])",
                  lambda m: rng(m) if (m.group(2) and m.group(4)) else m.group(0), text)

    def single(m: re.Match[str]) -> str:
        h, mi = int(m.group(1)), int(m.group(2))
        if h > 24 or mi > 59:
            return m.group(0)
        case = _case_from_prep(text, m.start())
        if case == "ins":
            case = "gen"
        if case == "acc":  # "в 10:21" -> "в десять двадцать одна"
            case = "nom"
        return time_words(h, mi, case)

    text = re.sub(r"(?<![\d:.,])(\d{1,2}):(\d{2})(?![\d:])", single, text)
    return text


def _pass_work_hours(text: str) -> str:
    def sub(m: re.Match[str]) -> str:
        h1, h2 = int(m.group(1)), int(m.group(2))
        before = text[max(0, m.start() - 40):m.start()]
        after = text[m.end():m.end() + 12]
        if not (0 <= h1 <= 24 and 0 <= h2 <= 24 and h1 < h2):
            return m.group(0)
        if not (_WORK_CONTEXT.search(before) or re.match(r"\s*(ч\b|ч\.|час)", after)):
            return m.group(0)
        prev = _prev_words(text, m.start(), 1)
        lead = "" if prev and prev[0] == "с" else "с "
        tail = ""
        unit = re.match(r"\s*(?:ч\.|ч\b)", after)
        if unit:
            tail = " часов"
        return f"{lead}{cardinal(h1, 'm', 'gen')} до {cardinal(h2, 'm', 'gen')}{tail}"

    out = re.sub(r"(?<![\d:.,\-])(\d{1,2})\s?[-–—]\s?(\d{1,2})(?![\d:]|[.,]\d)", sub, text)
    return re.sub(r"(часов)\s*(?:ч\.|ч\b)", r"\1", out)


_WEEKDAYS = {"пн": ("понедельник", "понедельника"), "вт": ("вторник", "вторника"), "ср": ("среда", "среды"),
             "чт": ("четверг", "четверга"), "пт": ("пятница", "пятницы"), "сб": ("суббота", "субботы"),
             "вс": ("воскресенье", "воскресенья")}
_WEEKDAY_ACC = {"пн": "понедельник", "вт": "вторник", "ср": "среду", "чт": "четверг", "пт": "пятницу",
                "сб": "субботу", "вс": "воскресенье"}


def _pass_weekdays(text: str) -> str:
    wd = "пн|вт|ср|чт|пт|сб|вс"

    def rng(m: re.Match[str]) -> str:
        a, b = m.group(1).lower(), m.group(2).lower()
        return f"с {_WEEKDAYS[a][1]} по {_WEEKDAY_ACC[b]}"

    text = re.sub(rf"(?<![А-Яа-яЁё])({wd})\.?\s?[-–—]\s?({wd})\.?(?![А-Яа-яЁё])", rng, text, flags=re.I)
    # a lone weekday before a colon or a time: "Сб: 10-16", "вс 10:00"
    text = re.sub(rf"(?<![А-Яа-яЁё])({wd})\.?(?=\s?:|\s\d)",
                  lambda m: _WEEKDAYS[m.group(1).lower()][0], text, flags=re.I)
    return text


def _pass_cardinal_suffixes(text: str) -> str:
    """Colloquial case endings on cardinals: "5-ти минут", "3-х дней", "2-мя" (not decades "90-х")."""
    def sub(m: re.Match[str]) -> str:
        n, suf = int(m.group(1)), m.group(2).lower()
        if suf == "х" and n >= 20 and n % 10 == 0:
            return m.group(0)  # "90-х", "1990-х": ordinal decades
        gender, _ = _number_grammar(m.string, m.start(), m.end(), n)
        case = "ins" if suf in ("мя", "ью") else "gen"
        return cardinal(n, gender, case)

    return re.sub(r"(?<![\d.,])(\d+)-(ти|х|ух|ёх|ех|мя|ью)(?![А-Яа-яЁё])", sub, text, flags=re.I)


def _pass_ordinals(text: str) -> str:
    suffix_map = {
        "й": ("m", "nom"), "ый": ("m", "nom"), "ий": ("m", "nom"), "ой": ("f", "gen"), "я": ("f", "nom"),
        "ая": ("f", "nom"), "ья": ("f", "nom"), "ю": ("f", "acc"), "ую": ("f", "acc"), "е": ("n", "nom"),
        "ое": ("n", "nom"), "ье": ("n", "nom"), "го": ("m", "gen"), "ого": ("m", "gen"), "его": ("m", "gen"),
        "му": ("m", "dat"), "ому": ("m", "dat"), "м": ("m", "ins"), "ым": ("m", "ins"), "ом": ("m", "prep"),
        "х": ("p", "gen"), "ых": ("p", "gen"), "ми": ("p", "ins"), "ыми": ("p", "ins"), "ые": ("p", "nom"),
    }

    def sub(m: re.Match[str]) -> str:
        n = int(m.group(1))
        suf = m.group(2).lower()
        gender, case = suffix_map[suf]
        if suf in ("м", "ым", "ом"):
            prep = _prep_before(text, m.start())
            case = "prep" if prep in ("в", "во", "на", "о", "об", "при", "по") else "ins"
        elif suf in ("й", "ой"):
            words = _next_words(text, m.end(), 2)
            noun, hint = _find_noun(words)
            fem = hint == "f"
            if noun and not fem:
                an = _analyses(noun)
                fem = bool(an) and an[0][0] == "f" and an[0][1] == "sg"
                if fem and an[0][2] in ("nom", "acc") and suf == "й":
                    fem = False if an[0][2] == "nom" and noun.endswith(("а", "я")) else fem
                if fem:
                    case = "gen" if an[0][2] in ("nom",) else an[0][2]
            if fem:
                gender = "f"
                case = case if case not in ("nom", "acc") else "gen"
        return ordinal(n, gender, case)

    return re.sub(r"(?<![\d.,])(\d+)-(ый|ий|ой|ая|ья|ую|ое|ье|ого|его|ому|ым|ом|ых|ыми|ые|й|я|ю|е|го|му|м|х|ми)"
                  r"(?![А-Яа-яЁё])", sub, text, flags=re.I)


# Expanded before numbers: they do not depend on a number's form, and "д. 5", "кв. 12" must be
# words before the number pass looks at the word in front of a number.
_ABBR_EARLY: list[tuple[str, str]] = [
    (r"\bт\.\s?е\.", "то есть"), (r"\bт\.\s?д\.", "так далее"), (r"\bт\.\s?п\.", "тому подобное"),
    (r"\bт\.\s?к\.", "так как"), (r"\bт\.\s?н\.", "так называемый"), (r"\bт\.\s?ч\.", "том числе"),
    (r"\bи\s+др\.", "и другие"), (r"\bи\s+пр\.", "и прочее"), (r"\bг-н\b", "господин"), (r"\bг-жа\b", "госпожа"),
    (r"\bул\.", "улица"), (r"\bпросп\.", "проспект"), (r"\bпр-т\b", "проспект"), (r"\bпер\.", "переулок"),
    (r"\bпл\.", "площадь"), (r"\bнаб\.", "набережная"), (r"\bб-р\b", "бульвар"), (r"\bш\.", "шоссе"),
    (r"\bкв\.", "квартира"), (r"\bкорп\.", "корпус"), (r"\bстр\.", "строение"), (r"\bоф\.", "офис"),
    (r"\bэт\.", "этаж"), (r"\bкаб\.", "кабинет"), (r"\bпом\.", "помещение"), (r"\bобл\.", "область"),
    (r"\bр-н\b", "район"), (r"\bмкр\.", "микрорайон"), (r"\bим\.", "имени"), (r"\bтел\.", "телефон"),
    (r"\bдоб\.", "добавочный"), (r"\bнапр\.", "например"), (r"\bгор\.", "город"),
    (r"\bд\.(?=\s?\d)", "дом"), (r"\bг\.(?=\s?[А-ЯЁ])", "город"), (r"№\s?", "номер "),
]
# Expanded after numbers: what is left of unit abbreviations without a number.
_ABBR_LATE: list[tuple[str, str]] = [
    (r"\bсм\.", "смотрите"), (r"\bруб\.", "рублей"), (r"\bкоп\.", "копеек"), (r"\bмин\.", "минут"),
    (r"\bсек\.", "секунд"), (r"\bтыс\.", "тысяч"), (r"\bмлн\b\.?", "миллионов"),
    (r"\bмлрд\b\.?", "миллиардов"), (r"\bч\.", "час"), (r"\bгг\.", "годы"), (r"\bг\.", "год"),
    (r"\bдр\.", "другие"),
]


def _compile_abbr(items: list[tuple[str, str]]) -> list[tuple[re.Pattern[str], str]]:
    # a letter look-behind instead of \b, which would also match after a digit or hyphen
    return [(re.compile(p.replace(r"\b", r"(?<![А-Яа-яЁёA-Za-z])", 1)), r) for p, r in items]


# Abbreviations that may end a sentence: their period is kept when a new sentence follows.
_TERMINAL_ABBR = {"так далее", "тому подобное", "и другие", "и прочее", "рублей", "копеек", "минут", "секунд",
                  "тысяч", "миллионов", "миллиардов", "час", "годы", "год", "другие"}


def _expand_abbr(text: str, items: list[tuple[re.Pattern[str], str]]) -> str:
    for pat, rep in items:
        if rep in _TERMINAL_ABBR:
            text = pat.sub(lambda m, rep=rep: _keep_period(m, rep), text)
        else:
            text = pat.sub(rep, text)
    return text


_ABBR_EARLY_RE = _compile_abbr(_ABBR_EARLY)
_ABBR_LATE_RE = _compile_abbr(_ABBR_LATE)

_LETTERS_RU = {"А": "а", "Б": "бэ", "В": "вэ", "Г": "гэ", "Д": "дэ", "Е": "е", "Ё": "ё", "Ж": "жэ", "З": "зэ",
               "И": "и", "Й": "и краткое", "К": "ка", "Л": "эль", "М": "эм", "Н": "эн", "О": "о", "П": "пэ",
               "Р": "эр", "С": "эс", "Т": "тэ", "У": "у", "Ф": "эф", "Х": "ха", "Ц": "цэ", "Ч": "че",
               "Ш": "ша", "Щ": "ща", "Ъ": "твёрдый знак", "Ы": "ы", "Ь": "мягкий знак", "Э": "э", "Ю": "ю",
               "Я": "я"}
_SPELLED = {"ООО", "ОАО", "ЗАО", "АО", "ИП", "ОМС", "ИНН", "ОГРН", "ЕГЭ", "ЭКГ", "УФМС", "ЖКХ", "ЕГРН"}


def _spell_acronym(m: re.Match[str]) -> str:
    word = m.group(0)
    if word in _SPELLED or (2 <= len(word) <= 5 and not re.search("[АЕЁИОУЫЭЮЯ]", word)):
        return " ".join(_LETTERS_RU[ch] for ch in word)
    return word


def _fraction_sub(text: str, m: re.Match[str]) -> str:
    a, b = int(m.group(1)), int(m.group(2))
    if (a, b) == (24, 7):
        return "круглосуточно"
    prev = _prev_words(text, m.start(), 1)
    if prev and prev[0] in ("д", "дом", "корпус", "корп", "строение", "кв", "квартира", "номер"):
        return f"{_say_int(m.group(1))} дробь {_say_int(m.group(2))}"
    if 2 <= b <= 10 and 0 < a < b:
        if a % 10 == 1 and a % 100 != 11:
            den = ordinal(b, "f", "nom")
        else:
            den = ordinal(b, "p", "gen")
        return f"{cardinal(a, 'f')} {den}"
    return f"{_say_int(m.group(1))} дробь {_say_int(m.group(2))}"


def _pass_numbers(text: str) -> str:
    """Remaining numbers: ranges, decimals, signed and plain integers with agreement."""
    def rng(m: re.Match[str]) -> str:
        a, b = m.group(1), m.group(2)
        ia, ib = int(_join_groups(a)), int(_join_groups(b))
        if ia >= ib:
            return m.group(0)
        gender, case = _number_grammar(text, m.start(), m.end(), ib)
        noun, _ = _find_noun(_next_words(text, m.end()))
        gen_fits = noun is None or any(fit == "gen" for _, num, c in _analyses(noun)
                                       for fit in _cases_for_count(ib, num, c))
        if not gen_fits:  # "2-3 дня" -> "два-три дня"
            return f"{_say_int(a, gender, case)}-{_say_int(b, gender, case)}"
        prev = _prev_words(text, m.start(), 1)
        lead = "" if prev and prev[0] == "от" else "от "
        return f"{lead}{_say_int(a, gender, 'gen')} до {_say_int(b, gender, 'gen')}"

    text = re.sub(rf"(?<![\d.,:\-])({_NUM})\s?[-–—]\s?({_NUM})(?![\d.,:]\d|\d)", rng, text)

    def num(m: re.Match[str]) -> str:
        sign, digits, frac = m.group("sign"), m.group("num"), m.group("frac")
        prefix = "минус " if sign in ("-", "−") else ("плюс " if sign == "+" else "")
        raw = _join_groups(digits)
        if frac is not None:
            _, case = _number_grammar(text, m.start(), m.end(), int(raw), is_int=False)
            return prefix + decimal(int(raw), frac, case)
        if len(raw) > 1 and raw.startswith("0"):
            return prefix + _digits_group(raw)
        prev = _prev_words(text, m.start(), 1)
        if digits == raw and (len(raw) >= 11 or (len(raw) >= 5 and prev and prev[0] in _ID_WORDS)
                              or (len(raw) >= 3 and prev and prev[0] in _CODE_WORDS)):
            return prefix + _say_id(raw)
        gender, case = _number_grammar(text, m.start(), m.end(), int(raw))
        collective = _collective(int(raw), text, m.end(), case)
        if collective:
            return prefix + collective
        return prefix + cardinal(int(raw), gender, case)

    text = re.sub(r"(\d+)/(\d+)(?![\d/])", lambda m: _fraction_sub(text, m), text)
    text = re.sub(rf"(?:(?<=^)|(?<=[\s(\[«\"']))(?P<sign>[-−+](?=\d))?(?P<num>{_NUM})(?:,(?P<frac>\d+)|\.(?P<dfrac>\d+)"
                  rf"(?![.\d]))?(?!\d)",
                  lambda m: num(_FracMatch(m)), text)
    # numbers glued to words or punctuation ("COVID-19", "A4")
    text = re.sub(r"(?<=[A-Za-zА-Яа-яЁё])-(?=\d)", " ", text)
    text = re.sub(r"(?P<sign>)(?P<num>\d+)(?P<frac>)", lambda m: " " + _say_int(m.group("num")) + " ", text)
    return text


_ID_WORDS = {"инн", "огрн", "огрнип", "кпп", "бик", "снилс", "счёт", "счет", "счета", "номер", "номера", "код",
             "кода", "заказ", "заказа", "заказу", "договор", "договора", "полис", "полиса", "карта", "карты",
             "артикул", "id", "пин", "pin", "лицевой", "лицевого", "паспорт", "серия", "серии", "телефон",
             "телефона", "накладная", "накладной", "трек", "трек-номер", "заявка", "заявки", "талон", "талона"}


_CODE_WORDS = {"код", "кода", "пин", "pin", "пин-код", "пароль", "пароля", "смс-код"}
_COLLECTIVE = {1: "одни", 2: "двое", 3: "трое", 4: "четверо"}


def _collective(n: int, text: str, end: int, case: str) -> str | None:
    """Plural-only nouns take collective numerals: "2 суток" -> "двое суток"."""
    words = _next_words(text, end, 1)
    if n in _COLLECTIVE and case in ("nom", "acc") and words and words[0] in ("сутки", "суток"):
        return _COLLECTIVE[n]
    return None


def _say_id(digits: str) -> str:
    """An identifier (ИНН, order, account) in pairs: "7701234567" -> "семьдесят семь, ноль один, ..."."""
    groups = []
    i = 0
    if len(digits) % 2:
        groups.append(digits[:3])
        i = 3
    groups += [digits[j:j + 2] for j in range(i, len(digits), 2)]
    return ", ".join(_digits_group(g) for g in groups) + ","


class _FracMatch:
    """A match view that merges the comma and dot decimal groups."""

    def __init__(self, m: re.Match[str]) -> None:
        self._m = m

    def group(self, name: str) -> str | None:
        if name == "frac":
            return self._m.group("frac") if self._m.group("frac") is not None else self._m.group("dfrac")
        return self._m.group(name)

    def start(self) -> int:
        return self._m.start()

    def end(self) -> int:
        return self._m.end()


def normalize(text: str) -> str:
    """Make Russian text speakable: numbers, dates, times, money, phones, abbreviations in words.

    Never raises: a pass that fails on odd input is skipped (and logged), the rest still run.
    """
    if not text:
        return ""
    t = text.replace("\u00ad", "")
    t = re.sub(r"[\u2010\u2011]", "-", t)
    for name, step in _PASSES:
        try:
            t = step(t)
        except Exception:  # noqa: BLE001 - speech must go on; the pass is a bug to fix
            _log.warning("text normalization pass %s failed on %r", name, t[:200], exc_info=True)
    return t.strip()


def _pass_addresses(t: str) -> str:
    t = _EMAIL_RE.sub(lambda m: _say_address(m.group(0)), t)
    return _URL_RE.sub(_url_sub, t)


def _pass_symbols(t: str) -> str:
    t = _expand_abbr(t, _ABBR_LATE_RE)
    t = re.sub(r"(?<![А-Яа-яЁё])[А-ЯЁ]{2,6}(?![А-Яа-яЁё])", _spell_acronym, t)
    t = t.replace("&", " и ").replace("=", " равно ")
    t = re.sub(r"(?<![\w])\$(?![\w])", "доллар", t)
    t = re.sub(r"(?<![\w])€(?![\w])", "евро", t)
    t = re.sub(r"(?<![\w])₽(?![\w])", "рубль", t)
    t = re.sub(r"(?<![\w])%(?![\w])", "процент", t)
    t = re.sub(r"(?<=\s)\+(?=\s)", "плюс", t)
    return t


def _pass_spaces(t: str) -> str:
    t = re.sub(r"[ \t\u00a0\u202f\u2009]+", " ", t)
    t = re.sub(r" ([,.!?;:)])", r"\1", t)
    t = re.sub(r",(?=[,.!?])", "", t)
    return re.sub(r",\s*$", "", t)


_PASSES = [
    ("addresses", _pass_addresses),
    ("phones", lambda t: _PHONE_RE.sub(_phone_sub, t)),
    ("abbreviations", lambda t: _expand_abbr(t, _ABBR_EARLY_RE)),
    ("dates", _pass_dates),
    ("weekdays", _pass_weekdays),
    ("times", _pass_times),
    ("work_hours", _pass_work_hours),
    ("units", _pass_units),
    ("cardinal_suffixes", _pass_cardinal_suffixes),
    ("ordinals", _pass_ordinals),
    ("numbers", _pass_numbers),
    ("symbols", _pass_symbols),
    ("spaces", _pass_spaces),
]


# ---- sentence splitting ---------------------------------------------------------------------------

# Abbreviations after which a period does not end a sentence (lowercase, without the period).
_NO_SPLIT_ABBR = {"г", "ул", "д", "кв", "им", "пр", "пер", "стр", "корп", "тел", "доб", "см", "ст", "просп",
                  "наб", "пл", "обл", "мкр", "каб", "эт", "оф", "пом", "т.е", "т.к", "т.н", "т.ч", "т", "напр",
                  "гор", "рис", "табл", "проф", "акад", "ш", "с", "п", "р-н", "№", "тыс", "млн", "млрд",
                  "e.g", "i.e", "mr", "mrs", "dr", "vs"}
_SPLIT_RE = re.compile(r"([.!?…]+[\"»”')\]]*)(\s+)")


def split_sentences(text: str) -> list[str]:
    """Sentences for one-by-one synthesis; keeps abbreviations, initials, decimals, phones intact."""
    out: list[str] = []
    for para in re.split(r"\n\s*", text or ""):
        para = para.strip()
        if not para:
            continue
        start = 0
        for m in _SPLIT_RE.finditer(para):
            end = m.end(1)
            nxt = para[m.end():m.end() + 1]
            if not nxt:
                continue
            if not (nxt.isupper() or nxt in "«\"“(—–-" or nxt.isdigit()):
                continue  # lowercase after the mark: an abbreviation or a quote inside the sentence
            punct = m.group(1)
            if punct.startswith(".") and not punct.startswith("..."):
                head = para[start:m.start(1)]
                last = re.search(r"([\wА-Яа-яЁё№.-]+)$", head)
                token = last.group(1).lower() if last else ""
                token = token.strip("-")
                year_abbr = token == "г" and re.search(r"\d\s?г$", head) is not None  # "в 2025 г. Мы"
                if (token in _NO_SPLIT_ABBR or token.rstrip(".") in _NO_SPLIT_ABBR) and not year_abbr:
                    continue
                if re.fullmatch(r"\d{1,2}", head.strip()):
                    continue  # a list item marker: "1. Паспорт"
                if re.fullmatch(r"[а-яёa-z]", token) and len(token) == 1 and last and last.group(1).isupper():
                    continue  # an initial: "А. С. Пушкин"
                if last and re.fullmatch(r"[А-ЯЁA-Z]", last.group(1)):
                    continue
            sentence = para[start:end].strip()
            if sentence:
                out.append(sentence)
            start = m.end()
        tail = para[start:].strip()
        if tail:
            out.append(tail)
    return out
