"""Posting items to Slack channels: paced to ~1 message/s per channel, 429s retried after Retry-After.

`chat.postMessage` allows about one message per second per channel; the pacer reserves a slot per
channel before each send (thread replies count too). A 429 is retried by slack_sdk's
`AsyncRateLimitErrorRetryHandler` after the `Retry-After` delay, so a post waits instead of being
lost; a send that fails for good discards its prepared post row so the item is posted again later.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import time
from pathlib import Path
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import Settings
from bot.core.errors import InvalidInput
from bot.core.replies import PostView
from bot.core.service import LabelingService
from storage.domain import Platform

from . import render

log = logging.getLogger("labelbot.slack.poster")

PLATFORM = Platform.SLACK
CHANNEL_INTERVAL_S = 1.0  # Slack: "one message per second per channel"
RATE_LIMIT_RETRIES = 8


def api_base_url(settings: Settings) -> str:
    """The Web API base URL (`SLACK_API_URL` overrides Slack's), with the trailing slash slack_sdk expects."""
    url = settings.slack_api_url or AsyncWebClient.BASE_URL
    return url if url.endswith("/") else url + "/"


def make_client(settings: Settings, session: aiohttp.ClientSession | None = None) -> AsyncWebClient:
    """The Web API client every Slack call goes through: SLACK_API_URL honoured, 429s retried."""
    if settings.slack_bot_token is None:
        raise InvalidInput("Slack needs SLACK_BOT_TOKEN (see .env.example).")
    return AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=api_base_url(settings),
        session=session,
        timeout=30,
        logger=logging.getLogger("labelbot.slack.web"),
        retry_handlers=[AsyncConnectionErrorRetryHandler(),
                        AsyncRateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES)],
    )


class ChannelPacer:
    """Hands out send slots at most one per `interval` seconds per channel, in request order."""

    def __init__(self, interval: float | None = None) -> None:
        self.interval = interval
        self._next: dict[str, float] = {}

    async def wait(self, channel: str) -> None:
        interval = CHANNEL_INTERVAL_S if self.interval is None else self.interval
        now = time.monotonic()
        slot = max(now, self._next.get(channel, 0.0))
        self._next[channel] = slot + interval
        if slot > now:
            await asyncio.sleep(slot - now)


class SlackPoster:
    """Posts prepared items (message, overflow text and media in the thread) and records where they landed."""

    def __init__(self, client: AsyncWebClient, service: LabelingService, pacer: ChannelPacer | None = None,
                 run_db: Any = None) -> None:
        self.client = client
        self.service = service
        self.pacer = pacer or ChannelPacer()
        self._run_db = run_db

    async def db(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self._run_db is not None:
            return await self._run_db(fn, *args, **kwargs)
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def post_items(self, campaign: str, limit: int) -> int:
        """Post up to `limit` items of `campaign` to its Slack channel; returns how many arrived."""
        bound = await self.db(self.service.channels, campaign, PLATFORM)
        if not bound:
            raise InvalidInput(f"Campaign {campaign!r} has no Slack channel; set one with --slack-channel.")
        channel = bound[0][2]
        views = await self.db(self.service.prepare_posts, campaign, PLATFORM, channel, limit)
        posted = 0
        for view in views:
            if await self.post_one(view, channel):
                posted += 1
        return posted

    async def post_one(self, view: PostView, channel: str) -> bool:
        rendered = render.item_message(view)
        await self.pacer.wait(channel)
        try:
            resp = await self.client.chat_postMessage(channel=channel, text=rendered.text, blocks=rendered.blocks,
                                                      unfurl_links=False, unfurl_media=False)
        except (TimeoutError, SlackApiError, aiohttp.ClientError) as exc:
            log.error("posting item %s to %s failed: %s", view.external_id, channel, _error(exc))
            await self.db(self.service.discard_post, view.post_id)
            return False
        ts = resp["ts"]
        where = resp.get("channel") or channel
        await self.db(self.service.attach_message, view.post_id, ts, channel=where, thread_id=ts)
        for text, blocks in rendered.thread:
            await self.pacer.wait(where)
            try:
                await self.client.chat_postMessage(channel=where, thread_ts=ts, text=text, blocks=blocks,
                                                   unfurl_links=False, unfurl_media=False)
            except (TimeoutError, SlackApiError, aiohttp.ClientError) as exc:
                log.error("posting the full text of item %s in its thread failed: %s", view.external_id, _error(exc))
        for media in rendered.media:
            await self.upload(media, where, ts)
        return True

    async def upload(self, media: render.Media, channel: str, thread_ts: str) -> None:
        """Upload a local image/audio file into the item's thread (files.uploadV2), or say it is missing."""
        path = Path(media.path)
        title = f"Response {media.letter} {media.kind}"
        await self.pacer.wait(channel)
        try:
            if not path.is_file():
                await self.client.chat_postMessage(channel=channel, thread_ts=thread_ts,
                                                   text=f"{title}: the file could not be found on the server.")
                return
            suffix = path.suffix or (mimetypes.guess_extension(mimetypes.guess_type(path.name)[0] or "") or "")
            await self.client.files_upload_v2(channel=channel, thread_ts=thread_ts, file=str(path),
                                              filename=f"response-{media.letter}{suffix}", title=title)
        except (TimeoutError, SlackApiError, aiohttp.ClientError, OSError) as exc:
            log.error("uploading %s failed: %s", title, _error(exc))


def _error(exc: BaseException) -> str:
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error", "slack error"))
    return type(exc).__name__


def post_campaign(settings: Settings, service: LabelingService, campaign: str, limit: int) -> int:
    """`labelbot post --platform slack`: post up to `limit` items; returns how many arrived."""

    async def main() -> int:
        async with aiohttp.ClientSession() as session:
            poster = SlackPoster(make_client(settings, session), service)
            return await poster.post_items(campaign, limit)

    return asyncio.run(main())
