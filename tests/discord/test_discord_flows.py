"""Restarts, modals, app commands and account linking through the real discord.py client."""

from __future__ import annotations

import asyncio

from sqlmodel import select

from bot.adapters.commands import handle
from bot.adapters.discord.poster import post_campaign
from bot.core.events import VoteCast
from storage.models import AuditLog, Campaign, Correction, Flag, Post, Role, Vote
from tests.conftest import actor, make_items
from tests.discord.fake_discord import MANAGE_GUILD
from tests.discord.harness import ADMIN, USERS, bot_settings, start_bot


def rows(db, model):
    with db.read() as s:
        return list(s.exec(select(model)))


def post_of(db, message_id):
    with db.read() as s:
        return s.exec(select(Post).where(Post.message_id == str(message_id))).one()


async def test_button_posted_before_restart_still_works(fake, db_url, campaign, service):
    settings = bot_settings(fake, db_url)
    # posted by `labelbot post --platform discord` (REST only) while no bot process runs
    assert await asyncio.to_thread(post_campaign, settings, service, campaign, 1) == 1
    [msg] = fake.channel_messages()
    assert int(msg["id"]) in fake.threads
    post = post_of(service.db, msg["id"])
    first = await start_bot(fake, db_url)
    click = await fake.click(int(msg["id"]), f"lbl:vote:{post.id}:A", USERS[0])
    await fake.wait_for(lambda: click.followups)
    await first.stop()
    second = await start_bot(fake, db_url)  # a fresh process: no view objects survive, only the templates
    try:
        click = await fake.click(int(msg["id"]), f"lbl:vote:{post.id}:B", USERS[1])
        await fake.wait_for(lambda: click.followups and click.original_edits)
        assert click.followups[0]["content"].startswith("Vote recorded: B better")
        assert len(rows(service.db, Vote)) == 2
    finally:
        await second.stop()


async def test_correction_via_letter_picker_and_modal(bot):
    inter = await bot.fake.slash(["post"], {"n": 1}, ADMIN)
    await bot.fake.wait_for(lambda: len(inter.followups) >= 2)
    [msg] = bot.fake.channel_messages()
    post = post_of(bot.db, msg["id"])
    pick = await bot.fake.click(int(msg["id"]), f"lbl:fix:{post.id}", USERS[0])
    await bot.fake.wait_for(lambda: pick.response is not None)
    assert pick.response["type"] == 4 and pick.response["data"]["flags"] & 64
    picker = pick.followups[0]
    ids = [c["custom_id"] for row in picker["components"] for c in row["components"]]
    assert ids == [f"lbl:fix:{post.id}:A", f"lbl:fix:{post.id}:B"]
    open_form = await bot.fake.click(int(picker["id"]), f"lbl:fix:{post.id}:B", USERS[0])
    await bot.fake.wait_for(lambda: open_form.response is not None)
    modal = open_form.response
    assert modal["type"] == 9 and modal["data"]["custom_id"] == f"lbl:fix:{post.id}:B"
    shown_b = bot.service.post_view(post.id).responses[1].text
    assert modal["data"]["components"][0]["components"][0]["value"] == shown_b  # pre-filled with the original
    submit = await bot.fake.submit_modal(f"lbl:fix:{post.id}:B", {"text0": "A better answer."}, USERS[0],
                                         message_id=int(picker["id"]))
    await bot.fake.wait_for(lambda: submit.followups)
    assert "correction of response B is saved" in submit.followups[0]["content"]
    [corr] = rows(bot.db, Correction)
    assert corr.text == "A better answer." and corr.position == post.permutation[1]
    # the same submission replayed: saved once
    await bot.fake.send_interaction(submit)
    await asyncio.sleep(0.2)
    assert len(rows(bot.db, Correction)) == 1


