"""Russian caller speech for voice tests: Festival's Russian voice, written to WAV files."""
from __future__ import annotations

import subprocess
from pathlib import Path


def festival_wavs(base: Path, texts: dict[str, str]) -> dict[str, str]:
    """Synthesize each text to ``base/<key>.wav``; returns {key: path}."""
    out = {}
    for key, text in texts.items():
        txt, wav = base / f"{key}.txt", base / f"{key}.wav"
        txt.write_text(text, encoding="utf-8")
        subprocess.run(["text2wave", "-eval", "(voice_msu_ru_nsh_clunits)", str(txt), "-o", str(wav)],
                       check=True, capture_output=True, timeout=60)
        out[key] = str(wav)
    return out
