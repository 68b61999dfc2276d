"""Posting: `labelbot post --platform slack`, 429 retries, pacing, long text in the thread, media."""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
from pathlib import Path

from sqlmodel import select

from bot.core.importer import validate_row
from bot.core.service import CampaignSpec
from storage.models import Post, Vote
from tests.conftest import CLI
from tests.slack.payloads import SECRET, TOKEN, block_actions
from tests.slack.test_slack_voting import post_one

ROOT = Path(__file__).resolve().parents[2]


async def test_cli_post_retries_429_and_posts_once(db_url, campaign, fake, tmp_path):
    fake.fail_next("chat.postMessage", 1, retry_after=1)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": db_url, "SLACK_BOT_TOKEN": TOKEN,
           "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": fake.api_url, "SLACK_APP_TOKEN": "",
           "DISCORD_BOT_TOKEN": ""}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "post", "--campaign", campaign, "--limit", "1", "--platform", "slack",
        cwd=str(tmp_path), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert "Posted 1 item(s)" in out.decode()
    attempts = fake.all_calls("chat.postMessage")
    assert [c.status for c in attempts] == [429, 200]
    assert attempts[1].at - attempts[0].at >= 0.9, "Retry-After must be honoured"
    assert len(fake.ok_calls("chat.postMessage")) == 1
    assert TOKEN not in out.decode() + err.decode()
    from storage.db import Database

    db = Database(db_url)
    with db.read() as s:
        posts = list(s.exec(select(Post)))
    db.dispose()
    assert len(posts) == 1 and posts[0].message_id == attempts[1].result["ts"]


async def test_rate_limited_confirmation_arrives_once(slack_env):
    env = slack_env
    post, _ = await post_one(env)
    env.fake.fail_next("chat.postEphemeral", 2, retry_after=1)
    await env.interact(block_actions(f"lbl:vote:{post.id}:A", user="U1", message_ts=post.message_id))
    await env.settle()
    assert [c.status for c in env.fake.all_calls("chat.postEphemeral")] == [429, 429, 200]
    with env.db.read() as s:
        assert len(list(s.exec(select(Vote)))) == 1


async def test_failed_post_is_discarded_and_posted_again_later(slack_env):
    env = slack_env
    env.fake.fail_next("chat.postMessage", 1, status=200, error="not_in_channel")
    assert await env.handlers.poster.post_items("demo", 1) == 0
    with env.db.read() as s:
        assert not list(s.exec(select(Post)))
    assert await env.handlers.poster.post_items("demo", 1) == 1


async def test_posting_is_paced_per_channel(slack_env, monkeypatch):
    from bot.adapters.slack import poster

    env = slack_env
    monkeypatch.setattr(poster, "CHANNEL_INTERVAL_S", 0.25)
    assert await env.handlers.poster.post_items("demo", 3) == 3
    times = [c.at for c in env.fake.all_calls("chat.postMessage")]
    assert len(times) == 3 and all(b - a >= 0.24 for a, b in itertools.pairwise(times))


async def test_long_text_goes_to_thread_and_media_render(slack_env, service, tmp_path):
    env = slack_env
    audio = tmp_path / "answer.wav"
    audio.write_bytes(b"RIFF....WAVEfmt fake audio bytes")
    long_answer = "".join(f"Paragraph {i}: " + "lorem ipsum dolor sit amet " * 30 + "\n\n" for i in range(30))
    prompt = "Explain everything. " * 400
    row = {"id": "long-1", "prompt": prompt, "responses": [
        {"model": "big", "text": long_answer, "audio": str(audio)},
        {"model": "small", "text": "Short answer.", "image": "https://example.com/cat.png"}]}
    service.create_campaign(CampaignSpec("media", overlap=3, channels=(("slack", "C555"),), gold_rate=0.0), CLI)
    service.import_items("media", [validate_row(row, 1)[0]], CLI)
    assert await env.handlers.poster.post_items("media", 1) == 1

    main, *thread = env.fake.ok_calls("chat.postMessage")
    assert main["channel"] == "C555" and "thread_ts" not in main  # accepted by the fake's Block Kit checks
    text = str(main["blocks"])
    assert "continues in this message's thread" in text
    assert {"type": "image", "image_url": "https://example.com/cat.png"}.items() <= next(
        b for b in main["blocks"] if b["type"] == "image").items()
    with env.db.read() as s:
        post = s.exec(select(Post)).one()
    assert all(m["thread_ts"] == post.message_id for m in thread)
    letter = "A" if post.permutation[0] == 0 else "B"
    sections = [b["text"]["text"] for m in thread for b in m["blocks"]
                if b["type"] == "section" and b["text"]["type"] == "plain_text"]
    headers = [m["blocks"][0]["text"]["text"] for m in thread]
    assert any(h.startswith(f"*Response {letter} — full text") for h in headers)
    assert long_answer in "".join(sections)  # nothing cut: the whole answer is in the thread
    assert prompt in "".join(sections)

    await env.fake.wait_for(lambda: env.fake.ok_calls("files.completeUploadExternal"))
    done = env.fake.ok_calls("files.completeUploadExternal")[0]
    assert done["thread_ts"] == post.message_id and done["channel_id"] == "C555"
    assert audio.read_bytes() in env.fake.uploads.values()
