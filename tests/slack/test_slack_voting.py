"""Post -> click -> vote row -> ephemeral confirmation -> message update, over real HTTP on loopback."""

from __future__ import annotations

import asyncio

from sqlmodel import func, select

from bot import metrics
from bot.adapters.slack.render import check_blocks
from storage.models import AuditLog, Item, Post, Vote
from tests.slack.payloads import block_actions


def votes(db) -> list[Vote]:
    with db.read() as s:
        return list(s.exec(select(Vote).order_by(Vote.id)))


def block_text(blocks) -> str:
    out = []
    for b in blocks:
        if "text" in b and isinstance(b["text"], dict):
            out.append(b["text"]["text"])
        for el in b.get("elements", []):
            if isinstance(el.get("text"), str):
                out.append(el["text"])
            elif isinstance(el.get("text"), dict):
                out.append(el["text"]["text"])
    return "\n".join(out)


async def post_one(env) -> tuple[Post, dict]:
    """Post the next item of `demo` with the real poster; returns its post row and the message sent."""
    assert await env.handlers.poster.post_items("demo", 1) == 1
    msg = env.fake.ok_calls("chat.postMessage")[-1]
    with env.db.read() as s:
        post = s.exec(select(Post).where(Post.message_id.is_not(None)).order_by(Post.id.desc())).first()
    return post, msg


async def test_post_click_vote_confirm_and_update(slack_env):
    env = slack_env
    post, msg = await post_one(env)
    assert msg["channel"] == "C123" and not check_blocks(msg["blocks"])
    ids = [el["action_id"] for b in msg["blocks"] if b["type"] == "actions" for el in b["elements"]]
    p = post.id
    assert ids == [f"lbl:vote:{p}:A", f"lbl:vote:{p}:B", f"lbl:vote:{p}:tie", f"lbl:vote:{p}:both_bad",
                   f"lbl:skip:{p}", f"lbl:fix:{p}", f"lbl:score:{p}", f"lbl:flag:{p}", f"lbl:guide:{p}"]
    labels = [el["text"]["text"] for b in msg["blocks"] if b["type"] == "actions" for el in b["elements"]]
    assert labels[:4] == ["A better", "B better", "Tie", "Both bad"]
    assert "0/3 votes" in block_text(msg["blocks"])
    assert "model-" not in str(msg["blocks"]), "model names must be hidden before quorum"

    committed_at_confirmation = []

    def on_call(call):  # runs inside the fake when the confirmation arrives: is the vote already durable?
        if call.method == "chat.postEphemeral":
            committed_at_confirmation.append(len(votes(env.db)))

    env.fake.on_call = on_call
    clicks_before = metrics.INTERACTIONS.labels("slack", "action")._value.get()
    status, _ = await env.interact(block_actions(f"lbl:vote:{p}:A", user="U1", message_ts=post.message_id))
    assert metrics.INTERACTIONS.labels("slack", "action")._value.get() == clicks_before + 1
    assert status == 200
    await env.settle()

    rows = votes(env.db)
    assert len(rows) == 1 and rows[0].shown_choice == "A" and rows[0].winner == post.permutation[0]
    assert committed_at_confirmation == [1]
    eph = env.fake.ok_calls("chat.postEphemeral")
    assert len(eph) == 1 and eph[0]["user"] == "U1" and eph[0]["channel"] == "C123"
    assert "Vote recorded: A better" in eph[0]["text"] and "change" in eph[0]["text"]
    updates = env.fake.ok_calls("chat.update")
    assert updates and updates[-1]["ts"] == post.message_id and updates[-1]["channel"] == "C123"
    assert "1/3 votes" in block_text(updates[-1]["blocks"])
    assert "model-" not in str(updates[-1]["blocks"])


async def test_change_vote(slack_env):
    env = slack_env
    post, _ = await post_one(env)
    await env.interact(block_actions(f"lbl:vote:{post.id}:A", user="U2", message_ts=post.message_id))
    await env.settle()
    await env.interact(block_actions(f"lbl:vote:{post.id}:B", user="U2", message_ts=post.message_id))
    await env.settle()
    rows = votes(env.db)
    assert len(rows) == 1 and rows[0].shown_choice == "B" and rows[0].winner == post.permutation[1]
    texts = [c["text"] for c in env.fake.ok_calls("chat.postEphemeral")]
    assert "Vote changed from A better to B better" in texts[-1]
    with env.db.read() as s:
        changes = list(s.exec(select(AuditLog).where(AuditLog.action == "vote.change")))
        assert len(changes) == 1 and changes[0].actor == "slack:U2"  # history kept in the audit log
        assert s.get(Item, post.item_id).vote_count == 1


