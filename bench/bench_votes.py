"""Durable votes/s through the core (LabelingService.cast_vote), single writer and concurrent writers.

Every vote is a full core call: delivery-id claim, item lock, annotator upsert, vote row, audit row,
quorum check, commit (SQLite WAL with synchronous=FULL; PostgreSQL synchronous_commit=on), then the
post view the adapter would render. Reports votes/s, p50/p99/max latency and lock errors.

    python bench/bench_votes.py                       # SQLite in a temp dir
    python bench/bench_votes.py --pg postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bot.core.events import Actor, VoteCast
from bot.core.importer import validate_row
from bot.core.service import CampaignSpec, LabelingService
from storage.db import Database, upgrade

CLI = Actor("cli", "", "bench")


def setup(url: str, items: int) -> tuple[LabelingService, list[int]]:
    upgrade(url)
    svc = LabelingService(Database(url), seed=1)
    svc.create_campaign(CampaignSpec("bench", overlap=50, gold_rate=0.0), CLI)
    rows = [{"id": f"i{i}", "prompt": f"prompt {i}", "responses": [{"model": "a", "text": "x" * 200},
                                                                  {"model": "b", "text": "y" * 200}]}
            for i in range(items)]
    svc.import_items("bench", [validate_row(r, n)[0] for n, r in enumerate(rows)], CLI)
    posts = [v.post_id for v in svc.prepare_posts("bench", "slack", "C", items)]
    return svc, posts


def run(svc: LabelingService, posts: list[int], writers: int, votes_per_writer: int) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    start_gate = threading.Barrier(writers + 1)

    def writer(w: int) -> None:
        mine: list[float] = []
        start_gate.wait()
        for i in range(votes_per_writer):
            post = posts[(w * votes_per_writer + i) % len(posts)]
            user = f"U{w}-{(w * votes_per_writer + i) // len(posts)}"
            t0 = time.perf_counter()
            try:
                svc.cast_vote(VoteCast(Actor("slack", "T1", user), post, "A" if i % 3 else "tie",
                                       delivery_id=uuid.uuid4().hex))
            except Exception as exc:
                with lock:
                    errors.append(repr(exc)[:200])
            mine.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    start_gate.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    latencies.sort()
    n = len(latencies)
    return {
        "writers": writers,
        "votes": n - len(errors),
        "seconds": round(elapsed, 3),
        "votes_per_s": round((n - len(errors)) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(n * 0.99) - 1] * 1000, 2),
        "max_ms": round(latencies[-1] * 1000, 2),
        "errors": len(errors),
        "locked_errors": sum("locked" in e for e in errors),
    }


def fresh_pg(base: str) -> tuple[str, str]:
    url = make_url(base.replace("postgresql://", "postgresql+psycopg://", 1))
    name = f"labelbot_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False), name


def drop_pg(base: str, name: str) -> None:
    url = make_url(base.replace("postgresql://", "postgresql+psycopg://", 1))
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pg", help="PostgreSQL server URL (a temporary database is created on it)")
    ap.add_argument("--votes", type=int, default=4000, help="votes per configuration")
    ap.add_argument("--items", type=int, default=2000)
    args = ap.parse_args()
    results = []
    for backend in ["sqlite"] + (["postgresql"] if args.pg else []):
        for writers in (1, 8):
            tmp = tempfile.mkdtemp()
            pg_name = None
            if backend == "sqlite":
                url = f"sqlite:///{tmp}/bench.db"
            else:
                url, pg_name = fresh_pg(args.pg)
            svc, posts = setup(url, args.items)
            res = {"backend": backend, **run(svc, posts, writers, args.votes // writers)}
            svc.db.dispose()
            if pg_name:
                drop_pg(args.pg, pg_name)
            print(json.dumps(res), flush=True)
            results.append(res)
    print("\n| backend | writers | votes/s | p50 ms | p99 ms | max ms | errors |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['backend']} | {r['writers']} | {r['votes_per_s']} | {r['p50_ms']} | {r['p99_ms']} | "
              f"{r['max_ms']} | {r['errors']} |")


if __name__ == "__main__":
    main()
