"""The browser voting page as a `ChatPlatform` (bot/adapters/contract.py).

The browser differs from a chat in one way that shapes this class: people pull items (each page load
deals the next one from the core) and every page is rendered from the database when it is loaded.
So there is nothing to post to a channel, nothing to re-render after a vote elsewhere, and no one to
reach while their page is closed; the methods say so instead of pretending.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.adapters.contract import Attachment, ChannelRef, DeliveryFailed
from storage.domain import Platform

if TYPE_CHECKING:
    from bot.server import ServerContext


class WebPlatform:
    name = Platform.WEB

    def __init__(self) -> None:
        self._started = False

    async def start(self, ctx: ServerContext) -> None:
        """Mount the /vote routes on the HTTP server (before it starts listening)."""
        from .pages import VotePages

        VotePages(ctx).register(ctx.app)
        ctx.extras["web_platform"] = self
        self._started = True

    async def stop(self) -> None:
        """In-flight page requests finish with the HTTP server's own graceful shutdown."""
        self._started = False

    def healthy(self) -> bool:
        return self._started

    async def post_items(self, campaign: str, channel: ChannelRef, limit: int) -> int:
        """Nothing to post: a voter's next item is dealt when they open the page."""
        return 0

    async def update_item(self, item_id: int) -> None:
        """Nothing to update: an item's page shows its current tallies (or reveal) on every load."""

    async def send_notice(self, channel: ChannelRef, text: str, attachment: Attachment | None = None) -> str | None:
        raise DeliveryFailed("The browser voting page has no channels to post notices in.")

    async def send_private(self, user_id: str, text: str, *, channel: ChannelRef | None = None) -> None:
        raise DeliveryFailed("Browser voters can only be told things on the page they have open.")

    async def ask_for_reasons(self, item_id: int) -> None:
        """The page asks for a reason right after the vote that split the item (the voter's confirmation
        carries the request and a reason box, saved as a comment); there is no thread to post in."""
