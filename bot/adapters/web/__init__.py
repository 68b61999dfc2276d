"""The browser platform: the voting page at /vote (invite links, keyboard shortcuts, same rules as chat).

`start(ctx)` mounts it on `labelbot serve`'s HTTP server; the web component (bot/web) calls it next
to the dashboard.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.server import ServerContext, Stop


async def start(ctx: ServerContext) -> Stop:
    from .platform import WebPlatform

    platform = WebPlatform()
    await platform.start(ctx)
    return platform.stop
