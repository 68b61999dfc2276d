"""The HTTP component: /healthz, /metrics and the admin dashboard (`bot.web:start` in bot/server.py).

The aiohttp wiring is imported only when the component starts, so `bot.web.auth` (used by the
`/label dashboard` command to mint sign-in links) stays cheap to import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.server import ServerContext, Stop


async def start(ctx: ServerContext) -> Stop:
    from bot.web.app import start as _start

    return await _start(ctx)
