"""Export benchmark: N votes over M items (default 1,000,000 over 300,000), every format.

Builds a SQLite database once (cached; `--rebuild` to redo), then exports each format in a fresh
child process and reports wall time, rows/s, and memory: the child's peak RSS and how much RSS grew
between a quarter of the way through and the end (flat memory = close to zero growth).

    python bench/bench_export.py                       # 1M votes / 300k items, all formats
    python bench/bench_export.py --votes 100000 --items 30000 --formats trl,votes
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build(path: Path, items: int, votes: int, corrections: int, seed: int = 0) -> None:
    """Fill a migrated SQLite database with one campaign, items, two responses each, votes, corrections."""
    from storage.db import upgrade

    if path.exists():
        path.unlink()
    upgrade(f"sqlite:///{path}")
    rng = random.Random(seed)
    now = "2026-01-01 00:00:00.000000"
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("INSERT INTO campaign (id, name, guidelines, guideline_version, overlap, criteria, status, reveal, "
                "max_extra_votes, agreement_threshold, gold_rate, settings, created_at) VALUES "
                "(1, 'bench', '', 1, 3, '[]', 'active', 'quorum', 2, 0.6, 0.0, '{}', ?)", (now,))
    annotators = 2000
    con.executemany("INSERT INTO annotator (id, platform, workspace, user_id, created_at) "
                    "VALUES (?, 'slack', 'T', ?, ?)", [(a, f"U{a}", now) for a in range(1, annotators + 1)])
    per_item = [votes // items] * items
    for i in rng.sample(range(items), votes - sum(per_item)):
        per_item[i] += 1
    con.executemany(
        "INSERT INTO item (id, campaign_id, external_id, prompt, meta, gold, n_responses, vote_count, extra_votes, "
        "status, created_at) VALUES (?, 1, ?, ?, '{}', NULL, 2, ?, 0, 'complete', ?)",
        ((i + 1, f"item-{i}", json.dumps(f"Question {i}: explain topic {i % 977} in a few sentences, please."),
          per_item[i], now) for i in range(items)))
    con.executemany(
        "INSERT INTO response (item_id, position, model, text) VALUES (?, ?, ?, ?)",
        ((i + 1, p, f"model-{(i + p) % 5}", f"Answer {p} to question {i}: " + "lorem ipsum dolor sit amet " * 8)
         for i in range(items) for p in range(2)))
    order = [i for i in range(items) for _ in range(per_item[i])]
    rng.shuffle(order)  # votes arrive interleaved across items, as in a live campaign
    used: dict[int, int] = {}

    def vote_rows():  # type: ignore[no-untyped-def]
        for item in order:
            k = used.get(item, 0)
            used[item] = k + 1
            ann = (item * 7 + k * 131) % annotators + 1
            r = rng.random()
            if r < 0.1:
                outcome, winner, ranking = "tie", None, None
            elif r < 0.15:
                outcome, winner, ranking = "both_bad", None, None
            else:
                winner = 0 if rng.random() < 0.65 else 1
                outcome, ranking = "win", json.dumps([winner, 1 - winner])
            yield (item + 1, ann, outcome, ranking, winner, "AB"[winner or 0], now, now)

    con.executemany(
        "INSERT INTO vote (item_id, annotator_id, outcome, ranking, winner, shown_choice, guideline_version, "
        "is_gold_check, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 1, 0, ?, ?)", vote_rows())
    con.executemany(
        "INSERT INTO correction (item_id, annotator_id, position, text, guideline_version, created_at) "
        "VALUES (?, ?, ?, ?, 1, ?)",
        ((i + 1, (i % annotators) + 1, i % 2, f"A better answer to question {i}, edited by hand.", now)
         for i in rng.sample(range(items), corrections)))
    con.commit()
    con.execute("ANALYZE")
    con.close()


def _rss_kib() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


def child(db_path: str, fmt: str, out: str, items: int) -> None:
    """Run one export and print a JSON line of measurements."""
    from scheduler.export import export_campaign
    from storage.db import Database

    db = Database(f"sqlite:///{db_path}")
    samples: list[tuple[int, int]] = []  # (items done, rss KiB)
    done = [0]
    stop = threading.Event()

    def sampler() -> None:
        while not stop.wait(0.1):
            samples.append((done[0], _rss_kib()))

    base = _rss_kib()
    threading.Thread(target=sampler, daemon=True).start()
    t0 = time.perf_counter()
    res = export_campaign(db, "bench", fmt, Path(out), progress=lambda n: done.__setitem__(0, n))
    wall = time.perf_counter() - t0
    stop.set()
    quarter = [rss for n, rss in samples if n >= items // 4]
    growth = (max(s[1] for s in samples) - quarter[0]) if quarter else 0
    print(json.dumps({"format": fmt, "rows": res.rows, "seconds": round(wall, 2),
                      "rows_per_s": round(res.rows / wall) if wall else None,
                      "input_votes_per_s": round(res.manifest["counts"].get("votes_read", 0) / wall) if wall else None,
                      "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "rss_before_mib": round(base / 1024, 1),
                      "rss_growth_after_25pct_mib": round(growth / 1024, 1)}))


def main() -> None:
    from scheduler.export import FORMATS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--votes", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=300_000)
    ap.add_argument("--corrections", type=int, default=30_000)
    ap.add_argument("--db", type=Path, default=Path("/tmp/labelbot-bench/export.db"))
    ap.add_argument("--out", type=Path, default=Path("/tmp/labelbot-bench/exports"))
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--child", nargs=2, metavar=("FORMAT", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(str(args.db), args.child[0], args.child[1], args.items)
        return
    args.db.parent.mkdir(parents=True, exist_ok=True)
    stamp = args.db.with_suffix(".json")
    shape = {"votes": args.votes, "items": args.items, "corrections": args.corrections}
    if args.rebuild or not args.db.exists() or not stamp.exists() or json.loads(stamp.read_text()) != shape:
        t0 = time.perf_counter()
        build(args.db, args.items, args.votes, args.corrections)
        stamp.write_text(json.dumps(shape))
        print(f"built {args.db} ({args.items} items, {args.votes} votes) in {time.perf_counter() - t0:.1f}s",
              file=sys.stderr)
    import shutil

    shutil.rmtree(args.out, ignore_errors=True)
    results = []
    for fmt in args.formats.split(","):
        proc = subprocess.run([sys.executable, __file__, "--db", str(args.db), "--items", str(args.items),
                               "--child", fmt, str(args.out / fmt)], capture_output=True, text=True, check=True)
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(row)
        print(json.dumps(row), flush=True)
    print("\n| format | rows | seconds | rows/s | votes read/s | peak RSS MiB | RSS growth after 25% MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['format']} | {r['rows']:,} | {r['seconds']} | {r['rows_per_s']:,} | "
              f"{r['input_votes_per_s'] or 0:,} | {r['peak_rss_mib']} | {r['rss_growth_after_25pct_mib']} |")


if __name__ == "__main__":
    main()
