"""Slack ack latency and end-to-end durable votes/s against `labelbot serve slack` on SQLite.

Starts a fake Slack Web API (tests/slack/fake_slack.py) in this process and `labelbot serve slack` as a
subprocess pointed at it (SLACK_API_URL), seeds a campaign whose items are already posted, then runs
N concurrent simulated clickers. Each clicker sends signed `block_actions` payloads (a vote button)
to POST /slack/events one after the other, as fast as the acks come back. Measured: HTTP ack latency
(request sent -> response read) and the end-to-end rate: votes committed in SQLite *and* confirmed to
the voter (chat.postEphemeral received by the fake), from the first click to the last confirmation.

    python bench/bench_slack.py [--clickers 8 32] [--votes 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.core.events import Actor, ItemIn  # noqa: E402
from bot.core.service import CampaignSpec, LabelingService  # noqa: E402
from storage.db import Database, upgrade  # noqa: E402
from tests.slack.fake_slack import FakeSlack  # noqa: E402
from tests.slack.payloads import SECRET, TOKEN, block_actions, form_payload, sign  # noqa: E402

CLI = Actor("cli", "", "bench")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed(url: str, name: str, items: int, channel: str) -> list[int]:
    """A campaign with `items` two-response items, all posted to `channel`; returns the post ids."""
    db = Database(url)
    svc = LabelingService(db, seed=1)
    svc.create_campaign(CampaignSpec(name, overlap=50, channels=(("slack", channel),), gold_rate=0.0), CLI)
    rows = [ItemIn(f"{name}-{i}", f"Question {i}?", [{"model": "m1", "text": f"Answer one {i}."},
                                                      {"model": "m2", "text": f"Answer two {i}."}])
            for i in range(items)]
    svc.import_items(name, rows, CLI)
    posts = []
    for n, view in enumerate(svc.prepare_posts(name, "slack", channel, items)):
        ts = f"{1_600_000_000 + n}.000100"
        svc.attach_message(view.post_id, ts, channel=channel, thread_id=ts)
        posts.append(view.post_id)
    db.dispose()
    return posts


def count_votes(url: str) -> int:
    import sqlite3

    conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30)
    try:
        return conn.execute("SELECT count(*) FROM vote").fetchone()[0]
    finally:
        conn.close()


async def run_clickers(events_url: str, fake: FakeSlack, url: str, posts: list[int], clickers: int, votes: int,
                       prefix: str) -> dict:
    per = votes // clickers
    if per > len(posts):
        raise SystemExit("not enough items for that many votes per clicker")
    base_votes = count_votes(url)
    base_eph = len(fake.ok_calls("chat.postEphemeral"))
    base_updates = len(fake.ok_calls("chat.update"))
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    rng = random.Random(7)

    async def clicker(n: int, http: aiohttp.ClientSession) -> None:
        user = f"{prefix}{n:04d}"
        order = rng.sample(posts, per)
        for post_id in order:
            choice = rng.choice(["A", "B", "tie"])
            body = form_payload(block_actions(f"lbl:vote:{post_id}:{choice}", user=user, channel="CB"))
            headers = sign(body)
            t0 = time.perf_counter()
            async with http.post(events_url, data=body.encode(), headers=headers) as resp:
                await resp.read()
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
            latencies.append(time.perf_counter() - t0)

    connector = aiohttp.TCPConnector(limit=clickers * 2)
    start = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector) as http:
        await asyncio.gather(*(clicker(n, http) for n in range(clickers)))
    acked = time.perf_counter()
    expected = per * clickers
    deadline = time.monotonic() + 300
    while len(fake.ok_calls("chat.postEphemeral")) - base_eph < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    confirmed = time.perf_counter()
    stored = count_votes(url) - base_votes
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    elapsed = confirmed - start
    return {
        "clickers": clickers, "clicks": len(latencies), "statuses": statuses,
        "ack_p50_ms": round(statistics.median(latencies) * 1000, 2), "ack_p99_ms": round(pct(0.99), 2),
        "ack_max_ms": round(latencies[-1] * 1000, 2), "acks_per_s": round(len(latencies) / (acked - start), 1),
        "votes_stored": stored, "votes_expected": expected,
        "confirmations": len(fake.ok_calls("chat.postEphemeral")) - base_eph,
        "end_to_end_s": round(elapsed, 2), "durable_confirmed_votes_per_s": round(expected / elapsed, 1),
        "message_updates": len(fake.ok_calls("chat.update")) - base_updates,
    }


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clickers", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--votes", type=int, default=2000, help="votes per run")
    ap.add_argument("--items", type=int, default=400)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-slack-"))
    url = f"sqlite:///{tmp / 'labelbot.db'}"
    upgrade(url)
    runs = {c: seed(url, f"bench{c}", args.items, f"CB{c}") for c in args.clickers}
    fake = await FakeSlack(TOKEN, validate=False).start()
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": url, "SLACK_BOT_TOKEN": TOKEN,
           "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": fake.api_url, "SLACK_APP_TOKEN": "",
           "DISCORD_BOT_TOKEN": "", "LABELBOT_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING")}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot.cli", "serve", "slack", "--host",
                                                "127.0.0.1", "--port", str(port), cwd=str(tmp), env=env)
    results = []
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        events = f"http://127.0.0.1:{port}/slack/events"
        # warm-up: Bolt's first request calls auth.test; not measured
        async with aiohttp.ClientSession() as http:
            body = form_payload(block_actions("lbl:guide:1", user="UWARM", channel="CB"))
            async with http.post(events, data=body.encode(), headers=sign(body)) as resp:
                await resp.read()
        await asyncio.sleep(0.5)
        for c in args.clickers:
            res = await run_clickers(events, fake, url, runs[c], c, args.votes, f"U{c}x")
            results.append(res)
            print(json.dumps(res), flush=True)
    finally:
        proc.terminate()
        await proc.wait()
        await fake.stop()
    print()
    print("| clickers | clicks | ack p50 ms | ack p99 ms | ack max ms | votes stored / expected | "
          "end-to-end votes/s (committed + confirmed) |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['clickers']} | {r['clicks']} | {r['ack_p50_ms']} | {r['ack_p99_ms']} | {r['ack_max_ms']} | "
              f"{r['votes_stored']} / {r['votes_expected']} | {r['durable_confirmed_votes_per_s']} |")


if __name__ == "__main__":
    asyncio.run(main())
