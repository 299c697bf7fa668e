"""A local aiohttp server on 127.0.0.1 with a free port: the base of the scripted servers."""

from __future__ import annotations

from aiohttp import web


class LocalServer:
    """Serves the routes ``routes()`` adds on 127.0.0.1; ``base_url`` ends in ``/v1``."""

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/v1"

    def routes(self, router: web.UrlDispatcher) -> None:
        """Add the server's routes."""
        raise NotImplementedError

    async def start(self) -> None:
        app = web.Application()
        self.routes(app.router)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
