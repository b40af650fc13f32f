"""Speech and language engines (STT, LLM, TTS, VAD) behind one interface per kind (base.py)."""
