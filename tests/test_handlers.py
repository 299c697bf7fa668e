"""Every kind of handler the decorators accept can be registered, called and disconnected."""

from __future__ import annotations

import asyncio
import functools
import gc
import weakref
from collections.abc import Callable
from typing import Any

import pytest

import playback_hooks as ph

from .agents import ScriptAgent, boundary
from .conftest import StartSession


class Service:
    """An app object whose methods are handlers."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def on_started(self, event: ph.MessagePlaybackStarted) -> None:
        self.log.append(f"method {event.message_id}")

    async def on_started_async(self, event: ph.MessagePlaybackStarted) -> None:
        self.log.append(f"async method {event.message_id}")


class CallableHandler:
    """A callable object as a handler."""

    def __init__(self, log: list[str], name: str) -> None:
        self.log = log
        self.name = name

    def __call__(self, event: ph.MessagePlaybackStarted) -> None:
        self.log.append(f"{self.name} {event.message_id}")


class AsyncCallableHandler(CallableHandler):
    """A callable object whose ``__call__`` is async."""

    async def __call__(self, event: ph.MessagePlaybackStarted) -> None:  # type: ignore[override]
        self.log.append(f"{self.name} {event.message_id}")


def _tagged(log: list[str], tag: str, event: ph.MessagePlaybackStarted) -> None:
    log.append(f"{tag} {event.message_id}")


class TestHandlerKinds:
    """Functions, bound methods, partials and callable objects, sync or async, all work."""

    async def test_each_kind_is_called_then_disconnected_and_freed(
        self, start_session: StartSession
    ) -> None:
        off = await start_session(
            ScriptAgent([boundary("one"), "First reply."], [boundary("two"), "Second reply."])
        )
        log = Log()

        def function(event: ph.MessagePlaybackStarted) -> None:
            log.append(f"function {event.message_id}")

        async def coroutine_function(event: ph.MessagePlaybackStarted) -> None:
            log.append(f"async function {event.message_id}")

        objects: list[Any] = [
            Service(log),
            CallableHandler(log, "object"),
            AsyncCallableHandler(log, "async object"),
        ]

        def handlers() -> list[Callable[[ph.MessagePlaybackStarted], object]]:
            # evaluated anew each call: the methods are new bound-method objects each time
            service, obj, async_obj = objects
            return [
                function,
                coroutine_function,
                service.on_started,
                service.on_started_async,
                functools.partial(_tagged, log, "partial"),
                obj,
                async_obj,
            ]

        registered = handlers()
        for handler in registered:
            ph.on_message_played(session=off.session)(handler)

        off.session.generate_reply()
        await off.tracker.wait_for("one", "finished", timeout=10)
        await log.wait_len(7)  # async handlers run as tasks, on a later loop iteration
        assert sorted(log) == sorted(
            [
                "function one",
                "async function one",
                "method one",
                "async method one",
                "partial one",
                "object one",
                "async object one",
            ]
        )

        # disconnect with what the app has at hand: a *new* bound-method object of the same
        # method of the same object; the same partial and objects
        for new, old in zip(handlers(), registered, strict=True):
            ph.disconnect(old if isinstance(old, functools.partial) else new)
        log.clear()
        off.session.generate_reply()
        await off.tracker.wait_for("two", "finished", timeout=10)
        await off.events.wait_finished(2)
        assert log == []

        # nothing of the package holds the handlers' objects any more
        refs: list[weakref.ref[Any]] = [weakref.ref(o) for o in objects]
        objects.clear()
        del registered, handler, new, old
        gc.collect()
        assert [r() for r in refs] == [None, None, None]

    async def test_the_same_handler_with_two_filters_is_disconnected_whole(
        self, start_session: StartSession
    ) -> None:
        off = await start_session(ScriptAgent([boundary("a"), "One."]))
        log: list[str] = []
        service = Service(log)
        ph.on_message_played(session=off.session, message_id="a")(service.on_started)
        ph.on_message_played(session=off.session)(service.on_started)
        ph.disconnect(service.on_started)
        off.session.generate_reply()
        await off.tracker.wait_for("a", "finished", timeout=10)
        await off.events.wait_finished(1)
        assert log == []
        with pytest.raises(ValueError, match=r"is not connected"):
            ph.disconnect(service.on_started)


class TestRegistrationErrors:
    """Mistakes are refused where they are made, naming the handler."""

    def test_disconnect_of_a_handler_never_connected(self) -> None:
        def never(event: ph.MessagePlaybackStarted) -> None: ...

        with pytest.raises(ValueError, match=r"handler .*never is not connected"):
            ph.disconnect(never)

    @pytest.mark.parametrize(
        "handler",
        [
            lambda: None,
            lambda event, extra: None,
            Service.on_started,  # the unbound function: needs self and the event
        ],
        ids=["no argument", "two required", "unbound method"],
    )
    def test_a_handler_that_cannot_take_the_event(self, handler: Callable[..., Any]) -> None:
        for decorator in (ph.on_message_played, ph.on_message_finished):
            with pytest.raises(TypeError, match=r"must accept the event as its only positional"):
                decorator(handler)
            with pytest.raises(ValueError, match=r"is not connected"):
                ph.disconnect(handler)  # nothing was registered

    def test_handlers_with_defaults_and_kwargs_are_accepted(self) -> None:
        def flexible(event: Any, extra: int = 0, **kwargs: Any) -> None: ...

        ph.on_message_played(flexible)
        ph.disconnect(flexible)


class Log(list[str]):
    """A list that can be awaited until it holds ``n`` entries."""

    def __init__(self) -> None:
        super().__init__()
        self._changed = asyncio.Event()

    def append(self, item: str) -> None:
        super().append(item)
        self._changed.set()

    async def wait_len(self, n: int, timeout: float = 5.0) -> None:
        await asyncio.wait_for(self._wait_len(n), timeout)

    async def _wait_len(self, n: int) -> None:
        while len(self) < n:
            self._changed.clear()
            await self._changed.wait()
