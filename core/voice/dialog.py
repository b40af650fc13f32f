"""What the caller heard of the agent's reply when they interrupted it (barge-in).

The reply itself comes from the dialog runtime (``core.agent.session.AgentSession``), the same for
phone calls, the browser and the text playground.
"""
from __future__ import annotations


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
