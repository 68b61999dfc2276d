"""The Discord bot end to end: real discord.py client <-> fake Discord over loopback, real database."""

from __future__ import annotations

import asyncio

from sqlmodel import select

from storage.models import Post, Vote
from tests.discord.harness import ADMIN, USERS, bot, fake  # noqa: F401  (fixtures)


async def post_items(bot, n=2):
    inter = await bot.fake.slash(["post"], {"n": n}, ADMIN)
    await bot.fake.wait_for(lambda: len(inter.followups) >= 2)
    return inter


def votes(db):
    with db.read() as s:
        return list(s.exec(select(Vote)))


async def test_post_click_vote_confirm_and_edit(bot):
    inter = await post_items(bot, 2)
    assert inter.callbacks[0][0] == 200 and inter.callbacks[0][1]["type"] == 5  # deferred, thinking
    assert "Posted 2 item(s)" in inter.followups[-1]["content"]
    msgs = bot.fake.channel_messages()
    assert len(msgs) == 2 and all(int(m["id"]) in bot.fake.threads for m in msgs)
    with bot.db.read() as s:
        post = s.exec(select(Post).where(Post.message_id == msgs[0]["id"])).one()
    assert post.thread_id == msgs[0]["id"]
    ids = [c["custom_id"] for row in msgs[0]["components"] for c in row["components"]]
    assert f"lbl:vote:{post.id}:A" in ids and f"lbl:guide:{post.id}" in ids
    click = await bot.fake.click(int(msgs[0]["id"]), f"lbl:vote:{post.id}:A", USERS[0])
    await bot.fake.wait_for(lambda: click.followups and click.original_edits)
    assert click.callbacks == [(200, {"type": 6})]
    assert click.followups[0]["flags"] & 64 and click.followups[0]["content"].startswith("Vote recorded: A better")
    [vote] = votes(bot.db)
    assert vote.shown_choice == "A" and vote.delivery_id == f"discord:{click.id}"
    footer = click.original_edits[-1]["embeds"][0]["footer"]["text"]
    assert footer.startswith("1/3 votes")