async def test_ranking_scores_and_flag_modals(fake, db_url, service, tmp_path):
    from bot.core.importer import validate_row
    from bot.core.service import CampaignSpec
    from tests.conftest import CLI

    service.create_campaign(CampaignSpec("three", overlap=3, criteria=("helpfulness",),
                                         channels=(("discord", str(fake.channel_id)),), gold_rate=0.0), CLI)
    service.import_items("three", [validate_row(r, 1)[0] for r in make_items(1, responses=3)], CLI)
    running = await start_bot(fake, db_url)
    try:
        inter = await fake.slash(["post"], {"n": 1, "campaign": "three"}, ADMIN)
        await fake.wait_for(lambda: len(inter.followups) >= 2)
        [msg] = fake.channel_messages()
        mid, post = int(msg["id"]), post_of(service.db, msg["id"])
        labels = [c["label"] for row in msg["components"] for c in row["components"]]
        assert labels[:4] == ["A best", "B best", "C best", "Rank…"]
        rank = await fake.click(mid, f"lbl:rank:{post.id}", USERS[0])
        await fake.wait_for(lambda: rank.response is not None)
        assert rank.response["type"] == 9
        bad = await fake.submit_modal(f"lbl:rank:{post.id}", {"order": "C A", "reason": ""}, USERS[0], message_id=mid)
        await fake.wait_for(lambda: bad.followups)
        assert "Rank all 3 responses" in bad.followups[0]["content"] and not rows(service.db, Vote)
        good = await fake.submit_modal(f"lbl:rank:{post.id}", {"order": "c > a > b", "reason": "C is exact"},
                                       USERS[0], message_id=mid)
        await fake.wait_for(lambda: good.followups and good.original_edits)
        assert good.callbacks[0][1] == {"type": 6}
        [vote] = rows(service.db, Vote)
        assert vote.ranking == [post.permutation[2], post.permutation[0], post.permutation[1]]
        assert vote.outcome == "rank" and vote.reason == "C is exact"
        score = await fake.click(mid, f"lbl:score:{post.id}", USERS[0])
        await fake.wait_for(lambda: score.response is not None)
        assert [r["components"][0]["custom_id"] for r in score.response["data"]["components"]] == [
            "score:helpfulness"]
        sub = await fake.submit_modal(f"lbl:score:{post.id}", {"score:helpfulness": "4"}, USERS[0], message_id=mid)
        await fake.wait_for(lambda: sub.followups)
        assert rows(service.db, Vote)[0].scores == {"helpfulness": 4}
        flag = await fake.click(mid, f"lbl:flag:{post.id}", USERS[1])
        await fake.wait_for(lambda: flag.response is not None)
        sub = await fake.submit_modal(f"lbl:flag:{post.id}", {"reason": "prompt is offensive"}, USERS[1],
                                      message_id=mid)
        await fake.wait_for(lambda: sub.followups)
        assert rows(service.db, Flag)[0].reason == "prompt is offensive"
    finally:
        await running.stop()


async def test_app_commands_admin_and_non_admin(bot):
    fake = bot.fake
    denied = await fake.slash(["pause"], {}, USERS[0])
    await fake.wait_for(lambda: denied.followups)
    assert "only labelbot admins" in denied.followups[0]["content"]
    denied_post = await fake.slash(["post"], {"n": 3}, USERS[0])
    await fake.wait_for(lambda: denied_post.followups)
    assert not fake.channel_messages()
    with bot.db.read() as s:
        assert s.exec(select(Campaign)).one().status == "active"
    stats = await fake.slash(["stats"], {}, USERS[0])
    await fake.wait_for(lambda: stats.followups)
    assert "0/6 items complete" in stats.followups[0]["content"]
    [chart] = stats.followups[0]["_files"]  # the stats chart rides along as a PNG
    assert chart["filename"] == "stats-demo.png" and chart["content"].startswith(b"\x89PNG")
    # Manage Server in the guild that hosts the campaign channel counts as admin (documented)
    manager = await fake.slash(["pause"], {}, USERS[1], permissions=MANAGE_GUILD)
    await fake.wait_for(lambda: len(manager.followups) == 2)
    with bot.db.read() as s:
        assert s.exec(select(Campaign)).one().status == "paused"
    grant = await fake.slash(["admin", "add"], {"user": {"user": USERS[2]}}, ADMIN)
    await fake.wait_for(lambda: grant.followups)
    assert f"discord:{USERS[2]} is now an admin" in grant.followups[0]["content"]
    assert [(r.platform, r.user_id) for r in rows(bot.db, Role)] == [("discord", str(USERS[2]))]
    resume = await fake.slash(["resume"], {}, USERS[2])
    await fake.wait_for(lambda: resume.followups)
    with bot.db.read() as s:
        assert s.exec(select(Campaign)).one().status == "active"
    nxt = await fake.slash(["next"], {}, USERS[3])
    await fake.wait_for(lambda: nxt.followups)
    task = nxt.followups[0]
    assert task["flags"] & 64 and task["embeds"] and task["components"]
    ids = [c["custom_id"] for row in task["components"] for c in row["components"]]
    click = await fake.click(int(task["id"]), ids[0], USERS[3])
    await fake.wait_for(lambda: click.followups)
    assert click.followups[0]["content"].startswith("Vote recorded")
    help_ = await fake.slash(["help"], {}, USERS[3])
    await fake.wait_for(lambda: help_.followups)
    assert "link [CODE]" in help_.followups[0]["content"] and "Admin commands" not in help_.followups[0]["content"]


