"""Dashboard page times over HTTP on a seeded SQLite campaign (the real `run_server`, admin token).

Measures: the campaigns page, a campaign page on first view (stats + quality report computed inline),
with a fresh cache, and after the 10-second cache expired (stale reports served while a thread
recomputes them), the leaderboard PNG, /metrics and /healthz; plus the vote path's hook cost.

    python bench/bench_dashboard.py [--votes 100000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp
from pydantic import SecretStr
from seed import seed

from bot.config import Settings
from bot.server import run_server

TOKEN = "bench-dashboard-token"


async def timed(http: aiohttp.ClientSession, url: str) -> float:
    t = time.perf_counter()
    async with http.get(url, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
        await r.read()
        assert r.status == 200, (url, r.status)
    return (time.perf_counter() - t) * 1000


async def measure(url: str, repeats: int) -> dict[str, float]:
    cfg = Settings(_env_file=None, database_url=url, labelbot_dashboard_token=SecretStr(TOKEN))
    stop, ready = asyncio.Event(), asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_server(cfg, {"web"}, "127.0.0.1", 0, stop_event=stop,
                                          started=lambda _c, port: ready.set_result(port)))
    port = await ready
    base = f"http://127.0.0.1:{port}"
    out: dict[str, list[float]] = {}
    async with aiohttp.ClientSession() as http:
        out["campaign page, first view (reports computed inline; one sample)"] = [
            await timed(http, f"{base}/dashboard/campaigns/bench")]
        for _ in range(repeats):
            out.setdefault("campaign page, fresh cache", []).append(
                await timed(http, f"{base}/dashboard/campaigns/bench"))
            out.setdefault("leaderboard PNG (warm)", []).append(
                await timed(http, f"{base}/dashboard/campaigns/bench/leaderboard.png"))
            out.setdefault("campaigns page", []).append(await timed(http, f"{base}/dashboard"))
            out.setdefault("/metrics", []).append(await timed(http, f"{base}/metrics"))
            out.setdefault("/healthz", []).append(await timed(http, f"{base}/healthz"))
            await asyncio.sleep(10.1)  # the cache expires: the next view is served stale and refreshed behind
            out.setdefault("campaign page, expired cache (stale served, refresh in background)", []).append(
                await timed(http, f"{base}/dashboard/campaigns/bench"))
            await asyncio.sleep(12)  # let that refresh finish
    stop.set()
    await task
    return {k: statistics.median(v) for k, v in out.items()}


def hook_cost(n: int = 200_000) -> float:
    """Per-vote cost of the in-flight tracker plus the metrics observer, in microseconds."""
    from bot import metrics
    from bot.core import hooks

    metrics.install()
    t = time.perf_counter()
    for _ in range(n):
        with hooks.vote_in_flight():
            pass
        hooks.vote_observed("slack", "new")
    return (time.perf_counter() - t) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--votes", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    url = f"sqlite:///{tempfile.mkdtemp()}/dash.db"
    t0 = time.perf_counter()
    seed(url, items=args.votes // 3, votes=args.votes, models=20, annotators=500)
    print(f"seeded {args.votes} votes in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    results = asyncio.run(measure(url, args.repeats))
    print(f"| request ({args.votes:,} votes, {args.votes // 3:,} items, 20 models) | median ms of {args.repeats} |")
    print("|---|---|")
    for name, ms in results.items():
        print(f"| {name} | {ms:.1f} |")
    print(f"| vote hooks (in-flight tracker + metrics counter), per vote | {hook_cost():.2f} µs |")


if __name__ == "__main__":
    main()
