"""The HTTP component: /healthz, /metrics, the admin dashboard and the browser voting page (`bot.web:start`
in bot/server.py).

The aiohttp wiring is imported only when the component starts, so `bot.web.auth` (used by the
`/label dashboard` command to mint sign-in links) stays cheap to import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.server import ServerContext, Stop


async def start(ctx: ServerContext) -> Stop:
    from bot.adapters.web import start as voting_start
    from bot.web.app import start as dashboard_start

    stop_dashboard = await dashboard_start(ctx)
    stop_voting = await voting_start(ctx)

    async def stop() -> None:
        await stop_voting()
        await stop_dashboard()

    return stop
