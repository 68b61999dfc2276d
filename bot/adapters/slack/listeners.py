"""Bolt listeners: translate the payload, ack at once, then call the core off the event loop and render.

Every listener acks before any database or Web API work (Slack allows 3 s), then runs the rest as a
tracked task. The core commits before it returns, so the private confirmation a voter sees is only
sent for a vote that is already durable. Message updates after votes are coalesced per item (one
`chat.update` in flight per item, re-run if more votes arrived meanwhile).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot import metrics
from bot.adapters import commands
from bot.config import Settings
from bot.core.errors import LabelingError
from bot.core.replies import REASON_REQUEST, SORRY, PostView, VoteRecorded
from bot.core.service import LabelingService

from . import render, translate
from .poster import PLATFORM, SlackPoster
from .translate import BadPayload, Interaction, Submission

log = logging.getLogger("labelbot.slack")

DB_THREADS = 4
BACKGROUND_SLOTS = 8  # jobs doing work at once; the rest wait (costing nothing) so acks stay quick
UPDATE_INTERVAL_S = 1.0  # at most one chat.update per item per second (chat.update is Tier 3, ~50/min)


def bad_request(reason: str) -> BoltResponse:
    return BoltResponse(status=400, body={"ok": False, "error": "bad_payload", "detail": reason})


class SlackHandlers:
    """The Slack side of labelbot: listeners, background work, confirmations and message refreshes."""

    def __init__(self, service: LabelingService, settings: Settings, client: Any, *,
                 session: aiohttp.ClientSession | None = None, db_threads: int = DB_THREADS) -> None:
        self.service = service
        self.settings = settings
        self.client = client
        self.session = session
        self.executor = ThreadPoolExecutor(max_workers=db_threads, thread_name_prefix="slack-db")
        self.poster = SlackPoster(client, service, run_db=self.db)
        self.tasks: set[asyncio.Task[Any]] = set()
        self._refreshing: set[int] = set()
        self._dirty: set[int] = set()
        self._slots = asyncio.Semaphore(BACKGROUND_SLOTS)

    # ------------------------------------------------------------------ plumbing

    def register(self, app: AsyncApp) -> None:
        app.action(translate.ACTION_RE)(self.on_action)
        app.view(translate.VIEW_RE)(self.on_view)
        app.command("/label")(self.on_command)
        app.event("message")(self.on_message)

    async def db(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a blocking core call on the adapter's database threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def drain(self, timeout: float = 10.0) -> None:
        """Let in-flight work finish (used at shutdown and by tests)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.tasks and asyncio.get_running_loop().time() < deadline:
            await asyncio.wait(set(self.tasks), timeout=max(0.0, deadline - asyncio.get_running_loop().time()))

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=False)

    # ------------------------------------------------------------------ listeners (ack path: no I/O)

    async def on_action(self, ack: Any, body: dict[str, Any]) -> BoltResponse:
        metrics.interaction("slack", "action")
        try:
            inter = translate.interaction_from(body)
        except BadPayload as exc:
            return bad_request(str(exc))
        resp = await ack()
        # modals must open while the 3-second trigger_id is valid: they skip the queue
        gated = inter.action not in ("fix", "rank", "score")
        self.spawn(self._guard(self._action(inter), inter.channel, inter.actor.user_id, inter.response_url,
                               gated=gated))
        return resp

    async def on_view(self, ack: Any, body: dict[str, Any]) -> BoltResponse:
        metrics.interaction("slack", "view_submission")
        try:
            sub = translate.submission_from(body)
            if sub.kind == "rank":
                parsed: Any = translate.ranking_from(sub)
            elif sub.kind == "score":
                parsed = translate.scores_from(sub)
            else:
                parsed = translate.corrections_from(sub)
        except BadPayload as exc:
            return bad_request(str(exc))
        if isinstance(parsed, dict):
            return await ack(response_action="errors", errors=parsed)
        resp = await ack()
        self.spawn(self._guard(self._submission(sub, parsed), sub.channel, sub.actor.user_id, None))
        return resp

    async def on_command(self, ack: Any, body: dict[str, Any]) -> BoltResponse:
        metrics.interaction("slack", "command")
        try:
            cmd = translate.command_from(body)
        except BadPayload as exc:
            return bad_request(str(exc))
        resp = await ack()
        self.spawn(self._guard(self._command(cmd), cmd.channel, cmd.actor.user_id, cmd.response_url))
        return resp

    async def on_message(self, ack: Any, body: dict[str, Any]) -> BoltResponse:
        metrics.interaction("slack", "event")
        resp = await ack()
        try:
            event = translate.comment_from(body)
        except BadPayload:
            return resp
        if event is not None:
            self.spawn(self._comment(event))
        return resp

    # ------------------------------------------------------------------ background work

    async def _guard(self, work: Awaitable[Any], channel: str | None, user: str, response_url: str | None, *,
                     gated: bool = True) -> None:
        """Turn errors into a polite private message; never let a background task die silently.

        Gated jobs take one of BACKGROUND_SLOTS first: a burst of clicks queues here instead of flooding
        the event loop with callbacks that would delay the acks of the next requests.
        """
        try:
            if gated:
                async with self._slots:
                    await work
            else:
                await work
        except LabelingError as exc:
            await self.tell(channel, user, exc.message, ok=False, response_url=response_url)
        except Exception:
            log.exception("slack handler failed")
            await self.tell(channel, user, SORRY, ok=False, response_url=response_url)

    async def _action(self, i: Interaction) -> None:
        event = translate.core_event(i)
        if i.action == "vote":
            rec = await self.db(self.service.cast_vote, event)
            if rec.replay:
                return  # the first delivery of this click was confirmed already
            text, blocks = render.vote_confirmation(rec)  # sent only now: the vote is committed
            await self.send_private(i.channel, i.actor.user_id, text, blocks, response_url=i.response_url)
            self.refresh(rec.post.item_id, rec.post)
            if rec.ask_reason:
                await self.ask_for_reasons(rec.post.item_id)
        elif i.action == "skip":
            notice = await self.db(self.service.skip, event)
            await self.tell(i.channel, i.actor.user_id, notice.text, ok=notice.ok, response_url=i.response_url)
        elif i.action == "flag":
            notice = await self.db(self.service.flag, event)
            await self.tell(i.channel, i.actor.user_id, notice.text, ok=notice.ok, response_url=i.response_url)
        elif i.action == "guide":
            name, text, version = await self.db(self.service.guidelines, post_id=i.post_id)
            for msg_text, blocks in render.guidelines_messages(name, text, version):
                await self.send_private(i.channel, i.actor.user_id, msg_text, blocks, response_url=i.response_url)
        else:  # fix | rank | score: open a modal while the trigger is fresh (3 s)
            view = await self.db(self.service.post_view, i.post_id)
            if i.action == "fix":
                modal = render.correction_modal(view, i.channel, i.message_ts)
            elif i.action == "rank":
                modal = render.rank_modal(view, i.channel, i.message_ts)
            elif view.criteria:
                modal = render.score_modal(view, i.channel, i.message_ts)
            else:
                await self.tell(i.channel, i.actor.user_id, "This campaign has no criteria to score.", ok=False,
                                response_url=i.response_url)
                return
            await self.client.views_open(trigger_id=i.trigger_id, view=modal)

    async def _submission(self, sub: Submission, parsed: Any) -> None:
        if sub.kind == "rank":
            rec = await self.db(self.service.submit_ranking, parsed)
            if rec.replay:
                return
            text, blocks = render.vote_confirmation(rec)
            await self.send_private(sub.channel, sub.actor.user_id, text, blocks)
            self.refresh(rec.post.item_id, rec.post)
            if rec.ask_reason:
                await self.ask_for_reasons(rec.post.item_id)
        elif sub.kind == "score":
            notice = await self.db(self.service.submit_scores, parsed)
            await self.tell(sub.channel, sub.actor.user_id, notice.text, ok=notice.ok)
        else:
            texts = []
            for correction in parsed:
                notice = await self.db(self.service.submit_correction, correction)
                texts.append(notice.text)
            await self.tell(sub.channel, sub.actor.user_id, " ".join(texts))

    async def _command(self, cmd: translate.Command) -> None:
        reply = await self.db(commands.handle, self.service, self.settings, cmd.actor, cmd.text, channel=cmd.channel)
        for text, blocks in render.command_messages(reply.text if reply.ok else f":warning: {reply.text}"):
            await self.send_private(cmd.channel, cmd.actor.user_id, text, blocks, response_url=cmd.response_url,
                                    in_channel=not reply.ephemeral, prefer_url=True)
        if reply.chart_png:
            await self.send_chart(cmd.actor.user_id, reply.chart_png, reply.chart_name or "chart.png")
        if reply.task is not None:
            rendered = render.item_message(reply.task)
            await self.send_private(cmd.channel, cmd.actor.user_id, rendered.text, rendered.blocks,
                                    response_url=cmd.response_url, prefer_url=True)
            for text, blocks in rendered.thread:  # no thread under an ephemeral message: follow-ups instead
                await self.send_private(cmd.channel, cmd.actor.user_id, text, blocks, response_url=cmd.response_url,
                                        prefer_url=True)
        if reply.post_request is not None:
            campaign, n = reply.post_request
            count = await self.poster.post_items(campaign, n)
            await self.tell(cmd.channel, cmd.actor.user_id, f"Posted {count} item(s) of *{campaign}*.",
                            response_url=cmd.response_url, prefer_url=True)

    async def _comment(self, event: Any) -> None:
        try:
            await self.db(self.service.add_comment, event)
        except LabelingError as exc:
            log.info("thread reply not kept: %s", exc.message)
        except Exception:
            log.exception("saving a thread reply failed")

    # ------------------------------------------------------------------ outbound

    def refresh(self, item_id: int, fresh: PostView | None = None) -> None:
        """Re-render every Slack message of an item; coalesced so a burst of votes gives few updates.

        One refresh per item runs at a time and holds its slot for UPDATE_INTERVAL_S after updating;
        votes arriving meanwhile mark the item dirty and get one more refresh from fresh reads.
        `fresh` is the view the vote just returned (saves re-reading the post that was voted on).
        """
        if item_id in self._refreshing:
            self._dirty.add(item_id)
            return
        self._refreshing.add(item_id)
        self.spawn(self._refresh(item_id, fresh))

    async def _refresh(self, item_id: int, fresh: PostView | None) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                self._dirty.discard(item_id)
                started = loop.time()
                async with self._slots:
                    await self._update_messages(item_id, fresh)
                fresh = None
                wait = started + UPDATE_INTERVAL_S - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if item_id not in self._dirty:
                    break
        except Exception:
            log.exception("refreshing the messages of item %s failed", item_id)
        finally:
            self._refreshing.discard(item_id)

    async def send_chart(self, user: str, png: bytes, name: str) -> None:
        """Charts go to the person's direct messages: Slack has no ephemeral files."""
        try:
            dm = await self.client.conversations_open(users=user)
            await self.client.files_upload_v2(channel=dm["channel"]["id"], content=png, filename=name,
                                              title=name.rsplit(".", 1)[0])
        except SlackApiError as exc:
            log.warning("sending chart %s failed: %s", name, exc.response.get("error"))

    def voted_elsewhere(self, rec: VoteRecorded) -> None:
        """A vote on the other platform: same refresh and split-vote reason request as for our own votes."""
        self.refresh(rec.post.item_id)
        if rec.ask_reason:
            self.spawn(self.ask_for_reasons(rec.post.item_id))

    async def ask_for_reasons(self, item_id: int) -> None:
        """Votes split: ask in the item's threads for one-line reasons (kept as comments for admins)."""
        for post in await self.db(self.service.posts_of_item, item_id):
            if post.platform != PLATFORM or not post.message_id or not post.channel or post.channel == "direct":
                continue
            try:
                await self.client.chat_postMessage(channel=post.channel, thread_ts=post.message_id,
                                                   text=REASON_REQUEST)
            except SlackApiError as exc:
                log.warning("asking for reasons on post %s failed: %s", post.id, exc.response.get("error"))

    async def _update_messages(self, item_id: int, fresh: PostView | None) -> None:
        posts = await self.db(self.service.posts_of_item, item_id)
        for post in posts:
            if post.platform != PLATFORM or not post.message_id or not post.channel:
                continue
            if fresh is not None and fresh.post_id == post.id:
                view = fresh
            else:
                view = await self.db(self.service.post_view, post.id)
            rendered = render.item_message(view)
            try:
                await self.client.chat_update(channel=post.channel, ts=post.message_id, text=rendered.text,
                                              blocks=rendered.blocks)
            except SlackApiError as exc:
                log.warning("updating the message of post %s failed: %s", post.id, exc.response.get("error"))

    async def tell(self, channel: str | None, user: str, text: str, *, ok: bool = True,
                   response_url: str | None = None, prefer_url: bool = False) -> None:
        await self.send_private(channel, user, text, render.notice_blocks(text, ok), response_url=response_url,
                                prefer_url=prefer_url)

    async def send_private(self, channel: str | None, user: str, text: str, blocks: list[dict[str, Any]], *,
                           response_url: str | None = None, in_channel: bool = False,
                           prefer_url: bool = False) -> None:
        """A private (ephemeral) message, or a channel message when `in_channel`.

        Tries the response_url first when preferred (slash commands work even where the bot is not a
        member), else chat.postEphemeral / chat.postMessage, then the other one, then a direct message.
        """
        kind = "in_channel" if in_channel else "ephemeral"
        if response_url and prefer_url and await self._respond(response_url, text, blocks, kind):
            return
        if channel:
            try:
                if in_channel:
                    await self.client.chat_postMessage(channel=channel, text=text, blocks=blocks)
                else:
                    await self.client.chat_postEphemeral(channel=channel, user=user, text=text, blocks=blocks)
                return
            except SlackApiError as exc:
                log.info("sending to %s failed (%s); trying another way", channel, exc.response.get("error"))
            except (TimeoutError, aiohttp.ClientError) as exc:
                log.warning("sending to %s failed: %s", channel, type(exc).__name__)
        if response_url and not prefer_url and await self._respond(response_url, text, blocks, kind):
            return
        try:
            await self.client.chat_postMessage(channel=user, text=text, blocks=blocks)
        except (TimeoutError, SlackApiError, aiohttp.ClientError) as exc:
            log.warning("could not reach user %s: %s", user, type(exc).__name__)

    async def _respond(self, url: str, text: str, blocks: list[dict[str, Any]], response_type: str) -> bool:
        try:
            hook = AsyncWebhookClient(url, session=self.session, timeout=15)
            res = await hook.send(text=text, blocks=blocks, response_type=response_type, replace_original=False)
            return res.status_code == 200
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            log.warning("response_url failed: %s", type(exc).__name__)
            return False
