"""A server component for the shutdown test: a slow route and a stop that records when it ran."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

EVENTS: list[tuple[str, float]] = []


async def start(ctx):  # type: ignore[no-untyped-def]
    async def slow(request: web.Request) -> web.Response:
        EVENTS.append(("request started", time.monotonic()))
        await asyncio.sleep(float(request.query.get("s", "1")))
        EVENTS.append(("request finished", time.monotonic()))
        return web.Response(text="done")

    ctx.app.router.add_get("/test/slow", slow)

    async def stop() -> None:
        EVENTS.append(("component stopped", time.monotonic()))

    return stop
