"""The handler types: mypy (``make typecheck``) refuses a handler of the wrong event type.

The ``type: ignore`` comments below are the test: mypy runs with ``warn_unused_ignores``, so
if it stopped flagging these calls, the ignores would be unused and ``make typecheck`` would
fail.
"""

from __future__ import annotations

import playback_hooks as ph


def _wrong_event_types_are_type_errors() -> None:
    def on_finished(event: ph.MessagePlaybackFinished) -> None: ...

    def on_started(event: ph.MessagePlaybackStarted) -> None: ...

    ph.on_message_played(on_finished)  # type: ignore[type-var]
    ph.on_message_played(message_id="x")(on_finished)  # type: ignore[type-var]
    ph.on_message_finished(on_started)  # type: ignore[type-var]
    ph.on_message_finished(message_id="x")(on_started)  # type: ignore[type-var]


def _right_event_types_keep_their_signature() -> None:
    @ph.on_message_played
    def started(event: ph.MessagePlaybackStarted) -> int:
        return 1

    @ph.on_message_finished(message_id="x")
    async def finished(event: ph.MessagePlaybackFinished) -> None: ...

    # the decorators return the handler unchanged, with its own type
    value: int = started(None)  # type: ignore[arg-type]
    del value, finished


def test_the_checks_above_are_not_run() -> None:
    """The functions above exist for mypy; registering them here would leak handlers."""
    assert callable(_wrong_event_types_are_type_errors)
