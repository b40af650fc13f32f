"""FreeSWITCH 1.10.12 simulator for VoiceAI tests and benchmarks.

Speaks the Event Socket protocol exactly as the captures in shared/fixtures/freeswitch show,
runs an XML dialplan, scripts far ends of outbound calls and streams call audio like
mod_audio_fork. See docs/fssim.md.
"""

from .calls import Behavior, SimCall
from .channel import Playback, Recording
from .events import Event
from .server import FsSim

__all__ = ["FsSim", "SimCall", "Behavior", "Event", "Playback", "Recording"]
