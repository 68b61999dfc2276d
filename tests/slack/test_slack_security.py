"""Signature verification, malformed payloads, and secrets kept out of logs."""

from __future__ import annotations

import json
import logging
import time

from sqlmodel import func, select

from storage.models import AuditLog, Delivery, Vote
from tests.slack.payloads import SECRET, TOKEN, block_actions, form_payload, sign, slash_command
from tests.slack.test_slack_voting import post_one


def count(env, model) -> int:
    with env.db.read() as s:
        return s.exec(select(func.count()).select_from(model)).one()


async def test_forged_and_stale_signatures_get_401(slack_env):
    env = slack_env
    post, _ = await post_one(env)
    body = form_payload(block_actions(f"lbl:vote:{post.id}:A", user="U1", message_ts=post.message_id))
    forged = sign(body, secret="not-the-secret")
    stale = sign(body, ts=int(time.time()) - 301)
    future = sign(body, ts=int(time.time()) + 400)
    tampered = sign(body)
    missing = {"Content-Type": "application/x-www-form-urlencoded"}
    for headers, payload in ((forged, body), (stale, body), (future, body), (missing, body),
                             (tampered, body.replace("U1", "U2"))):
        status, _, _ = await env.send_raw(payload, headers)
        assert status == 401
    cmd = slash_command("post 5", user="UADMIN")
    assert (await env.send_raw(cmd, sign(cmd, secret="wrong")))[0] == 401
    await env.settle()
    assert count(env, Vote) == 0 and count(env, Delivery) == 0
    assert len(env.fake.ok_calls("chat.postMessage")) == 1  # only the item posted above
    assert not env.fake.ok_calls("chat.postEphemeral") and not env.fake.responses


async def test_malformed_payloads_get_4xx_and_change_nothing(slack_env):
    env = slack_env
    post, _ = await post_one(env)
    audits = count(env, AuditLog)
    good = block_actions(f"lbl:vote:{post.id}:A", user="U1", message_ts=post.message_id)
    bad_payloads = [
        "payload=%7Bnot-json",
        form_payload({**good, "actions": []}),
        form_payload({**good, "actions": [{"action_id": f"lbl:vote:{post.id}:Z9", "type": "button"}]}),
        form_payload({**good, "actions": [{"action_id": "lbl:vote:notanumber:A", "type": "button"}]}),
        form_payload({**good, "user": {"id": "../../etc"}}),
        form_payload({**good, "user": None}),
        form_payload({"type": "view_submission", "view": {"callback_id": f"lbl:rank:{post.id}"},
                      "user": {"id": "U1"}}),
        form_payload({"type": "view_submission", "view": {"type": "modal", "callback_id": f"lbl:rank:{post.id}",
                                                          "private_metadata": "{oops"}, "user": {"id": "U1"}}),
        form_payload({"type": "view_submission", "user": {"id": "U1"},
                      "view": {"type": "modal", "callback_id": f"lbl:rank:{post.id}",
                               "private_metadata": json.dumps({"p": 999})}}),
        form_payload({"type": "something_else"}),
    ]
    for body in bad_payloads:
        status, text, _ = await env.send_raw(body, sign(body))
        assert 400 <= status < 500, (status, text, body[:80])
    cmd = slash_command("x" * 5000)
    assert 400 <= (await env.send_raw(cmd, sign(cmd)))[0] < 500
    raw = "{not json"
    assert (await env.send_raw(raw, sign(raw, content_type="application/json")))[0] == 400
    await env.settle()
    assert count(env, Vote) == 0 and count(env, Delivery) == 0 and count(env, AuditLog) == audits
    assert not env.fake.ok_calls("chat.postEphemeral") and not env.fake.ok_calls("views.open")


async def test_tokens_never_reach_logs(slack_env, caplog):
    env = slack_env
    caplog.set_level(logging.DEBUG)
    for name in ("labelbot", "slack_bolt", "slack_sdk", "aiohttp"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        post, _ = await post_one(env)
        await env.interact(block_actions(f"lbl:vote:{post.id}:A", user="U1", message_ts=post.message_id))
        await env.interact(block_actions(f"lbl:fix:{post.id}", user="U1", message_ts=post.message_id))
        body = form_payload(block_actions(f"lbl:vote:{post.id}:B", user="U1"))
        await env.send_raw(body, sign(body, secret="forged"))
        env.fake.fail_next("chat.postEphemeral", 1, status=500)
        await env.interact(block_actions(f"lbl:skip:{post.id}", user="U2", message_ts=post.message_id))
        await env.settle()
    finally:
        for name in ("labelbot", "slack_bolt", "slack_sdk", "aiohttp"):
            logging.getLogger(name).setLevel(logging.NOTSET)
    assert "Sending a request" in caplog.text  # the SDK's debug logging really ran
    assert TOKEN not in caplog.text and SECRET not in caplog.text
    assert repr(env.settings).count(TOKEN) == 0


async def test_url_verification_and_unsigned_challenge(slack_env):
    env = slack_env
    body = json.dumps({"token": "legacy", "challenge": "challenge-abc123", "type": "url_verification"})
    status, text, _ = await env.send_raw(body, sign(body, content_type="application/json"))
    assert status == 200 and "challenge-abc123" in text
    status, _, _ = await env.send_raw(body, {"Content-Type": "application/json"})
    assert status == 401
