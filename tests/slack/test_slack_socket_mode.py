"""Socket Mode is selected when SLACK_APP_TOKEN is set: it connects to the (fake) websocket, acks
envelopes and records votes through the same listeners; /healthz reports the Slack component."""

from __future__ import annotations

import asyncio

import aiohttp
from sqlmodel import select

from bot.adapters.slack import poster
from storage.models import Post, Vote
from tests.slack.conftest import slack_settings, start_server
from tests.slack.payloads import APP_TOKEN, block_actions, message_event


async def test_socket_mode_connects_acks_and_votes(db_url, campaign, fake, tmp_path, monkeypatch):
    monkeypatch.setattr(poster, "CHANNEL_INTERVAL_S", 0.0)
    settings = slack_settings(db_url, fake, tmp_path, slack_app_token=APP_TOKEN)
    ctx, port, stop, task = await start_server(settings)
    try:
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

        assert isinstance(ctx.extras["slack_socket"], AsyncSocketModeHandler)
        await fake.wait_for(lambda: fake.socket_connected)
        assert fake.ok_calls("apps.connections.open")
        handlers = ctx.extras["slack"]
        assert await handlers.poster.post_items("demo", 1) == 1
        with ctx.db.read() as s:
            post = s.exec(select(Post)).one()
        await fake.socket_send({"envelope_id": "env-1", "type": "interactive", "accepts_response_payload": False,
                                "payload": block_actions(f"lbl:vote:{post.id}:B", user="U1",
                                                         message_ts=post.message_id)})
        # an Events API redelivery over the socket is deduplicated by event_id as well
        event = message_event("comment via socket", user="U2", thread_ts=post.message_id, ts="1800000001.000100",
                              event_id="EvSOCKET1")
        for n, retry in enumerate((None, 1)):
            await fake.socket_send({"envelope_id": f"env-ev-{n}", "type": "events_api", "payload": event,
                                    "accepts_response_payload": False, "retry_attempt": retry or 0,
                                    "retry_reason": "timeout" if retry else ""})
        await fake.wait_for(lambda: {"env-1", "env-ev-0", "env-ev-1"} <= {
            m.get("envelope_id") for m in fake.socket_received})
        await handlers.drain()
        with ctx.db.read() as s:
            rows = list(s.exec(select(Vote)))
            from storage.models import Comment

            comments = list(s.exec(select(Comment)))
        assert len(rows) == 1 and rows[0].shown_choice == "B"
        assert len(comments) == 1
        assert "Vote recorded: B better" in fake.ok_calls("chat.postEphemeral")[-1]["text"]

        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as resp:
            health = await resp.json()
        assert health["checks"]["slack"] is True
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert not fake.socket_connected


async def test_without_app_token_http_only_and_bad_token_does_not_block(db_url, campaign, fake, tmp_path,
                                                                         monkeypatch):
    from bot.adapters.slack import app as slack_app

    settings = slack_settings(db_url, fake, tmp_path, slack_app_token="")
    assert slack_app.socket_mode_handler(None, settings, None) is None  # empty token: HTTP mode only
    monkeypatch.setattr(slack_app, "SOCKET_CONNECT_WAIT_S", 0.5)
    ctx, port, stop, task = await start_server(slack_settings(db_url, fake, tmp_path,
                                                              slack_app_token="xapp-wrong"))
    try:
        assert ctx.extras["slack_socket"] is not None and not fake.socket_connected
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as resp:
            assert resp.status == 503 and (await resp.json())["checks"]["slack"] is False
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
