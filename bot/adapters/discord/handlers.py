"""Interaction flows: acknowledge first, then translate -> core (off the event loop) -> render.

Timing rules (Discord invalidates an interaction that gets no first response within 3 s):
- clicks that write (votes, skip, guidelines, modal submissions) are deferred before any database
  work; the private confirmation is a follow-up sent only after the core committed;
- buttons that open a form answer with the modal itself, built from the message's own components
  or from a bounded read (at most FORM_READ_TIMEOUT seconds);
- the commit never depends on the acknowledgement: if Discord says the interaction was already
  acknowledged (40060, a replayed gateway event) or unknown/expired (10062), the vote is still
  applied through the core, which recognises a replay by its delivery id (the interaction id).
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import discord

from bot import metrics
from bot.adapters import commands
from bot.adapters.discord import components, render, translate
from bot.adapters.discord.batching import VoteBatcher
from bot.config import Settings
from bot.core.errors import LabelingError
from bot.core.events import (
    Actor,
    CommentAdded,
    CorrectionSubmitted,
    CriteriaScored,
    ItemFlagged,
    ItemSkipped,
    RankingSubmitted,
    VoteCast,
)
from bot.core.replies import REASON_REQUEST, SORRY, PostView, VoteRecorded
from bot.core.service import LabelingService

log = logging.getLogger("labelbot.discord")

ALREADY_ACKNOWLEDGED = 40060
UNKNOWN_INTERACTION = 10062
FORM_READ_TIMEOUT = 2.0
EDIT_INTERVAL = 1.0  # seconds between two edits of one message (later changes wait and merge)
AFTER_ACK_SLOTS = 8  # follow-ups and edits in flight at once; the rest wait (costing nothing) so acks stay quick
DRAIN_TIMEOUT = 10.0  # seconds shutdown waits for pending message edits
ITEM_POSTS_TTL = 30.0  # seconds an item's list of Discord messages is reused before re-reading it


@dataclass(frozen=True)
class Ack:
    """What happened to our first response."""

    ok: bool
    duplicate: bool = False  # Discord already had a response: a replayed delivery
    expired: bool = False


def delivery_id(interaction: discord.Interaction) -> str:
    return f"discord:{interaction.id}"


class Refresher:
    """Coalesces message edits: one edit per message in flight, at most one per `interval`, latest wins.

    A busy item gets many votes; rather than queue one edit per vote behind Discord's rate limits,
    the first change is shown at once and the changes of the next `interval` go out as one edit.
    """

    def __init__(self, interval: float = EDIT_INTERVAL, slots: asyncio.Semaphore | None = None) -> None:
        self.interval = interval
        self.slots = slots or asyncio.Semaphore(AFTER_ACK_SLOTS)
        self.drain_timeout = DRAIN_TIMEOUT
        self._pending: dict[Any, Callable[[], Awaitable[None]]] = {}
        self._running: set[Any] = set()
        self._last: dict[Any, float] = {}  # key -> when its last edit finished
        self.tasks: set[asyncio.Task[None]] = set()

    def request(self, key: Any, edit: Callable[[], Awaitable[None]]) -> None:
        self._pending[key] = edit
        if key not in self._running:
            self._running.add(key)
            self.spawn(self._drain(key))

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run message work in the background, tracked so shutdown drains it (with a bound)."""
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _drain(self, key: Any) -> None:
        try:
            while key in self._pending:
                wait = self._last.get(key, 0.0) + self.interval - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)  # changes arriving meanwhile merge into this edit
                async with self.slots:
                    edit = self._pending.pop(key)  # taken only now: changes made while waiting still merge
                    try:
                        await edit()
                    except discord.HTTPException as exc:
                        log.warning("could not refresh message %s: %s %s", key, exc.status, exc.code)
                    except Exception:
                        log.exception("could not refresh message %s", key)
                self._last[key] = time.monotonic()
        finally:
            self._running.discard(key)
            if len(self._last) > 10000:
                horizon = time.monotonic() - self.interval
                self._last = {k: v for k, v in self._last.items() if v > horizon}

    async def drain(self, timeout: float | None = None) -> None:
        """At shutdown: let pending edits (the final counts) go out, but never wait on Discord for ever."""
        deadline = time.monotonic() + (self.drain_timeout if timeout is None else timeout)
        while self.tasks:
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning("gave up on %d message edit(s) at shutdown", len(self.tasks))
                for task in list(self.tasks):
                    task.cancel()
                await asyncio.gather(*list(self.tasks), return_exceptions=True)
                return
            await asyncio.wait(list(self.tasks), timeout=left)


