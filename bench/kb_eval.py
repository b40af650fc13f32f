"""Knowledge-base retrieval quality on Russian questions phrased differently from the stored ones.

A clinic's FAQ (FAQ below, 34 entries) is indexed into a scratch PostgreSQL database exactly as the
API does (``core.kb.indexing.index_entry``), then every evaluation question (68, two per entry,
worded differently from the stored question: synonyms, other word forms, colloquial speech, asking
about what only the answer says) is asked through ``core.kb.retrieval``. The first question of each
entry was the original set; the second was written before the ranking was reworked and never
tuned against. No synonym list or rule is derived from these questions.

``hit_rate`` is hit@k with k the ``knowledge.limit`` the runtime passes to ``retrieve()`` by
default (4; the snippets the LLM prompt gets): the expected entry is among them. ``hit_at_1`` (the
first snippet, what the scripted fallback reads out) and ``hit_at_3`` (the FAQ template's limit)
are printed too. It runs the word match alone, each installed embedding model alone, and the
hybrid ranking ``retrieve()`` uses (the final JSON line is that one); p50/p95 are per-query latency.

Run: ``.venv/bin/python bench/kb_eval.py`` (needs PostgreSQL). The last line is one JSON object
with ``hit_rate`` and ``questions`` (of the mode ``retrieve()`` uses).
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# (stored question, answer, [evaluation questions worded differently])
FAQ: list[tuple[str, str, list[str]]] = [
    ("Как записаться на приём?", "Запись по телефону +7 495 000-00-00, на сайте или в чате.",
     ["Хочу попасть к врачу, как это сделать?",
      "Могу я договориться о визите к доктору?"]),
    ("Сколько стоит профессиональная чистка зубов?", "Профессиональная гигиена полости рта — 3500 рублей.",
     ["Какая цена у гигиенической чистки?",
      "Сколько у вас стоит почистить зубы от налёта?"]),
    ("Во сколько открывается клиника?", "Мы работаем ежедневно с 9:00 до 21:00.",
     ["До которого часа вы работаете?",
      "С какого времени вы принимаете утром?"]),
    ("Где находится клиника?", "Москва, улица Ленина, дом 5, второй этаж.",
     ["Как к вам добраться?",
      "Какой у вас адрес?"]),
    ("Можно ли оплатить картой?", "Принимаем карты Мир, Visa, Mastercard и оплату по QR-коду.",
     ["Принимаете безналичный расчёт?",
      "Можно расплатиться банковской карточкой?"]),
    ("Лечите ли вы детей?", "Да, детский стоматолог принимает по будням с 10 до 18.",
     ["Можно привести ребёнка на лечение?",
      "У вас есть детский врач?"]),
    ("Есть ли парковка?", "Бесплатная парковка для пациентов во дворе клиники.",
     ["Где оставить машину?",
      "Есть куда поставить автомобиль рядом с вами?"]),
    ("Сколько стоит консультация?", "Первичная консультация стоматолога — 1000 рублей.",
     ["Какая стоимость первичного осмотра?",
      "Сколько стоит просто показаться врачу?"]),
    ("Делаете ли вы имплантацию?", "Да, ставим импланты Osstem и Straumann, под ключ от 45 000 рублей.",
     ["Можно у вас поставить имплант?",
      "У меня нет зуба, можете вживить искусственный корень?"]),
    ("Как отменить запись?", "Отменить или перенести визит можно по телефону не позднее чем за сутки.",
     ["Я не смогу прийти, как отказаться от визита?",
      "Мне нужно перенести визит на другой день"]),
    ("Работаете ли вы в выходные?", "Да, в субботу и воскресенье с 10:00 до 18:00.",
     ["Вы открыты в субботу?",
      "В воскресенье вы работаете?"]),
    ("Есть ли рассрочка?", "Рассрочка без переплаты на 6 месяцев через банк-партнёр.",
     ["Можно платить частями?",
      "Можно оплатить лечение в кредит?"]),
    ("Больно ли лечить зубы?", "Лечим под современной анестезией, процедура безболезненна.",
     ["Будет ли больно во время лечения?",
      "Я боюсь боли, будет обезболивание?"]),
    ("Делаете ли вы отбеливание?", "Отбеливание ZOOM — 15 000 рублей за процедуру.",
     ["Хочу сделать зубы белее, это возможно?",
      "Сколько стоит осветлить эмаль?"]),
    ("Сколько стоит удаление зуба?", "Простое удаление — 2500 рублей, сложное — от 5000 рублей.",
     ["Какая цена, чтобы вырвать зуб?",
      "Почём удалить зуб мудрости?"]),
    ("Есть ли гарантия на пломбы?", "Гарантия на пломбы — 1 год, на коронки — 3 года.",
     ["Какой гарантийный срок на пломбу?",
      "Если пломба выпадет, переделаете бесплатно?"]),
    ("Работаете ли вы по ДМС?", "Работаем с ДМС Ингосстрах, СОГАЗ, Альфастрахование.",
     ["Принимаете ли добровольное медицинское страхование?",
      "У меня страховой полис от работы, он подойдёт?"]),
    ("Можно ли сделать рентген?", "Прицельный снимок — 500 рублей, панорамный — 1500 рублей.",
     ["Делаете ли вы снимки зубов?",
      "Можно у вас сделать панорамный снимок челюсти?"]),
    ("Ставите ли вы брекеты?", "Ортодонт ставит металлические и керамические брекеты и элайнеры.",
     ["Хочу исправить прикус, вы этим занимаетесь?",
      "Зубы растут криво, чем можете помочь?"]),
    ("Какие документы нужны на приём?", "Возьмите паспорт, для детей — свидетельство о рождении.",
     ["Что с собой взять на первый визит?",
      "Паспорт нужно брать с собой?"]),
    ("Есть ли скидки пенсионерам?", "Пенсионерам скидка 10% на лечение по будням.",
     ["Для пожилых людей есть льготы?",
      "Я на пенсии, мне положена скидка?"]),
    ("Можно ли получить налоговый вычет?", "Выдаём справку для налогового вычета за лечение.",
     ["Нужна справка в налоговую, чтобы вернуть НДФЛ",
      "Как вернуть часть денег за лечение через налоговую?"]),
    ("Сколько длится приём?", "Обычный приём занимает от 30 до 60 минут.",
     ["Какая продолжительность визита?",
      "Сколько времени займёт визит?"]),
    ("Есть ли у вас лицензия?", "Лицензия Департамента здравоохранения Москвы № ЛО-77-01-000000.",
     ["Клиника лицензирована?",
      "У вас есть разрешение на медицинскую деятельность?"]),
    ("Можно ли лечить зубы во время беременности?", "Да, во втором триместре лечим безопасными анестетиками.",
     ["Я беременна, можно ли мне к стоматологу?",
      "Жду ребёнка, можно ли лечить зуб?"]),
    ("Делаете ли вы протезирование?", "Коронки из циркония и металлокерамики, съёмные протезы.",
     ["Нужна коронка на зуб, вы делаете?",
      "Можно сделать зубной протез?"]),
    ("Принимаете ли вы срочно с острой болью?", "При острой боли примем в день обращения, звоните.",
     ["Сильно болит зуб, можно прийти сегодня?",
      "У меня флюс и ужасно болит, примете сейчас?"]),
    ("Как подготовиться к удалению зуба?", "Поешьте за 2 часа до визита и не принимайте алкоголь накануне.",
     ["Что нужно сделать перед тем, как вырывать зуб?",
      "Можно ли есть перед удалением зуба?"]),
    ("Можно ли прийти без записи?", "Без записи принимаем только с острой болью, в порядке очереди.",
     ["Примете, если приду просто так, не записавшись?",
      "Принимаете ли вы в порядке живой очереди?"]),
    ("Есть ли Wi-Fi в клинике?", "Бесплатный Wi-Fi в зоне ожидания, пароль у администратора.",
     ["Можно подключиться к интернету, пока жду?",
      "Какой у вас пароль от вайфая?"]),
    ("Как оставить отзыв?", "Отзыв можно оставить на сайте или на Яндекс Картах.",
     ["Где написать своё мнение о клинике?",
      "Хочу поблагодарить врача, где это сделать?"]),
    ("Сколько стоит лечение кариеса?", "Лечение кариеса с пломбой — от 4200 рублей.",
     ["Почём запломбировать дырку в зубе?",
      "Сколько стоит поставить пломбу?"]),
    ("Есть ли у вас анестезиолог?", "Лечение во сне с анестезиологом — от 12 000 рублей.",
     ["Можно лечить зубы под общим наркозом?",
      "Можно ли лечиться во сне?"]),
    ("Какие врачи у вас работают?", "Терапевты, хирурги, ортодонты, ортопеды и детский стоматолог.",
     ["Каких специалистов можно у вас найти?",
      "Есть ли у вас хирург и ортодонт?"]),
]


def evaluate(project_id, expected: dict[str, str], embedder, k: int) -> dict:
    """hit@1, hit@3, hit@k (k: the snippets the runtime passes to the prompt) and per-query latency."""
    from core.kb.retrieval import search
    hits = {1: 0, 3: 0, k: 0}
    misses, latencies = [], []
    for question, entry_id in expected.items():
        started = time.perf_counter()
        found = search(project_id, question, limit=max(hits), embedder=embedder)
        latencies.append(time.perf_counter() - started)
        ids = [str(s.entry_id) for s in found]
        for n in hits:
            hits[n] += entry_id in ids[:n]
        if entry_id not in ids[:k]:
            misses.append({"question": question, "got": found[0].source_name if found else None})
    n = len(expected)
    latencies.sort()
    return {"hit_rate": round(hits[k] / n, 4), "hit_at_1": round(hits[1] / n, 4), "hit_at_3": round(hits[3] / n, 4),
            f"hit_at_{k}": round(hits[k] / n, 4), "questions": n, "misses": misses,
            "p50_ms": round(1000 * latencies[n // 2], 1), "p95_ms": round(1000 * latencies[int(n * 0.95)], 1)}


def main() -> int:
    import psycopg2

    from core.config import Settings, set_settings
    from core.agent.config import DEFAULTS
    from core.kb.embeddings import Embedder, get_embedder
    from core.kb.indexing import index_entry
    from core.seed import create_org, create_project
    from models.base import bind_database
    from models.kb import KbEntry
    from models.migrate import migrate

    base = os.environ.get("VOICEAI_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    db_name = f"voiceai_kbeval_{os.getpid()}"
    admin = psycopg2.connect(base)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{db_name}"')
    url = base.rsplit("/", 1)[0] + "/" + db_name
    try:
        set_settings(Settings.from_env(overrides={"database_url": url, "log_level": "WARNING"}, environ={}))
        db = bind_database(url)
        migrate(db, log=lambda *_: None)
        embedder = get_embedder()
        k = int(DEFAULTS["knowledge"]["limit"])  # what the runtime passes to retrieve()
        with db.connection_context():
            project = create_project(create_org("KB eval", "kb-eval"), "Стоматология")
            expected: dict[str, str] = {}
            for question, answer, asked in FAQ:
                entry = KbEntry.create(project=project.id, question=question, answer=answer, status="active")
                index_entry(entry, embedder)
                expected.update({q: str(entry.id) for q in asked})
            results = {"fts": evaluate(project.id, expected, None, k)}
            if embedder is not None:
                for encoder in embedder.encoders:  # each model alone, to show what the ensemble adds
                    results[encoder.name] = evaluate(project.id, expected, Embedder([encoder]), k)
                results["hybrid"] = evaluate(project.id, expected, embedder, k)
        db.close()
        for mode, res in results.items():
            print(f"{mode:26} hit@1={res['hit_at_1']:.3f} hit@3={res['hit_at_3']:.3f} hit@{k}={res['hit_rate']:.3f} "
                  f"questions={res['questions']} p50={res['p50_ms']}ms p95={res['p95_ms']}ms")
            for miss in res["misses"]:
                print(f"        miss@{k}: {miss['question']!r} -> {miss['got']!r}")
        mode = "hybrid" if embedder is not None else "fts"
        final = results[mode]
        print(json.dumps({"hit_rate": final["hit_rate"], "k": k, "hit_at_1": final["hit_at_1"],
                          "hit_at_3": final["hit_at_3"], "questions": final["questions"], "mode": mode,
                          "embedding_model": embedder.name if embedder else None,
                          "fts_hit_rate": results["fts"]["hit_rate"], "fts_hit_at_1": results["fts"]["hit_at_1"],
                          "p50_ms": final["p50_ms"], "p95_ms": final["p95_ms"]}, ensure_ascii=False))
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{db_name}"')
        admin.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
