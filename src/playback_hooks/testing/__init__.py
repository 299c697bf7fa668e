"""Offline building blocks: a real-time sink, a scripted LLM, realtime model and TTS.

They produce real PCM and play it on a real clock, so a real ``AgentSession`` runs with no
API keys and no LiveKit server. The package's own tests and demo use them; use them to
test your own handlers (the testing recipe in the documentation is a complete example):

```python
sink = SimulatedSink()
session = AgentSession(llm=ScriptedLLM([["Hello there."]]), tts=SineTTS())
session.output.audio = sink
tracker = ph.attach(session)  # before start(), so the greeting of on_enter is reported too
with EventCollector(session) as events:
    await session.start(MyAgent(), record=False)
    session.generate_reply()
    await events.wait_finished(1, timeout=10)
```
"""

from __future__ import annotations

from .audio import pcm_tone
from .avatar import (
    AvatarReport,
    AvatarSegment,
    AvatarWorker,
    StillVideoGenerator,
    default_avatar_options,
)
from .collector import EventCollector
from .models import (
    RealtimeItem,
    ScriptedLLM,
    ScriptedRealtimeModel,
    ScriptedRealtimeSession,
    SineTTS,
    ToolCall,
)
from .room import LinkedRoom, RoomPair, Transmission
from .sink import SimulatedSink, SinkSegment

__all__ = [
    "AvatarReport",
    "AvatarSegment",
    "AvatarWorker",
    "EventCollector",
    "LinkedRoom",
    "RealtimeItem",
    "RoomPair",
    "ScriptedLLM",
    "ScriptedRealtimeModel",
    "ScriptedRealtimeSession",
    "SimulatedSink",
    "SinkSegment",
    "SineTTS",
    "StillVideoGenerator",
    "ToolCall",
    "Transmission",
    "default_avatar_options",
    "pcm_tone",
]
