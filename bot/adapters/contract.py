"""The platform contract: what every place people label in (Slack, Discord, the browser page) implements.

In the spirit of opsdroid's `Connector` and errbot's backends: the core decides *what* happens, a
platform only knows *how* to show it. Nothing outside `bot/adapters/<platform>/` branches on a
platform's name; code that must reach a chat (the outbox drainer, `labelbot serve`) holds a
`ChatPlatform` and calls these methods.

Every method that sends returns only once the platform accepted the message (or raises), so a
caller that records "sent" after it returns never records a message that was lost. Methods are
idempotent where the platform allows it (updating an item's messages twice shows the same thing).
Errors the platform reports as temporary (rate limits, 5xx, timeouts) raise `RetryLater`, with the
platform's own `Retry-After` when it gave one; anything else raises `DeliveryFailed`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from storage.domain import Platform

if TYPE_CHECKING:
    from bot.server import ServerContext


@dataclass(frozen=True)
class ChannelRef:
    """A channel on one platform (`workspace` is Slack's team or Discord's guild, "" when unknown)."""

    platform: Platform
    channel: str
    workspace: str = ""


@dataclass(frozen=True)
class Attachment:
    """A file sent with a notice (a chart PNG, a long text)."""

    name: str
    data: bytes
    mime: str = "application/octet-stream"


class RetryLater(Exception):
    """The platform refused for now (rate limit, outage); try again after `retry_after` seconds if given."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class DeliveryFailed(Exception):
    """The platform refused for good (unknown channel, missing permission); retrying will not help."""


@runtime_checkable
class ChatPlatform(Protocol):
    """One platform inside a running `labelbot serve` process."""

    name: Platform

    async def start(self, ctx: ServerContext) -> None:
        """Connect (log in, mount routes, register commands and persistent components)."""

    async def stop(self) -> None:
        """Finish or hand back in-flight work within a bound, then disconnect."""

    def healthy(self) -> bool:
        """True while connected and able to deliver."""

    async def post_items(self, campaign: str, channel: ChannelRef, limit: int) -> int:
        """Post up to `limit` of the campaign's next items to `channel`; returns how many were posted."""

    async def update_item(self, item_id: int) -> None:
        """Re-render every message of this item on this platform (tallies, reveal, result)."""

    async def send_notice(self, channel: ChannelRef, text: str, attachment: Attachment | None = None) -> str | None:
        """Post a plain notice (fine-tune results, duel results) to a channel; returns its message id."""

    async def send_private(self, user_id: str, text: str, *, channel: ChannelRef | None = None) -> None:
        """Tell one person something privately (ephemeral where the platform has it, else a direct message)."""

    async def ask_for_reasons(self, item_id: int) -> None:
        """The votes on this item split: ask in its threads for one-line reasons."""
