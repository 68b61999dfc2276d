"""Discord bot benchmark: interaction -> first response latency and durable votes/s.

The bot runs as a real `labelbot serve discord` subprocess (its own event loop, SQLite WAL with
synchronous=FULL by default) against the fake Discord of tests/discord (REST + gateway) in this
process. N concurrent clickers each click a vote button, wait for the private confirmation (sent only
after the vote committed), then click the next item. Measured at the fake Discord:

- first response: INTERACTION_CREATE frame sent -> the bot's interaction callback received;
- confirmation: frame sent -> ephemeral follow-up received (vote durable);
- durable votes/s: confirmed votes / wall time, checked against the vote rows in the database.

Run: python bench/bench_discord.py [--clickers 8 32] [--votes-per-clicker 60] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from bot.core.events import Actor  # noqa: E402
from bot.core.importer import validate_row  # noqa: E402
from bot.core.service import CampaignSpec, LabelingService  # noqa: E402
from storage.db import Database, upgrade  # noqa: E402
from tests.discord.fake_discord import FakeDiscord  # noqa: E402

ADMIN = 900000000000000001
CLI = Actor("cli", "", "bench")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(url: str, items: int) -> None:
    upgrade(url)
    db = Database(url)
    svc = LabelingService(db, [])
    with db.write() as s:  # a fresh run: empty tables (PostgreSQL may be reused)
        for table in ("vote", "delivery", "auditlog", "skip", "flag", "correction", "comment", "link_code", "post",
                      "response", "item", "guideline", "exportrecord", "campaign_channel", "campaign",
                      "annotator", "role"):
            s.execute(text(f"DELETE FROM {table}"))
    svc.create_campaign(CampaignSpec("bench", overlap=50, channels=(("discord", "200000000000000001"),),
                                     gold_rate=0.0), CLI)
    rows = [{"id": f"b-{i}", "prompt": f"Question {i}?", "responses": [
        {"model": "m1", "text": f"Answer one to {i}."}, {"model": "m2", "text": f"Answer two to {i}."}]}
        for i in range(items)]
    svc.import_items("bench", [validate_row(r, n)[0] for n, r in enumerate(rows, 1)], CLI)
    db.dispose()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), to see which side is busy."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def vote_rows(url: str) -> int:
    db = Database(url)
    try:
        with db.read() as s:
            return int(s.execute(text("SELECT COUNT(*) FROM vote")).scalar_one())
    finally:
        db.dispose()


async def run_round(fake: FakeDiscord, posts: list[tuple[int, int]], clickers: int, per_clicker: int,
                    user_base: int) -> dict[str, float]:
    first: list[float] = []
    confirm: list[float] = []
    errors = 0

    async def clicker(c: int) -> None:
        nonlocal errors
        user = user_base + c
        for k in range(per_clicker):
            mid, pid = posts[(c * 7 + k) % len(posts)]
            inter = await fake.click(mid, f"lbl:vote:{pid}:{'A' if (c + k) % 2 else 'B'}", user)
            try:
                await asyncio.wait_for(inter.followed_up.wait(), 10)
            except TimeoutError:
                errors += 1
                continue
            first.append((inter.first_response_at - inter.dispatched_at) * 1000)
            confirm.append((time.perf_counter() - inter.dispatched_at) * 1000)
            if "recorded" not in inter.followups[0]["content"]:
                errors += 1

    edits_before = sum(len(i.original_edits) for i in fake.interactions.values()) + len(fake.channel_edits)
    started = time.perf_counter()
    await asyncio.gather(*[clicker(c) for c in range(clickers)])
    wall = time.perf_counter() - started
    edits = sum(len(i.original_edits) for i in fake.interactions.values()) + len(fake.channel_edits) - edits_before
    return {
        "clickers": clickers, "votes": len(confirm), "errors": errors, "wall_s": round(wall, 3), "edits": edits,
        "votes_per_s": round(len(confirm) / wall, 1),
        "first_response_p50_ms": round(statistics.median(first), 2),
        "first_response_p99_ms": round(pct(first, 0.99), 2),
        "first_response_max_ms": round(max(first), 2),
        "confirmed_p50_ms": round(statistics.median(confirm), 2), "confirmed_p99_ms": round(pct(confirm, 0.99), 2),
    }


async def main(args: argparse.Namespace) -> list[dict[str, float]]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-discord-"))
    url = args.database_url or f"sqlite:///{tmp / 'bench.db'}"
    prepare(url, args.items)
    fake = await FakeDiscord().start()
    env = {**os.environ, "DATABASE_URL": url, "DISCORD_BOT_TOKEN": fake.token, "DISCORD_API_URL": fake.api_url,
           "DISCORD_GATEWAY_URL": fake.gateway_url, "LABELBOT_ADMINS": f"discord:{ADMIN}",
           "LABELBOT_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
    profile = ["-m", "cProfile", "-o", args.profile] if args.profile else []
    proc = subprocess.Popen([sys.executable, *profile, "-m", "bot.cli", "serve", "discord", "--port", str(free_port())],
                            cwd=tmp, env=env)
    results = []
    try:
        await asyncio.wait_for(fake.ready.wait(), 30)
        await fake.wait_for(lambda: fake.commands, timeout=30)
        await asyncio.sleep(0.5)
        for _ in range(0, args.items, 50):
            inter = await fake.slash(["post"], {"n": min(50, args.items)}, ADMIN)
            await fake.wait_for(lambda inter=inter: len(inter.followups) >= 2, timeout=120)
        posts = []
        for msg in fake.channel_messages():
            ids = [c["custom_id"] for row in msg["components"] for c in row["components"]]
            posts.append((int(msg["id"]), int(ids[0].split(":")[2])))
        print(f"posted {len(posts)} items; database {url.split(':')[0]}", flush=True)
        await run_round(fake, posts, 4, 10, 500000000000000000)  # warm-up
        before = vote_rows(url)
        for n, clickers in enumerate(args.clickers):
            bot_cpu, own_cpu = cpu_seconds(proc.pid), time.process_time()
            res = await run_round(fake, posts, clickers, args.votes_per_clicker, 300000000000000000 + n * 1000)
            res["bot_cpu_s"] = round(cpu_seconds(proc.pid) - bot_cpu, 2)
            res["fake_cpu_s"] = round(time.process_time() - own_cpu, 2)
            after = vote_rows(url)
            res["durable_rows"] = after - before
            before = after
            results.append(res)
            print(json.dumps(res), flush=True)
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 120)  # the fake keeps answering while the bot shuts down
        await fake.stop()
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clickers", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--votes-per-clicker", type=int, default=60)
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--profile", default=None, help="write a cProfile of the bot process to this file")
    out = asyncio.run(main(parser.parse_args()))
    ok = all(r["first_response_p99_ms"] <= 50 and r["first_response_max_ms"] <= 500 and r["votes_per_s"] >= 300
             and r["durable_rows"] == r["votes"] and not r["errors"] for r in out)
    print("targets (p99 first response <= 50 ms, max <= 500 ms, >= 300 votes/s, every confirmed vote durable):",
          "met" if ok else "NOT met")
