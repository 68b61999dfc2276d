"""The Discord bot end to end: real discord.py client <-> fake Discord over loopback, real database."""

from __future__ import annotations

import asyncio

from sqlmodel import select

from bot import metrics
from storage.models import Post, Vote
from tests.discord.harness import ADMIN, USERS


async def post_items(bot, n=2):
    inter = await bot.fake.slash(["post"], {"n": n}, ADMIN)
    await bot.fake.wait_for(lambda: len(inter.followups) >= 2)
    return inter


def sample_count(platform: str) -> float:
    return sum(m.value for metric in metrics.REGISTRY.collect() if metric.name == "labelbot_ack_latency_seconds"
               for m in metric.samples if m.name.endswith("_count") and m.labels.get("platform") == platform)


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
    acks_before = sample_count("discord")
    click = await bot.fake.click(int(msgs[0]["id"]), f"lbl:vote:{post.id}:A", USERS[0])
    await bot.fake.wait_for(lambda: click.followups and click.original_edits)
    assert sample_count("discord") == acks_before + 1  # interaction -> first response latency recorded
    assert click.callbacks == [(200, {"type": 6})]
    assert click.followups[0]["flags"] & 64 and click.followups[0]["content"].startswith("Vote recorded: A better")
    [vote] = votes(bot.db)
    assert vote.shown_choice == "A" and vote.delivery_id == f"discord:{click.id}"
    footer = click.original_edits[-1]["embeds"][0]["footer"]["text"]
    assert footer.startswith("1/3 votes")


async def first_post(bot):
    await post_items(bot, 1)
    msg = bot.fake.channel_messages()[0]
    with bot.db.read() as s:
        post = s.exec(select(Post).where(Post.message_id == msg["id"])).one()
    return int(msg["id"]), post


async def test_change_of_vote_keeps_one_row(bot):
    mid, post = await first_post(bot)
    first = await bot.fake.click(mid, f"lbl:vote:{post.id}:A", USERS[0])
    await bot.fake.wait_for(lambda: first.followups)
    second = await bot.fake.click(mid, f"lbl:vote:{post.id}:B", USERS[0])
    await bot.fake.wait_for(lambda: second.followups)
    assert second.followups[0]["content"].startswith("Vote changed from A better to B better")
    [vote] = votes(bot.db)
    assert vote.shown_choice == "B" and vote.winner == post.permutation[1]


async def test_replayed_interaction_and_double_clicks_give_one_vote(bot):
    mid, post = await first_post(bot)
    click = await bot.fake.click(mid, f"lbl:vote:{post.id}:tie", USERS[1])
    await bot.fake.send_interaction(click)  # the gateway replays the same INTERACTION_CREATE
    await bot.fake.wait_for(lambda: len(click.callbacks) == 2 and click.followups)
    assert sorted(status for status, _ in click.callbacks) == [200, 400]  # the replay got 40060
    rapid = await asyncio.gather(*[bot.fake.click(mid, f"lbl:vote:{post.id}:tie", USERS[1]) for _ in range(5)])
    await bot.fake.wait_for(lambda: all(r.followups for r in rapid))
    await asyncio.sleep(0.1)
    assert len(click.followups) == 1, "a replayed delivery must not confirm twice"
    assert all("unchanged" in r.followups[0]["content"] for r in rapid)
    assert len(votes(bot.db)) == 1
    assert bot.service.post_view(post.id).vote_count == 1


async def test_expired_interaction_still_commits_the_vote(bot):
    mid, post = await first_post(bot)
    bot.fake.deadline_s = 0.0  # our first response arrives "too late": Discord answers 10062
    click = await bot.fake.click(mid, f"lbl:vote:{post.id}:A", USERS[2])
    await bot.fake.wait_for(lambda: votes(bot.db))
    await asyncio.sleep(0.1)
    assert click.callbacks[0][0] == 404 and not click.followups
    assert votes(bot.db)[0].shown_choice == "A"


async def test_quorum_reveals_models_and_tallies(bot):
    mid, post = await first_post(bot)
    for user in USERS[:3]:
        click = await bot.fake.click(mid, f"lbl:vote:{post.id}:A", user)
        await bot.fake.wait_for(lambda click=click: click.followups)
    assert "reached its votes" in click.followups[0]["content"]
    await bot.fake.wait_for(lambda: "Result" in str(bot.fake.messages[mid]["embeds"][0].get("fields")))
    embeds = bot.fake.messages[mid]["embeds"]
    assert "model-" in embeds[1]["title"] and "Consensus: **A better**" in embeds[0]["fields"][0]["value"]


async def test_split_votes_ask_for_reasons_in_the_thread(bot):
    mid, post = await first_post(bot)
    for user, choice in zip(USERS[:3], ("A", "B", "tie"), strict=True):
        click = await bot.fake.click(mid, f"lbl:vote:{post.id}:{choice}", user)
        await bot.fake.wait_for(lambda click=click: click.followups)
    assert "one more vote" in click.followups[0]["content"] or "split" in click.followups[0]["content"]

    def asks():
        return [m for m in bot.fake.messages.values() if m["channel_id"] == str(post.thread_id)
                and "split" in (m.get("content") or "")]

    await bot.fake.wait_for(lambda: asks())
    assert len(asks()) == 1


async def test_paused_campaign_refuses_votes_politely(bot):
    mid, post = await first_post(bot)
    pause = await bot.fake.slash(["pause"], {}, ADMIN)
    await bot.fake.wait_for(lambda: len(pause.followups) == 2)
    assert not pause.followups[1]["flags"] & 64, "pause is announced in the channel"
    click = await bot.fake.click(mid, f"lbl:vote:{post.id}:A", USERS[0])
    await bot.fake.wait_for(lambda: click.followups)
    assert "paused" in click.followups[0]["content"] and not votes(bot.db)


async def test_thread_reply_is_kept_as_comment(bot):
    from storage.models import Comment

    mid, post = await first_post(bot)
    await bot.fake.thread_reply(mid, USERS[3], "Response B cites a paper that does not exist.")

    def comments():
        with bot.db.read() as s:
            return list(s.exec(select(Comment)))

    await bot.fake.wait_for(comments)
    [comment] = comments()
    assert comment.item_id == post.item_id and "does not exist" in comment.text


async def test_guidelines_button_sends_the_items_campaign_guidelines(bot):
    message, post = await first_post(bot)
    click = await bot.fake.click(message, f"lbl:guide:{post.id}", USERS[3])
    await bot.fake.wait_for(lambda: click.followups)
    reply = click.followups[0]
    assert click.callbacks == [(200, {"type": 6})] and reply["flags"] & 64
    assert reply["embeds"][0]["title"] == "Guidelines for demo (version 1)"
    assert "Prefer correct answers." in reply["embeds"][0]["description"]
