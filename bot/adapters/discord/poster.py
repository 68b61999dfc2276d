"""Posting items to a campaign's Discord channel (from `/label post N` and from `labelbot post`).

Each item becomes one message (embeds, attachments, persistent buttons) and opens a thread for
discussion. The post row is created before sending and the message id recorded right after; a send
that fails discards its post row and stops the run (no retry loop: a 403 or a rate limit would only
repeat), so the remaining items stay unposted for the next run.
"""

from __future__ import annotations

import asyncio
import logging

import discord

from bot.adapters.discord import components, render
from bot.adapters.discord.translate import PLATFORM
from bot.config import Settings
from bot.core.errors import InvalidInput
from bot.core.replies import PostView
from bot.core.service import LabelingService

log = logging.getLogger("labelbot.discord")

THREAD_ARCHIVE_MINUTES = 10080  # a week


def thread_name(view: PostView) -> str:
    return f"Discuss {view.external_id} ({view.campaign})"[:100]


async def _channel(client: discord.Client, channel_id: int) -> discord.abc.Messageable:
    channel = client.get_channel(channel_id)
    if channel is None:
        try:
            channel = await client.fetch_channel(channel_id)
        except discord.NotFound as exc:
            raise InvalidInput(f"Discord channel {channel_id} does not exist or the bot cannot see it.") from exc
        except discord.Forbidden as exc:
            raise InvalidInput(f"The bot has no access to Discord channel {channel_id}.") from exc
    if not isinstance(channel, discord.abc.Messageable):
        raise InvalidInput(f"Discord channel {channel_id} is not a text channel.")
    return channel


async def post_items(client: discord.Client, service: LabelingService, campaign: str, limit: int) -> int:
    """Post up to `limit` items of `campaign` to its Discord channel; returns how many were posted."""
    bound = [ch for _p, _w, ch in await asyncio.to_thread(service.channels, campaign, PLATFORM) if ch.isdigit()]
    if not bound:
        raise InvalidInput(f"Campaign {campaign!r} has no Discord channel (set --discord-channel).")
    channel_id = int(bound[0])
    channel = await _channel(client, channel_id)
    guild = getattr(channel, "guild", None)
    views = await asyncio.to_thread(service.prepare_posts, campaign, PLATFORM, str(channel_id), limit,
                                    str(guild.id) if guild else "")
    posted = 0
    for i, view in enumerate(views):
        msg = render.render_post(view)
        try:
            message = await channel.send(**msg.kwargs(), view=components.post_buttons(view))
        except discord.HTTPException as exc:
            log.warning("posting to Discord channel %s failed (%s %s); %d item(s) left for the next run",
                        channel_id, exc.status, exc.code, len(views) - i)
            for left in views[i:]:
                await asyncio.to_thread(service.discard_post, left.post_id)
            if posted == 0:
                raise
            break
        await asyncio.to_thread(service.attach_message, view.post_id, str(message.id), channel=str(channel_id))
        posted += 1
        try:
            thread = await message.create_thread(name=thread_name(view), auto_archive_duration=THREAD_ARCHIVE_MINUTES)
        except (discord.HTTPException, ValueError) as exc:
            log.warning("could not open a discussion thread for post %s: %s", view.post_id, exc)
            continue
        await asyncio.to_thread(service.attach_message, view.post_id, str(message.id), thread_id=str(thread.id))
    return posted


async def _post_rest_only(settings: Settings, service: LabelingService, campaign: str, limit: int) -> int:
    from bot.adapters.discord.client import apply_overrides

    if settings.discord_bot_token is None:
        raise InvalidInput("Discord needs DISCORD_BOT_TOKEN (see .env.example).")
    apply_overrides(settings)
    client = discord.Client(intents=discord.Intents.none())
    async with client:
        try:
            await client.login(settings.discord_bot_token.get_secret_value())
        except discord.LoginFailure as exc:
            raise InvalidInput("Discord rejected DISCORD_BOT_TOKEN (401). Copy the bot token again.") from exc
        try:
            return await post_items(client, service, campaign, limit)
        except discord.HTTPException as exc:
            raise InvalidInput(f"Discord refused the post ({exc.status}): check that the bot can send messages "
                               "and create threads in the campaign's channel.") from exc


def post_campaign(settings: Settings, service: LabelingService, campaign: str, limit: int) -> int:
    """`labelbot post --platform discord`: REST only (no gateway connection needed)."""
    return asyncio.run(_post_rest_only(settings, service, campaign, limit))