async def test_linked_accounts_count_once_on_a_cross_posted_item(bot):
    fake, service = bot.fake, bot.service
    slack_user = actor("U777", "slack", "T1")
    inter = await fake.slash(["post"], {"n": 1}, ADMIN)
    await fake.wait_for(lambda: len(inter.followups) >= 2)
    [msg] = fake.channel_messages()
    post = post_of(bot.db, msg["id"])
    slack_post = service.prepare_posts("demo", "slack", "C123", 1)[0]  # the same item, cross-posted on Slack
    assert post.item_id == slack_post.item_id
    service.attach_message(slack_post.post_id, "1700000000.000100")
    service.cast_vote(VoteCast(slack_user, slack_post.post_id, "A", delivery_id="slack-1"))
    link = await fake.slash(["link"], {}, USERS[5])
    await fake.wait_for(lambda: link.followups)
    code = link.followups[0]["content"].split("`")[1]
    reply = await asyncio.to_thread(handle, service, bot.settings, slack_user, f"link {code}")
    assert reply.ok and "now count as one annotator" in reply.text
    click = await fake.click(int(msg["id"]), f"lbl:vote:{post.id}:tie", USERS[5])
    await fake.wait_for(lambda: click.followups)
    assert click.followups[0]["content"].startswith("Vote changed from")
    [vote] = rows(bot.db, Vote)
    assert vote.outcome == "tie"
    assert service.post_view(post.id).vote_count == 1
    assert any(a.action == "link.accounts" for a in rows(bot.db, AuditLog))


async def test_a_vote_on_slack_refreshes_the_items_discord_message(bot):
    """`labelbot serve` runs both bots in one process: a Slack vote updates the Discord message too."""
    fake, service = bot.fake, bot.service
    inter = await fake.slash(["post"], {"n": 1}, ADMIN)
    await fake.wait_for(lambda: len(inter.followups) >= 2)
    [msg] = fake.channel_messages()
    post = post_of(bot.db, msg["id"])
    slack_post = service.prepare_posts("demo", "slack", "C123", 1)[0]  # the same item, cross-posted
    assert post.item_id == slack_post.item_id
    assert "0/3 votes" in str(msg["embeds"])
    await asyncio.to_thread(service.cast_vote, VoteCast(actor("U1", "slack", "T1"), slack_post.post_id, "A"))
    await fake.wait_for(lambda: any(mid == int(msg["id"]) for mid, _ in fake.channel_edits), timeout=10)
    assert "1/3 votes" in str(fake.messages[int(msg["id"])]["embeds"])

    def asks() -> list[dict]:
        return [m for m in fake.messages.values() if m["channel_id"] == str(post.thread_id)
                and "split" in (m.get("content") or "")]

    for user, choice in (("U2", "B"), ("U3", "tie")):  # the Slack votes split the item: Discord asks too
        await asyncio.to_thread(service.cast_vote, VoteCast(actor(user, "slack", "T1"), slack_post.post_id, choice))
    await fake.wait_for(asks, timeout=10)
    assert len(asks()) == 1
