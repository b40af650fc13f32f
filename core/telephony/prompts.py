"""Fixed voice prompts FreeSWITCH plays from the dialplan: test-call phrase, recording notice,
after-hours message.

They are synthesized locally into VOICEAI_FS_SOUNDS_DIR (``voiceai prompts render``; the installer
and scripts run it) with the best Russian voice on the machine: Festival's ``msu_ru_nsh`` voice,
else espeak-ng. A number's own after-hours text is rendered to ``after_hours_<number id>.wav``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

PROMPTS: dict[str, str] = {
    "test_call_ru": "Здравствуйте! Это тестовый звонок платформы голосовых агентов. Подключение работает.",
    "recording_notice_ru": "Обратите внимание: разговор записывается.",
    "after_hours_ru": "Здравствуйте! Сейчас мы не работаем. Пожалуйста, позвоните в рабочее время. До свидания.",
}


class PromptSynthesisError(RuntimeError):
    """No Russian voice is installed, or the synthesizer failed."""


def available_engine() -> str | None:
    if shutil.which("text2wave") and Path("/usr/share/festival/voices/russian").exists():
        return "festival"
    if shutil.which("espeak-ng"):
        return "espeak-ng"
    return None


def synthesize(text: str, out_path: Path, engine: str | None = None) -> str:
    """Write a WAV of ``text``; returns the engine used."""
    engine = engine or available_engine()
    if engine is None:
        raise PromptSynthesisError("нет русского синтезатора речи: установите пакеты festival festvox-ru "
                                   "или espeak-ng")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".part.wav")
    if engine == "festival":
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt", delete=False) as fh:
            fh.write(text)
            text_file = fh.name
        try:
            cmd = ["text2wave", "-eval", "(voice_msu_ru_nsh_clunits)", text_file, "-o", str(tmp)]
            proc = subprocess.run(cmd, capture_output=True, timeout=60)
        finally:
            os.unlink(text_file)
    else:
        proc = subprocess.run(["espeak-ng", "-v", "ru", "-s", "150", "-w", str(tmp), text],
                              capture_output=True, timeout=60)
    if proc.returncode != 0 or not tmp.exists() or tmp.stat().st_size < 1000:
        tmp.unlink(missing_ok=True)
        raise PromptSynthesisError(f"{engine} failed: {proc.stderr.decode(errors='replace')[:300]}")
    os.replace(tmp, out_path)
    return engine


def render_prompts(sounds_dir: str | Path, overwrite: bool = False) -> dict[str, str]:
    """Synthesize every fixed prompt that is missing; {name: engine or 'kept'}."""
    sounds = Path(sounds_dir)
    done: dict[str, str] = {}
    for name, text in PROMPTS.items():
        target = sounds / f"{name}.wav"
        if target.exists() and not overwrite:
            done[name] = "kept"
            continue
        done[name] = synthesize(text, target)
    return done
