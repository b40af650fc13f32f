"""Pure voice-loop logic: endpointing, sentence cutting, what the caller heard, per-agent settings."""
from __future__ import annotations

from core.voice.dialog import heard_prefix
from core.voice.endpoint import (Endpointer, NoiseDiscarded, SpeechStarted, TurnConfig, TurnEnded,
                                 looks_unfinished)
from core.voice.sentences import SentenceStream

FRAME = b"\x01\x00" * 160  # 20 ms at 8 kHz


def run(ep: Endpointer, pattern: list[tuple[bool, int]], start_ms: int = 0, partial_at: dict[int, str] | None = None):
    """Feed (is_speech, frames) runs; returns (events, t_ms at the end)."""
    events, t = [], start_ms
    partial_at = partial_at or {}
    for speech, n in pattern:
        for _ in range(n):
            t += 20
            if t in partial_at:
                ep.set_partial(partial_at[t])
            events.extend((t, e) for e in ep.push(FRAME, speech, t))
    return events, t


def test_a_turn_ends_after_the_configured_silence():
    ep = Endpointer(TurnConfig(silence_ms=700, min_speech_ms=200))
    events, _ = run(ep, [(False, 10), (True, 50), (False, 40)])
    kinds = [type(e).__name__ for _t, e in events]
    assert kinds == ["SpeechStarted", "TurnEnded"]
    (t_end, ended), = [(t, e) for t, e in events if isinstance(e, TurnEnded)]
    assert ended.reason == "silence" and ended.speech_ms == 1000
    assert ended.decided_ms - ended.t_ms == 700 and t_end == ended.decided_ms
    # preroll (200 ms) + the speech + the silence waited, all in the turn's audio
    assert len(ended.audio) == len(FRAME) * (10 + 50 + 35)
    assert not ep.in_turn


def test_short_noise_is_not_a_turn():
    ep = Endpointer(TurnConfig(silence_ms=400, min_speech_ms=200))
    events, _ = run(ep, [(True, 5), (False, 30)])
    assert [type(e) for _t, e in events] == [SpeechStarted, NoiseDiscarded]
    # two isolated speech frames never even start a turn (3 consecutive frames do)
    events, _ = run(Endpointer(), [(True, 2), (False, 5), (True, 2), (False, 50)])
    assert events == []


def test_unfinished_phrase_gets_more_silence_before_the_turn_ends():
    cfg = TurnConfig(silence_ms=700, extended_silence_ms=1600)
    # The caller dictates a number and pauses 1 s: with a partial ending in digits the turn goes on.
    ep = Endpointer(cfg)
    events, t = run(ep, [(True, 50), (False, 50), (True, 30), (False, 100)],
                    partial_at={500: "мой номер девять один шесть", 2200: "мой номер девять один шесть пять"})
    ends = [e for _t, e in events if isinstance(e, TurnEnded)]
    assert len(ends) == 1, "the 1 s pause inside the number did not end the turn"
    assert ends[0].decided_ms - ends[0].t_ms == 1600
    # Without a partial the same pause ends the turn at 700 ms: two turns.
    ep = Endpointer(cfg)
    events, _ = run(ep, [(True, 50), (False, 50), (True, 30), (False, 100)])
    assert len([e for _t, e in events if isinstance(e, TurnEnded)]) == 2
    # A finished phrase keeps the short timer.
    ep = Endpointer(cfg)
    events, _ = run(ep, [(True, 50), (False, 50)], partial_at={500: "хочу записаться на завтра"})
    ends = [e for _t, e in events if isinstance(e, TurnEnded)]
    assert len(ends) == 1 and ends[0].decided_ms - ends[0].t_ms == 700


def test_partial_is_forgotten_with_the_turn_and_turn_audio_grows():
    ep = Endpointer(TurnConfig(silence_ms=200))
    run(ep, [(True, 5)])
    assert ep.in_turn and len(ep.turn_audio) == 5 * len(FRAME)
    ep.set_partial("номер телефона")
    run(ep, [(True, 5)])
    assert len(ep.turn_audio) == 10 * len(FRAME)
    run(ep, [(False, 90)])  # extended silence (1600 ms default) ends it
    assert not ep.in_turn and ep.partial == "" and ep.turn_audio == b""


def test_max_turn_length_forces_an_end():
    ep = Endpointer(TurnConfig(max_turn_ms=2000))
    events, _ = run(ep, [(True, 150)])
    ends = [e for _t, e in events if isinstance(e, TurnEnded)]
    assert ends and ends[0].reason == "max_length"


def test_looks_unfinished():
    for text in ("мой телефон 8 916", "почта иван собака", "ivan точка", "я хотел бы записаться на",
                 "меня зовут", "двадцать пять"):
        assert looks_unfinished(text), text
    for text in ("", "хочу записаться к стоматологу", "спасибо, до свидания", "да"):
        assert not looks_unfinished(text), text


def test_sentence_stream_cuts_sentences_as_tokens_arrive():
    s = SentenceStream()
    out = []
    for piece in ["Здравствуйте", "! Цена — 3.5 тыс", ". руб. за приём", ", т.е. недорого. Запис", "ать вас?"]:
        out.extend(s.feed(piece))
    assert out == ["Здравствуйте!", "Цена — 3.5 тыс. руб. за приём, т.е. недорого."]
    assert s.flush() == ["Записать вас?"] and s.flush() == []


def test_heard_prefix_keeps_whole_words_by_share_played():
    text = "Врач принимает с девяти утра до шести вечера"
    assert heard_prefix(text, 0, 4000) == ""
    assert heard_prefix(text, 4000, 4000) == text
    assert heard_prefix(text, 2000, 4000) == "Врач принимает с девяти"
    assert heard_prefix(text, 100, 0) == text


def test_voice_settings_from_agent_config():
    from esl_app.voice import VoiceSettings
    s = VoiceSettings.from_agent_config({
        "greeting": "Алло", "persona": "Ты администратор",
        "voice": {"barge_in_min_ms": 500, "silence_reprompt_s": 5, "turn": {"silence_ms": 900},
                  "stt_hints": ["Улыбка", "стоматолог"]}})
    assert s.barge_in_min_ms == 500 and s.silence_reprompt_s == 5.0 and s.turn.silence_ms == 900
    assert s.stt_hints == ["Улыбка", "стоматолог"]
    assert VoiceSettings.from_agent_config({}).stt_hints == []
    # The Studio's adaptive settings win over the raw voice section.
    s = VoiceSettings.from_agent_config({"adaptive": {"silence_timeout_s": 12, "interruption_sensitivity": "low"},
                                         "escalation": {"low_confidence_turns": 3}, "voice": {"silence_reprompt_s": 5}})
    assert s.silence_reprompt_s == 12.0 and s.low_confidence_escalate_after == 3
    assert s.barge_in_min_ms > VoiceSettings().barge_in_min_ms