async def test_redeliveries_and_double_clicks_give_one_vote(slack_env):
    env = slack_env
    post, _ = await post_one(env)
    same = block_actions(f"lbl:vote:{post.id}:B", user="U3", message_ts=post.message_id)
    retries = [env.interact(same)] + [env.interact(same, **{"X-Slack-Retry-Num": str(n),
                                                            "X-Slack-Retry-Reason": "http_timeout"})
                                      for n in (1, 2, 3)]
    doubles = [env.interact(block_actions(f"lbl:vote:{post.id}:B", user="U3", message_ts=post.message_id))
               for _ in range(5)]
    results = await asyncio.gather(*retries, *doubles)
    assert [status for status, _ in results] == [200] * 9
    await env.settle()
    with env.db.read() as s:
        assert s.exec(select(func.count()).select_from(Vote)).one() == 1
        assert s.get(Item, post.item_id).vote_count == 1
        assert not list(s.exec(select(AuditLog).where(AuditLog.action == "vote.change")))
    eph = env.fake.ok_calls("chat.postEphemeral")
    assert eph and all(c["user"] == "U3" for c in eph)
    assert sum("Vote recorded" in c["text"] for c in eph) == 1, "retries must not confirm again"


async def test_quorum_reveals_models_and_result(slack_env):
    env = slack_env
    post, _ = await post_one(env)
    for user in ("U1", "U2", "U3"):
        await env.interact(block_actions(f"lbl:vote:{post.id}:A", user=user, message_ts=post.message_id))
        await env.settle()
        last = env.fake.ok_calls("chat.update")[-1]
        if user != "U3":
            assert "model-" not in str(last["blocks"])
    text = block_text(env.fake.ok_calls("chat.update")[-1]["blocks"])
    assert "3/3 votes" in text and "Result: *A better*" in text
    assert "model-0" in text and "model-1" in text
    assert "last vote" in env.fake.ok_calls("chat.postEphemeral")[-1]["text"]


async def test_split_votes_ask_for_reasons_in_the_thread(slack_env):
    env = slack_env
    post, _ = await post_one(env)
    for user, choice in (("U1", "A"), ("U2", "B"), ("U3", "tie")):
        await env.interact(block_actions(f"lbl:vote:{post.id}:{choice}", user=user, message_ts=post.message_id))
        await env.settle()
    asks = [c for c in env.fake.ok_calls("chat.postMessage") if c.get("thread_ts") == post.message_id
            and "split" in c.get("text", "")]
    assert len(asks) == 1 and asks[0]["channel"] == "C123"
    assert "one more vote was requested" in env.fake.ok_calls("chat.postEphemeral")[-1]["text"]
    assert "4 votes" in block_text(env.fake.ok_calls("chat.update")[-1]["blocks"])


async def test_skip_flag_and_guidelines_buttons(slack_env):
    env = slack_env
    post, _ = await post_one(env)
    for action in ("skip", "flag", "guide"):
        status, _ = await env.interact(block_actions(f"lbl:{action}:{post.id}", user="U4",
                                                     message_ts=post.message_id))
        assert status == 200
        await env.settle()
    texts = [c["text"] for c in env.fake.ok_calls("chat.postEphemeral")]
    assert "Skipped" in texts[0] and "flagged" in texts[1] and "Guidelines — demo" in texts[2]
    assert "Prefer correct answers." in str(env.fake.ok_calls("chat.postEphemeral")[2]["blocks"])


async def test_message_updates_are_coalesced(slack_env, monkeypatch):
    from bot.adapters.slack import listeners

    env = slack_env
    monkeypatch.setattr(listeners, "UPDATE_INTERVAL_S", 0.5)
    post, _ = await post_one(env)
    await asyncio.gather(*(env.interact(block_actions(f"lbl:vote:{post.id}:A", user=u, message_ts=post.message_id))
                           for u in ("U1", "U2", "U3")))
    await env.settle()
    updates = env.fake.ok_calls("chat.update")
    assert 1 <= len(updates) <= 2, "a burst of votes on one item gives at most one update per interval + the last"
    assert "3/3 votes" in block_text(updates[-1]["blocks"])  # the final state is always shown
    assert len(env.fake.ok_calls("chat.postEphemeral")) == 3


async def test_a_vote_on_discord_refreshes_the_items_slack_message(slack_env):
    """`labelbot serve` runs both bots in one process: a Discord vote updates the Slack message too."""
    from bot.core.events import VoteCast
    from tests.conftest import actor

    env = slack_env
    post, _ = await post_one(env)
    discord_post = env.service.prepare_posts("demo", "discord", "200000000000000001", 1)[0]  # cross-posted
    assert discord_post.item_id == post.item_id
    await asyncio.to_thread(env.service.cast_votes, [VoteCast(actor("42", "discord", ""), discord_post.post_id, "B")])
    for _ in range(200):
        if env.fake.ok_calls("chat.update"):
            break
        await asyncio.sleep(0.02)
    await env.settle()
    updates = env.fake.ok_calls("chat.update")
    assert updates and updates[-1]["ts"] == post.message_id
    assert "1/3 votes" in block_text(updates[-1]["blocks"])
    for user, choice in (("43", "A"), ("44", "tie")):  # the Discord votes split the item: Slack asks too
        await asyncio.to_thread(env.service.cast_votes, [VoteCast(actor(user, "discord", ""), discord_post.post_id,
                                                                   choice)])
    for _ in range(200):
        if [c for c in env.fake.ok_calls("chat.postMessage") if c.get("thread_ts") == post.message_id]:
            break
        await asyncio.sleep(0.02)
    await env.settle()
    asks = [c for c in env.fake.ok_calls("chat.postMessage") if c.get("thread_ts") == post.message_id]
    assert len(asks) == 1 and "split" in asks[0]["text"]
