"""What the agent says back: the responder interface the voice loop streams replies from.

The voice loop only needs "given the conversation so far, stream the reply text". ``LlmResponder``
does that with any LLM engine, keeping the system prompt as the cached static prefix so a turn pays
only for its new tokens. The Agent Studio's dialog runtime plugs in through the same interface.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Protocol

from core.engines.base import LlmEngine, LlmRequest, Message

DEFAULT_SYSTEM_PROMPT = (
    "Ты — вежливый голосовой ассистент компании. Отвечай по-русски, коротко (одно-два предложения), "
    "на «вы». Не выдумывай факты, цены и сроки, которых нет в инструкции. Если тебя спросят, робот ли ты, "
    "честно скажи, что ты голосовой помощник. Если не понял вопрос — переспроси.")


class Responder(Protocol):
    def stream(self, history: list[Message]) -> Iterator[str]:
        """Reply text pieces for the conversation ``history`` (last message: the caller)."""


@dataclass
class LlmResponder:
    engine: LlmEngine
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    max_tokens: int = 160
    temperature: float = 0.3
    extra_static: list[Message] = field(default_factory=list)

    def stream(self, history: list[Message]) -> Iterator[str]:
        static = [Message("system", self.system_prompt), *self.extra_static]
        request = LlmRequest(messages=static + list(history), max_tokens=self.max_tokens,
                             temperature=self.temperature, cache_prefix=len(static))
        for chunk in self.engine.stream(request):
            if chunk.text:
                yield chunk.text


def heard_prefix(text: str, played_ms: float, duration_ms: float) -> str:
    """The part of a sentence the caller heard before barge-in, by the share of audio played.

    FreeSWITCH gives no "played up to here" acknowledgement, so the share of elapsed playback time
    is the best estimate; words are kept whole, a word counts as heard once half of it was played.
    """
    if duration_ms <= 0 or played_ms >= duration_ms:
        return text
    if played_ms <= 0:
        return ""
    words = text.split()
    share = played_ms / duration_ms
    n = int(len(words) * share + 0.5)
    return " ".join(words[:n])
