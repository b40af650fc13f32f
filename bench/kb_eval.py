"""Knowledge-base retrieval quality on Russian questions phrased differently from the stored ones.

A clinic's FAQ (FAQ below) is indexed into a scratch PostgreSQL database exactly as the API does
(``core.kb.indexing.index_entry``), then every evaluation question (worded differently from the
stored question: synonyms, other word forms, colloquial speech) is asked through
``core.kb.retrieval``. A hit is the expected entry as the first snippet (``hit_rate``); ``hit_at_4``
counts it anywhere among the 4 snippets the dialog runtime puts into the prompt. It runs full-text
search alone and, when the embedding model is installed, the hybrid ranking the runtime uses.

Run: ``.venv/bin/python bench/kb_eval.py`` (needs PostgreSQL). The last line is one JSON object
with ``hit_rate`` and ``questions`` (of the mode ``retrieve()`` uses).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# (stored question, answer, [evaluation questions worded differently])
FAQ: list[tuple[str, str, list[str]]] = [
    ("Как записаться на приём?", "Запись по телефону +7 495 000-00-00, на сайте или в чате.",
     ["Хочу попасть к врачу, как это сделать?"]),
    ("Сколько стоит профессиональная чистка зубов?", "Профессиональная гигиена полости рта — 3500 рублей.",
     ["Какая цена у гигиенической чистки?"]),
    ("Во сколько открывается клиника?", "Мы работаем ежедневно с 9:00 до 21:00.",
     ["До которого часа вы работаете?"]),
    ("Где находится клиника?", "Москва, улица Ленина, дом 5, второй этаж.",
     ["Как к вам добраться?"]),
    ("Можно ли оплатить картой?", "Принимаем карты Мир, Visa, Mastercard и оплату по QR-коду.",
     ["Принимаете безналичный расчёт?"]),
    ("Лечите ли вы детей?", "Да, детский стоматолог принимает по будням с 10 до 18.",
     ["Можно привести ребёнка на лечение?"]),
    ("Есть ли парковка?", "Бесплатная парковка для пациентов во дворе клиники.",
     ["Где оставить машину?"]),
    ("Сколько стоит консультация?", "Первичная консультация стоматолога — 1000 рублей.",
     ["Какая стоимость первичного осмотра?"]),
    ("Делаете ли вы имплантацию?", "Да, ставим импланты Osstem и Straumann, под ключ от 45 000 рублей.",
     ["Можно у вас поставить имплант?"]),
    ("Как отменить запись?", "Отменить или перенести визит можно по телефону не позднее чем за сутки.",
     ["Я не смогу прийти, как отказаться от визита?"]),
    ("Работаете ли вы в выходные?", "Да, в субботу и воскресенье с 10:00 до 18:00.",
     ["Вы открыты в субботу?"]),
    ("Есть ли рассрочка?", "Рассрочка без переплаты на 6 месяцев через банк-партнёр.",
     ["Можно платить частями?"]),
    ("Больно ли лечить зубы?", "Лечим под современной анестезией, процедура безболезненна.",
     ["Будет ли больно во время лечения?"]),
    ("Делаете ли вы отбеливание?", "Отбеливание ZOOM — 15 000 рублей за процедуру.",
     ["Хочу сделать зубы белее, это возможно?"]),
    ("Сколько стоит удаление зуба?", "Простое удаление — 2500 рублей, сложное — от 5000 рублей.",
     ["Какая цена, чтобы вырвать зуб?"]),
    ("Есть ли гарантия на пломбы?", "Гарантия на пломбы — 1 год, на коронки — 3 года.",
     ["Какой гарантийный срок на пломбу?"]),
    ("Работаете ли вы по ДМС?", "Работаем с ДМС Ингосстрах, СОГАЗ, Альфастрахование.",
     ["Принимаете ли добровольное медицинское страхование?"]),
    ("Можно ли сделать рентген?", "Прицельный снимок — 500 рублей, панорамный — 1500 рублей.",
     ["Делаете ли вы снимки зубов?"]),
    ("Ставите ли вы брекеты?", "Ортодонт ставит металлические и керамические брекеты и элайнеры.",
     ["Хочу исправить прикус, вы этим занимаетесь?"]),
    ("Какие документы нужны на приём?", "Возьмите паспорт, для детей — свидетельство о рождении.",
     ["Что с собой взять на первый визит?"]),
    ("Есть ли скидки пенсионерам?", "Пенсионерам скидка 10% на лечение по будням.",
     ["Для пожилых людей есть льготы?"]),
    ("Можно ли получить налоговый вычет?", "Выдаём справку для налогового вычета за лечение.",
     ["Нужна справка в налоговую, чтобы вернуть НДФЛ"]),
    ("Сколько длится приём?", "Обычный приём занимает от 30 до 60 минут.",
     ["Какая продолжительность визита?"]),
    ("Есть ли у вас лицензия?", "Лицензия Департамента здравоохранения Москвы № ЛО-77-01-000000.",
     ["Клиника лицензирована?"]),
    ("Можно ли лечить зубы во время беременности?", "Да, во втором триместре лечим безопасными анестетиками.",
     ["Я беременна, можно ли мне к стоматологу?"]),
    ("Делаете ли вы протезирование?", "Коронки из циркония и металлокерамики, съёмные протезы.",
     ["Нужна коронка на зуб, вы делаете?"]),
    ("Принимаете ли вы срочно с острой болью?", "При острой боли примем в день обращения, звоните.",
     ["Сильно болит зуб, можно прийти сегодня?"]),
    ("Как подготовиться к удалению зуба?", "Поешьте за 2 часа до визита и не принимайте алкоголь накануне.",
     ["Что нужно сделать перед тем, как вырывать зуб?"]),
    ("Можно ли прийти без записи?", "Без записи принимаем только с острой болью, в порядке очереди.",
     ["Примете, если приду просто так, не записавшись?"]),
    ("Есть ли Wi-Fi в клинике?", "Бесплатный Wi-Fi в зоне ожидания, пароль у администратора.",
     ["Можно подключиться к интернету, пока жду?"]),
    ("Как оставить отзыв?", "Отзыв можно оставить на сайте или на Яндекс Картах.",
     ["Где написать своё мнение о клинике?"]),
    ("Сколько стоит лечение кариеса?", "Лечение кариеса с пломбой — от 4200 рублей.",
     ["Почём запломбировать дырку в зубе?"]),
    ("Есть ли у вас анестезиолог?", "Лечение во сне с анестезиологом — от 12 000 рублей.",
     ["Можно лечить зубы под общим наркозом?"]),
    ("Какие врачи у вас работают?", "Терапевты, хирурги, ортодонты, ортопеды и детский стоматолог.",
     ["Каких специалистов можно у вас найти?"]),
]


def evaluate(project_id, expected: dict[str, str], embedder) -> dict:
    from core.kb.retrieval import search
    hits = hits4 = 0
    misses = []
    for question, entry_id in expected.items():
        found = search(project_id, question, limit=4, embedder=embedder)
        ids = [str(s.entry_id) for s in found]
        hits += bool(ids and ids[0] == entry_id)
        hits4 += entry_id in ids
        if not ids or ids[0] != entry_id:
            misses.append({"question": question, "got": found[0].source_name if found else None})
    n = len(expected)
    return {"hit_rate": round(hits / n, 4), "hit_at_4": round(hits4 / n, 4), "questions": n, "misses": misses}


def main() -> int:
    import psycopg2

    from core.config import Settings, set_settings
    from core.kb.embeddings import get_embedder
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
        with db.connection_context():
            project = create_project(create_org("KB eval", "kb-eval"), "Стоматология")
            expected: dict[str, str] = {}
            for question, answer, asked in FAQ:
                entry = KbEntry.create(project=project.id, question=question, answer=answer, status="active")
                index_entry(entry, embedder)
                expected.update({q: str(entry.id) for q in asked})
            results = {"fts": evaluate(project.id, expected, None)}
            if embedder is not None:
                results["hybrid"] = evaluate(project.id, expected, embedder)
        db.close()
        for mode, res in results.items():
            print(f"{mode:7} hit@1={res['hit_rate']:.3f} hit@4={res['hit_at_4']:.3f} questions={res['questions']}")
            for miss in res["misses"]:
                print(f"        miss: {miss['question']!r} -> {miss['got']!r}")
        mode = "hybrid" if embedder is not None else "fts"
        final = results[mode]
        print(json.dumps({"hit_rate": final["hit_rate"], "hit_at_4": final["hit_at_4"],
                          "questions": final["questions"], "mode": mode,
                          "embedding_model": embedder.name if embedder else None,
                          "fts_hit_rate": results["fts"]["hit_rate"]}, ensure_ascii=False))
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{db_name}"')
        admin.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
