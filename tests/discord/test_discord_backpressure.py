"""Work after the first response is bounded: acks never wait behind follow-ups, shutdown never hangs on Discord."""

from __future__ import annotations

import asyncio
import time

from sqlmodel import select

from bot.adapters.discord.handlers import AFTER_ACK_SLOTS
from storage.models import Post, Vote
from tests.discord.harness import ADMIN, USERS


async def posted(bot, n: int) -> list[tuple[int, int]]:
    inter = await bot.fake.slash(["post"], {"n": n}, ADMIN)
    await bot.fake.wait_for(lambda: len(inter.followups) >= 2, timeout=10)
    out = []
    with bot.db.read() as s:
        for msg in bot.fake.channel_messages():
            post = s.exec(select(Post).where(Post.message_id == str(msg["id"]))).one()
            out.append((int(msg["id"]), post.id))
    return out


async def test_acks_go_out_while_follow_ups_queue_behind_the_slots(bot):
    items = await posted(bot, 4)  # 3 votes each (k=3): every click is a new, accepted vote
    bot.fake.hold_kinds = {"followup", "edit"}  # Discord answers slowly after the first response
    clicks = [await bot.fake.click(items[u % 4][0], f"lbl:vote:{items[u % 4][1]}:A", USERS[u])
              for u in range(AFTER_ACK_SLOTS + 4)]
    await bot.fake.wait_for(lambda: all(c.first_response_at is not None for c in clicks), timeout=10)
    await bot.fake.wait_for(lambda: bot.fake.held == AFTER_ACK_SLOTS, timeout=10)
    await asyncio.sleep(0.2)
    assert bot.fake.held == AFTER_ACK_SLOTS, "at most AFTER_ACK_SLOTS requests after the ack may be in flight"
    assert all(c.response["type"] == 6 for c in clicks)  # every click was acknowledged meanwhile
    bot.fake.hold.set()
    await bot.fake.wait_for(lambda: all(c.followups for c in clicks), timeout=10)
    assert all(c.followups[0]["content"].startswith("Vote recorded: A better") for c in clicks)
    with bot.db.read() as s:
        assert len(s.exec(select(Vote)).all()) == len(clicks)


async def test_shutdown_gives_up_on_message_edits_discord_never_answers(bot):
    [(message, post)] = await posted(bot, 1)
    bot.fake.hold_kinds = {"edit"}
    click = await bot.fake.click(message, f"lbl:vote:{post}:B", USERS[0])
    await bot.fake.wait_for(lambda: click.followups and bot.fake.held == 1, timeout=10)
    bot.client.labelbot.refresher.drain_timeout = 0.5
    started = time.monotonic()
    await asyncio.wait_for(bot.client.close(), 10)
    assert time.monotonic() - started < 5
    bot.fake.hold.set()
    assert not bot.client.labelbot.refresher.tasks
    with bot.db.read() as s:
        assert [v.shown_choice for v in s.exec(select(Vote))] == ["B"]  # the committed vote stays