class Handlers:
    """Everything the Discord client does with an interaction or a thread message."""

    def __init__(self, client: discord.Client, service: LabelingService, settings: Settings) -> None:
        self.client = client
        self.service = service
        self.settings = settings
        # Work after the first response (follow-ups, message edits) takes one of AFTER_ACK_SLOTS: a burst
        # of commits then queues here instead of filling the event loop's ready queue ahead of the next
        # interactions' acknowledgements.
        self.slots = asyncio.Semaphore(AFTER_ACK_SLOTS)
        self.refresher = Refresher(slots=self.slots)
        self._latest: dict[int, PostView] = {}  # newest committed view per clicked message, until edited
        self._item_posts: dict[int, tuple[float, list[tuple[int, int, int]]]] = {}  # item -> (expiry, posts)
        self.batcher = VoteBatcher(service)

    # ------------------------------------------------------------------ acknowledgement and replies

    async def _ack(self, interaction: discord.Interaction, *, thinking: bool = False) -> Ack:
        """Defer: type 6 (no visible change) for components and modals, or an ephemeral 'thinking'."""
        if interaction.response.is_done():
            return Ack(True)
        try:
            await interaction.response.defer(ephemeral=True, thinking=thinking)
            waited = (discord.utils.utcnow() - interaction.created_at).total_seconds()
            metrics.ack_latency("discord", max(0.0, waited))
            metrics.interaction("discord", interaction.type.name)
            return Ack(True)
        except discord.HTTPException as exc:
            if exc.code == ALREADY_ACKNOWLEDGED:
                log.info("interaction %s already acknowledged (replayed delivery)", interaction.id)
                return Ack(False, duplicate=True)
            if exc.code == UNKNOWN_INTERACTION or exc.status == 404:
                log.warning("interaction %s unknown or expired before our first response", interaction.id)
                return Ack(False, expired=True)
            log.warning("could not acknowledge interaction %s: %s %s", interaction.id, exc.status, exc.code)
            return Ack(False)

    async def _say(self, interaction: discord.Interaction, text: str, ack: Ack, *, title: str | None = None,
                   ephemeral: bool = True, filename: str = "reply.md",
                   chart: tuple[bytes, str] | None = None) -> None:
        """A private follow-up; a failure here (expired token...) never undoes what was committed."""
        if ack.expired:
            return
        msg = render.text_message(text, title=title, filename=filename)
        if chart is not None:
            msg.files.append(discord.File(io.BytesIO(chart[0]), filename=chart[1]))
        try:
            async with self.slots:
                await interaction.followup.send(**msg.kwargs(), ephemeral=ephemeral)
        except discord.HTTPException as exc:
            log.warning("could not send follow-up for interaction %s: %s %s", interaction.id, exc.status, exc.code)

    def _actor(self, interaction: discord.Interaction, *, platform_admin: bool = False) -> Actor:
        user = interaction.user
        return translate.actor(user.id, getattr(user, "display_name", None) or user.name,
                               platform_admin=platform_admin)

    # ------------------------------------------------------------------ votes and rankings

    async def vote(self, interaction: discord.Interaction, post_id: int, choice: str) -> None:
        ack = await self._ack(interaction)
        event = VoteCast(self._actor(interaction), post_id, choice, delivery_id=delivery_id(interaction))
        await self._record(interaction, ack, lambda: self.batcher.cast(event))

    async def _attempt(self, interaction: discord.Interaction, ack: Ack, work: Awaitable[Any], what: str) -> Any:
        """Run core work; a refusal or failure becomes a private message and None."""
        try:
            return await work
        except LabelingError as exc:
            await self._say(interaction, exc.message, ack)
        except Exception:
            log.exception("%s failed for interaction %s", what, interaction.id)
            await self._say(interaction, SORRY, ack)
        return None

    async def _record(self, interaction: discord.Interaction, ack: Ack, call: Callable[[], Awaitable[Any]]) -> None:
        res = await self._attempt(interaction, ack, call(), "vote")
        if res is None:
            return
        if res.replay:
            return  # the first delivery already confirmed it to the person (as on Slack)
        await self._say(interaction, render.confirmation(res), ack)
        self.refresh(interaction, res.post)
        if res.ask_reason:
            await self.ask_for_reasons(res.post.item_id)

    async def ask_for_reasons(self, item_id: int) -> None:
        """Votes split: ask in the item's threads for one-line reasons (kept as comments for admins)."""
        for post in await asyncio.to_thread(self.service.posts_of_item, item_id):
            if post.platform != translate.PLATFORM or not (post.thread_id or "").isdigit():
                continue
            try:
                await self.client.get_partial_messageable(int(post.thread_id)).send(REASON_REQUEST)
            except discord.HTTPException as exc:
                log.warning("could not ask for reasons in thread %s: %s %s", post.thread_id, exc.status, exc.code)

    def refresh(self, interaction: discord.Interaction | None, view: PostView) -> None:
        """Re-render every Discord message of the item (counts, reveal), coalesced per message.

        The clicked message is rendered from the view the core returned with the commit (no extra
        read) unless results are shown, whose tallies are re-read; the item's other Discord messages
        (found through a short-lived cache of its posts) are re-read and edited with the bot token.
        """
        clicked = interaction.message.id if interaction is not None and interaction.message is not None else None
        if clicked is not None and interaction is not None:
            held = self._latest.get(clicked)
            if held is None or (view.vote_count, view.quorum) >= (held.vote_count, held.quorum):
                self._latest[clicked] = view

            async def edit_clicked() -> None:
                fresh = self._latest.pop(clicked, view)
                if fresh.revealed:
                    fresh = await asyncio.to_thread(self.service.post_view, fresh.post_id)
                await interaction.edit_original_response(embeds=render.render_post(fresh, with_files=False).embeds)

            self.refresher.request(("message", clicked), edit_clicked)
        self.refresh_item(view.item_id, skip_message=clicked)

    def voted_elsewhere(self, res: VoteRecorded) -> None:
        """A vote on the other platform: same refresh and split-vote reason request as for our own votes."""
        self.refresh_item(res.post.item_id)
        if res.ask_reason:
            self.refresher.spawn(self.ask_for_reasons(res.post.item_id))

    def refresh_item(self, item_id: int, *, skip_message: int | None = None) -> None:
        """Re-render the item's Discord messages from fresh reads (also after a vote made on Slack)."""
        cached = self._item_posts.get(item_id)
        if cached is not None and cached[0] > time.monotonic():
            self._edit_others(cached[1], skip_message)
        else:
            self.refresher.request(("item", item_id), lambda: self._refresh_item(item_id, skip_message))

    async def _refresh_item(self, item_id: int, skip_message: int | None) -> None:
        posts = await asyncio.to_thread(self.service.posts_of_item, item_id)
        where = [(p.id, int(p.channel), int(p.message_id)) for p in posts if p.platform == translate.PLATFORM
                 and p.message_id and p.message_id.isdigit() and p.channel.isdigit()]
        if len(self._item_posts) > 10000:
            self._item_posts.clear()
        self._item_posts[item_id] = (time.monotonic() + ITEM_POSTS_TTL, where)
        self._edit_others(where, skip_message)

    def _edit_others(self, where: list[tuple[int, int, int]], skip_message: int | None) -> None:
        for post_id, channel, message in where:
            if message == skip_message:
                continue

            async def edit(post_id: int = post_id, channel: int = channel, message: int = message) -> None:
                fresh = await asyncio.to_thread(self.service.post_view, post_id)
                partial = self.client.get_partial_messageable(channel).get_partial_message(message)
                await partial.edit(embeds=render.render_post(fresh, with_files=False).embeds)

            self.refresher.request(("message", message), edit)

    # ------------------------------------------------------------------ other buttons

    async def skip(self, interaction: discord.Interaction, post_id: int) -> None:
        ack = await self._ack(interaction)
        await self._notice(interaction, ack, lambda: self.service.skip(ItemSkipped(self._actor(interaction), post_id,
                                                                                   delivery_id(interaction))))

    async def _notice(self, interaction: discord.Interaction, ack: Ack, call: Callable[[], Any]) -> None:
        notice = await self._attempt(interaction, ack, asyncio.to_thread(call), "action")
        if notice is not None and not ack.duplicate:
            await self._say(interaction, notice.text, ack)

    async def guidelines(self, interaction: discord.Interaction, post_id: int) -> None:
        ack = await self._ack(interaction)
        found = await self._attempt(interaction, ack, asyncio.to_thread(self.service.guidelines, post_id=post_id),
                                    "guidelines")
        if found is not None and not ack.duplicate:
            name, text, version = found
            await self._say(interaction, text, ack, title=f"Guidelines for {name} (version {version})",
                            filename="guidelines.md")

    async def _send_modal(self, interaction: discord.Interaction, modal: discord.ui.Modal) -> None:
        try:
            await interaction.response.send_modal(modal)
        except discord.HTTPException as exc:
            log.warning("could not open a form for interaction %s: %s %s", interaction.id, exc.status, exc.code)

    async def _reply_now(self, interaction: discord.Interaction, text: str,
                         view: discord.ui.View | None = None) -> None:
        """An immediate ephemeral answer (type 4) for clicks that need no database write."""
        msg = render.text_message(text)
        try:
            if view is None:
                await interaction.response.send_message(**msg.kwargs(), ephemeral=True)
            else:
                await interaction.response.send_message(**msg.kwargs(), view=view, ephemeral=True)
        except discord.HTTPException as exc:
            log.warning("could not answer interaction %s: %s %s", interaction.id, exc.status, exc.code)

    @staticmethod
    def _letters(interaction: discord.Interaction, post_id: int) -> list[str]:
        """The letters offered on the clicked message (no database read needed to build a form)."""
        msg = interaction.message
        comps = [c.to_dict() for c in msg.components] if msg is not None else []
        return translate.letters_on_message(comps, post_id)  # type: ignore[arg-type]

    async def _read_view(self, interaction: discord.Interaction, post_id: int) -> PostView | None:
        try:
            return await asyncio.wait_for(asyncio.to_thread(self.service.post_view, post_id), FORM_READ_TIMEOUT)
        except LabelingError as exc:
            await self._reply_now(interaction, exc.message)
        except TimeoutError:
            await self._reply_now(interaction, "The database is busy; please click again in a moment.")
        return None

    async def open_fix(self, interaction: discord.Interaction, post_id: int, letter: str | None) -> None:
        if letter is None:
            letters = self._letters(interaction, post_id)
            if not letters:
                view = await self._read_view(interaction, post_id)
                if view is None:
                    return
                letters = [r.letter for r in view.responses]
            await self._reply_now(interaction, "Which response do you want to correct?",
                                  components.letter_picker(post_id, letters))
            return
        view = await self._read_view(interaction, post_id)
        if view is None:
            return
        shown = next((r for r in view.responses if r.letter == letter), None)
        if shown is None:
            await self._reply_now(interaction, f"This item has no response {letter}.")
            return
        modal = components.correction_modal(post_id, letter, shown.text)
        if modal is None:
            modal = components.correction_modal(post_id, letter, None)
        await self._send_modal(interaction, modal)  # type: ignore[arg-type]

    async def open_rank(self, interaction: discord.Interaction, post_id: int) -> None:
        letters = self._letters(interaction, post_id)
        if not letters:
            view = await self._read_view(interaction, post_id)
            if view is None:
                return
            letters = [r.letter for r in view.responses]
        await self._send_modal(interaction, components.rank_modal(post_id, letters))

    async def open_scores(self, interaction: discord.Interaction, post_id: int) -> None:
        view = await self._read_view(interaction, post_id)
        if view is None:
            return
        if not view.criteria:
            await self._reply_now(interaction, "This campaign has no criteria to score.")
            return
        await self._send_modal(interaction, components.scores_modal(post_id, view.criteria))

    async def open_flag(self, interaction: discord.Interaction, post_id: int) -> None:
        await self._send_modal(interaction, components.flag_modal(post_id))

    # ------------------------------------------------------------------ modal submissions

    async def modal_submit(self, interaction: discord.Interaction) -> None:
        data = interaction.data if isinstance(interaction.data, dict) else {}
        action = translate.parse_custom_id(data.get("custom_id"))
        if action is None:
            return  # not ours
        values = translate.modal_values(data.get("components"))
        actor = self._actor(interaction)
        did = delivery_id(interaction)
        if action.action == "rank":
            ack = await self._ack(interaction)
            n = len(self._letters(interaction, action.post_id)) or None

            def rank() -> Any:
                size = n or self.service.post_view(action.post_id).n
                order = translate.parse_order(values.get("order", ""), size)
                reason = values.get("reason", "").strip() or None
                return self.service.submit_ranking(RankingSubmitted(actor, action.post_id, order, did, reason))

            await self._record(interaction, ack, lambda: asyncio.to_thread(rank))
            return
        ack = await self._ack(interaction, thinking=True)
        if action.action == "fix" and action.arg:
            text = "".join(values.get(f"text{i}", "") for i in range(components.MODAL_INPUTS_MAX))
            event: Any = CorrectionSubmitted(actor, action.post_id, action.arg, text, did)
            await self._notice(interaction, ack, lambda: self.service.submit_correction(event))
        elif action.action == "score":
            scores = {k.split(":", 1)[1]: v for k, v in values.items() if k.startswith("score:")}
            event = CriteriaScored(actor, action.post_id, scores, did)
            await self._notice(interaction, ack, lambda: self.service.submit_scores(event))
        elif action.action == "flag":
            event = ItemFlagged(actor, action.post_id, values.get("reason", "").strip(), did)
            await self._notice(interaction, ack, lambda: self.service.flag(event))
        else:
            await self._say(interaction, "That form is not one labelbot knows.", ack)

    # ------------------------------------------------------------------ /label app commands

    async def command(self, interaction: discord.Interaction, text: str) -> None:
        """Run `/label <text>` through the shared dispatcher (exactly what Slack runs)."""
        ack = await self._ack(interaction, thinking=True)
        channel = interaction.channel
        channel_id = getattr(channel, "parent_id", None) if isinstance(channel, discord.Thread) else None
        channel_id = channel_id or interaction.channel_id
        manage = bool(interaction.guild_id and interaction.permissions.manage_guild)
        try:
            if manage:
                manage = await self._guild_hosts_campaign(interaction.guild_id)
            actor = self._actor(interaction, platform_admin=manage)
            reply = await asyncio.to_thread(commands.handle, self.service, self.settings, actor, text,
                                            channel=str(channel_id) if channel_id else None)
        except Exception:
            log.exception("/label %s failed", text.split(" ", 1)[0])
            await self._say(interaction, SORRY, ack)
            return
        if ack.duplicate:
            return
        if reply.task is not None:
            await self._send_task(interaction, reply.text, reply.task, ack)
            return
        if reply.post_request is not None:
            from bot.adapters.discord.poster import post_items

            await self._say(interaction, reply.text, ack)
            camp, n = reply.post_request
            try:
                posted = await post_items(self.client, self.service, camp, n)
                done = f"Posted {posted} item(s) of **{camp}**." if posted else f"Nothing left to post in **{camp}**."
            except LabelingError as exc:
                done = exc.message
            except discord.HTTPException as exc:
                done = f"Discord refused the post ({exc.status}): check the bot's permissions in that channel."
            await self._say(interaction, done, ack)
            return
        chart = (reply.chart_png, reply.chart_name or "chart.png") if reply.chart_png else None
        await self._say(interaction, reply.text, ack, chart=chart)
        if not reply.ephemeral:
            await self._say(interaction, reply.text, ack, ephemeral=False)

    async def _guild_hosts_campaign(self, guild_id: int | None) -> bool:
        """Manage Server counts as admin only in a guild that hosts one of the campaign channels."""
        channels = await asyncio.to_thread(self.service.all_channels, translate.PLATFORM)
        for channel in channels:
            if not channel.isdigit():
                continue
            ch = self.client.get_channel(int(channel))
            if ch is not None and getattr(getattr(ch, "guild", None), "id", None) == guild_id:
                return True
        return False

    async def _send_task(self, interaction: discord.Interaction, text: str, view: PostView, ack: Ack) -> None:
        msg = render.render_post(view, note=render.mrkdwn_to_discord(text))
        try:
            await interaction.followup.send(**msg.kwargs(), view=components.post_buttons(view), ephemeral=True)
        except discord.HTTPException as exc:
            log.warning("could not send a task for interaction %s: %s %s", interaction.id, exc.status, exc.code)

    # ------------------------------------------------------------------ thread replies

    async def thread_message(self, message: discord.Message) -> None:
        """A reply in an item's thread is kept as a comment on the item."""
        if message.author.bot or not isinstance(message.channel, discord.Thread) or not message.content:
            return
        event = CommentAdded(translate.actor(message.author.id, message.author.display_name), translate.PLATFORM,
                             str(message.channel.id), message.content, str(message.id))
        try:
            await asyncio.to_thread(self.service.add_comment, event)
        except LabelingError as exc:
            log.info("thread reply not kept: %s", exc.message)
        except Exception:
            log.exception("could not keep thread reply %s", message.id)
