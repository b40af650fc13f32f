"""Pure pieces of knowledge-base ranking: dictionary forms, filler words, entry views, fusion."""
from __future__ import annotations

import numpy as np

from core.kb.fusion import fuse, zscores
from core.kb.lemmas import lemma_text, lemmas, strip_fillers
from core.kb.representations import document_views, entry_views, sentences


def test_word_forms_unify_to_one_dictionary_form():
    assert lemmas("машину") == lemmas("машины") == lemmas("Машина") == ["машина"]
    assert lemmas("Лечите ли вы детей?") == ["лечить", "ребенок"]  # "ли", "вы" are stop words; ё -> е
    assert lemmas("Где оставить машину?", drop_stop=False) == ["где", "оставить", "машина"]
    assert lemma_text("Бесплатная парковка для пациентов") == "бесплатный парковка пациент"
    assert lemmas("и в на, подскажите пожалуйста") == []


def test_caller_fillers_are_stripped_but_not_the_question():
    assert strip_fillers("Подскажите, пожалуйста, а где у вас парковка?") == "где у вас парковка?"
    assert strip_fillers("Алло, здравствуйте! Скажите, вы работаете в субботу?") == "вы работаете в субботу?"
    assert strip_fillers("Анализы сдаёте?") == "Анализы сдаёте?"  # "а" only as a whole word
    assert strip_fillers("Вопрос") == "Вопрос"                 # nothing left: keep what was said
    assert strip_fillers("  ") == ""


def test_an_entry_is_viewed_as_question_answer_and_sentences():
    views = entry_views(" Есть ли парковка? ", "Бесплатная парковка во дворе. Въезд с улицы Ленина.")
    assert [(v.kind, v.group, v.is_query) for v in views] == [
        ("question", "question", True), ("qa", "whole", False), ("answer", "answer", False),
        ("sentence", "answer", False), ("sentence", "answer", False)]
    assert views[1].text == "Есть ли парковка?\nБесплатная парковка во дворе. Въезд с улицы Ленина."
    assert [v.kind for v in entry_views("Есть ли парковка?", "Да, во дворе.")] == ["question", "qa", "answer"]
    assert sentences("Да. Лечим детей с трёх лет! Звоните?") == ["Лечим детей с трёх лет!"]
    assert [(v.kind, v.group) for v in document_views(" Прайс ")] == [("text", "whole")]


def test_zscores_and_degenerate_populations():
    assert np.allclose(zscores(np.array([1.0, 2.0, 3.0])), [-1.2247, 0.0, 1.2247], atol=1e-4)
    assert zscores(np.array([0.5])).tolist() == [0.0]
    assert zscores(np.array([0.7, 0.7])).tolist() == [0.0, 0.0]


def test_fusion_standardises_models_so_a_compressed_scale_counts_as_much():
    # model A spreads its cosines widely and prefers chunk 0; model B crowds them but clearly
    # prefers chunk 1 by the same margin in its own scale: neither dominates because of its scale
    wide = {0: 0.9, 1: 0.5, 2: 0.1}
    narrow = {0: 0.80, 1: 0.86, 2: 0.74}
    scores = fuse(3, [wide, narrow])
    assert scores[2] < scores[0] and scores[2] < scores[1]
    assert abs(scores[0] - scores[1]) < abs(zscores(np.array([0.9, 0.5, 0.1]))[0])
    # a chunk missing a group (a document chunk has no question view) averages over what it has
    partial = fuse(3, [{0: 0.9, 1: 0.1}, {0: 0.2, 1: 0.8, 2: 0.5}])
    assert np.allclose(partial, [(1 - 1.2247) / 2, (-1 + 1.2247) / 2, 0.0], atol=1e-4)


def test_word_match_only_breaks_near_ties():
    signal = {0: 0.80, 1: 0.79, 2: 0.20}
    assert int(np.argmax(fuse(3, [signal]))) == 0
    assert int(np.argmax(fuse(3, [signal], lexical=[0.0, 1.0, 0.0]))) == 1       # near-tie: the named word wins
    assert int(np.argmax(fuse(3, [signal], lexical=[0.0, 0.0, 1.0]))) == 0       # but cannot lift a poor match
    assert fuse(0, [], lexical=[]).tolist() == []
