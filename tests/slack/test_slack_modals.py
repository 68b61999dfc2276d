"""Buttons that open modals (correction, ranking, criteria) and their submissions; thread replies."""

from __future__ import annotations

import json

from sqlmodel import select

from bot.adapters.slack.render import check_view
from bot.core.importer import validate_row
from bot.core.service import CampaignSpec
from storage.models import Comment, Correction, Post, Vote
from tests.conftest import CLI, make_items
from tests.slack.payloads import block_actions, message_event, view_submission
from tests.slack.test_slack_voting import post_one


async def open_modal(env, action: str, post: Post, user: str = "U1") -> dict:
    before = len(env.fake.ok_calls("views.open"))
    status, _ = await env.interact(block_actions(f"lbl:{action}:{post.id}", user=user, message_ts=post.message_id))
    assert status == 200
    await env.settle()
    opened = env.fake.ok_calls("views.open")
    assert len(opened) == before + 1
    assert not check_view(opened[-1]["view"])
    return opened[-1]["view"]


async def test_correction_modal_prefilled_and_saved(slack_env):
    env = slack_env
    post, _ = await post_one(env)
    view = await open_modal(env, "fix", post)
    assert view["callback_id"] == f"lbl:fix:{post.id}"
    inputs = {b["block_id"]: b["element"] for b in view["blocks"] if b["type"] == "input"}
    shown_b = env.service.post_view(post.id).responses[1].text
    assert inputs["fix_B"]["initial_value"] == shown_b  # pre-filled with the response text to edit
    values = {"fix_A": {"text": {"type": "plain_text_input", "value": inputs["fix_A"]["initial_value"]}},
              "fix_B": {"text": {"type": "plain_text_input", "value": shown_b + " Corrected and improved."}}}
    status, body = await env.interact(view_submission(view, values, user="U5"))
    assert status == 200 and body == ""  # closes the modal
    await env.settle()
    with env.db.read() as s:
        rows = list(s.exec(select(Correction)))
    assert len(rows) == 1 and rows[0].position == post.permutation[1]
    assert rows[0].text.endswith("Corrected and improved.")
    assert "correction of response B" in env.fake.ok_calls("chat.postEphemeral")[-1]["text"]


async def test_correction_modal_without_edits_shows_an_error(slack_env):
    env = slack_env
    post, _ = await post_one(env)
    view = await open_modal(env, "fix", post)
    inputs = {b["block_id"]: b["element"] for b in view["blocks"] if b["type"] == "input"}
    values = {k: {"text": {"type": "plain_text_input", "value": v.get("initial_value")}} for k, v in inputs.items()}
    status, body = await env.interact(view_submission(view, values))
    assert status == 200 and json.loads(body)["response_action"] == "errors"
    await env.settle()
    with env.db.read() as s:
        assert not list(s.exec(select(Correction)))


async def ranked_campaign(service) -> None:
    service.create_campaign(CampaignSpec("rank3", overlap=3, channels=(("slack", "C777"),), gold_rate=0.0), CLI)
    items = [validate_row(r, i)[0] for i, r in enumerate(make_items(2, responses=3, prefix="r"), start=1)]
    service.import_items("rank3", items, CLI)


async def test_ranking_modal(slack_env, service):
    env = slack_env
    await ranked_campaign(service)
    assert await env.handlers.poster.post_items("rank3", 1) == 1
    msg = env.fake.ok_calls("chat.postMessage")[-1]
    assert msg["channel"] == "C777"
    with env.db.read() as s:
        post = s.exec(select(Post).where(Post.channel == "C777")).one()
    ids = [el["action_id"] for b in msg["blocks"] if b["type"] == "actions" for el in b["elements"]]
    assert f"lbl:rank:{post.id}" in ids and f"lbl:vote:{post.id}:C" in ids
    view = await open_modal(env, "rank", post, user="U6")
    selects = [b for b in view["blocks"] if b["type"] == "input"]
    assert [b["block_id"] for b in selects] == ["rank_1", "rank_2", "rank_3"]

    def pick(*letters):
        return {f"rank_{i}": {"choice": {"type": "static_select", "selected_option": {
            "text": {"type": "plain_text", "text": f"Response {x}"}, "value": x}}} for i, x in enumerate(letters, 1)}

    status, body = await env.interact(view_submission(view, pick("A", "A", "B"), user="U6"))
    assert status == 200 and "rank_2" in json.loads(body)["errors"]
    await env.settle()
    assert not votes_of(env)

    status, body = await env.interact(view_submission(view, pick("C", "A", "B"), user="U6"))
    assert status == 200 and body == ""
    await env.settle()
    rows = votes_of(env)
    assert len(rows) == 1 and rows[0].outcome == "rank" and rows[0].shown_choice == "C>A>B"
    perm = post.permutation
    assert rows[0].ranking == [perm[2], perm[0], perm[1]]
    assert "Ranking C>A>B" in env.fake.ok_calls("chat.postEphemeral")[-1]["text"]
    assert env.fake.ok_calls("chat.update")[-1]["channel"] == "C777"


def votes_of(env) -> list[Vote]:
    with env.db.read() as s:
        return list(s.exec(select(Vote)))


async def test_criteria_modal_scores_the_vote(slack_env):
    env = slack_env
    post, _ = await post_one(env)
    await env.interact(block_actions(f"lbl:vote:{post.id}:A", user="U7", message_ts=post.message_id))
    await env.settle()
    view = await open_modal(env, "score", post, user="U7")
    assert [b["label"]["text"] for b in view["blocks"] if b["type"] == "input"] == ["helpfulness", "harmlessness"]
    values = {"crit_0": {"score": {"type": "static_select", "selected_option": {
        "text": {"type": "plain_text", "text": "4"}, "value": "4"}}}, "crit_1": {"score": {"selected_option": None}}}
    status, _ = await env.interact(view_submission(view, values, user="U7"))
    assert status == 200
    await env.settle()
    assert votes_of(env)[0].scores == {"helpfulness": 4}
    assert "Scores saved" in env.fake.ok_calls("chat.postEphemeral")[-1]["text"]


async def test_thread_replies_become_comments_once(slack_env):
    env = slack_env
    post, _ = await post_one(env)
    event = message_event("I think B misreads the question.", user="U8", thread_ts=post.message_id,
                          ts="1800000000.000200", event_id="Ev0THREAD1")
    assert (await env.event(event))[0] == 200
    assert (await env.event(event, **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}))[0] == 200
    # a reply in someone else's thread and a top-level message are not comments
    await env.event(message_event("unrelated", user="U8", thread_ts="1111111111.000001", ts="1800000000.000300"))
    await env.event(message_event("top level", user="U8", ts="1800000000.000400"))
    await env.settle()
    with env.db.read() as s:
        rows = list(s.exec(select(Comment)))
    assert len(rows) == 1 and rows[0].item_id == post.item_id and rows[0].text.startswith("I think B")
    assert rows[0].message_id == "1800000000.000200"
