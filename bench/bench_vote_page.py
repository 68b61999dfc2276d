"""Browser voting page: votes per second through HTTP (the real `run_server`, SQLite), against the raw floor
of the same votes cast straight into `LabelingService.cast_vote` in the same run.

Each simulated voter opens their invite link, then loops: GET /vote/<campaign> (deals the next item),
GET the item page, POST a vote (CSRF + Origin checked), GET the page the redirect lands on. So one
"page vote" is four HTTP requests and the full render, as in a browser; `--voters` run concurrently.

    python bench/bench_vote_page.py [--items 600] [--voters 8] [--votes-each 50]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp

from bot.config import Settings
from bot.core.events import Actor, TaskRequested, VoteCast
from bot.core.importer import validate_row
from bot.core.service import CampaignSpec, LabelingService
from bot.server import run_server
from storage.db import Database, upgrade

CLI = Actor("cli", "", "bench")
FIELD = re.compile(r'<input type="hidden" name="(\w+)" value="([^"]*)">')


def setup(url: str, campaign: str, items: int) -> LabelingService:
    service = LabelingService(Database(url), seed=1)
    service.create_campaign(CampaignSpec(campaign, overlap=50, gold_rate=0.0), CLI)
    rows = [{"id": f"{campaign}-{i}", "prompt": f"Question {i}: " + "why? " * 40,
             "responses": [{"model": f"m{r}", "text": f"Answer {r}. " + "because " * 60} for r in range(2)]}
            for i in range(items)]
    service.import_items(campaign, [validate_row(r, n)[0] for n, r in enumerate(rows, 1)], CLI)
    return service


async def voter(base: str, link: str, votes: int, latencies: list[float]) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        resp = await http.get(link)
        page, item = await resp.text(), str(resp.url)
        for _ in range(votes):
            t = time.perf_counter()
            fields = dict(FIELD.findall(page.split('id="vote"', 1)[1].split("</form>", 1)[0]))
            async with http.post(item + "/vote", data={**fields, "choice": "A"}, headers={"Origin": base}) as r:
                assert r.status == 200 and "Vote recorded" in await r.text()
            async with http.get(f"{base}/vote/bench") as r:
                page, item = await r.text(), str(r.url)
            latencies.append((time.perf_counter() - t) * 1000)


async def page_votes(url: str, service: LabelingService, voters: int, each: int) -> tuple[float, list[float]]:
    port = 8790
    base = f"http://127.0.0.1:{port}"
    links = [service.create_invite(CLI, "bench", f"voter {v}", base_url=base).url for v in range(voters)]
    stop, ready = asyncio.Event(), asyncio.Event()
    cfg = Settings(_env_file=None, database_url=url, labelbot_log_level="WARNING")
    task = asyncio.create_task(run_server(cfg, {"web"}, "127.0.0.1", port, stop_event=stop,
                                          started=lambda *_: ready.set()))
    await ready.wait()
    latencies: list[float] = []
    t = time.perf_counter()
    await asyncio.gather(*(voter(base, link, each, latencies) for link in links))
    elapsed = time.perf_counter() - t
    stop.set()
    await task
    return voters * each / elapsed, latencies


def floor_votes(service: LabelingService, voters: int, each: int) -> float:
    """The same number of votes, dealt and cast in-process (next_task + cast_vote), one voter after another."""
    t = time.perf_counter()
    for v in range(voters):
        actor = Actor("web", "floor", f"v{v}")
        for _ in range(each):
            view = service.next_task(TaskRequested(actor, "floor", channel=actor.user_id))
            service.cast_vote(VoteCast(actor, view.post_id, "A"))
    return voters * each / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=600)
    ap.add_argument("--voters", type=int, default=8)
    ap.add_argument("--votes-each", type=int, default=50)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        upgrade(url)
        service = setup(url, "bench", args.items)
        setup(url, "floor", args.items)
        floor = floor_votes(service, args.voters, args.votes_each)
        rate, lat = asyncio.run(page_votes(url, service, args.voters, args.votes_each))
    lat.sort()
    p50, p95 = statistics.median(lat), lat[int(len(lat) * 0.95) - 1]
    print(f"page votes: {rate:.0f}/s with {args.voters} voters ({args.voters * args.votes_each} votes; per vote "
          f"POST + next page p50 {p50:.1f} ms, p95 {p95:.1f} ms)")
    print(f"floor (next_task + cast_vote in-process): {floor:.0f}/s; page / floor = {rate / floor:.2f}")


if __name__ == "__main__":
    main()
