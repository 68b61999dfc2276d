"""Bradley–Terry leaderboard with 100 bootstrap rounds on 1,000,000 votes among 50 models.

Measures the path `labelbot stats` takes: battles aggregated in SQL from the vote table, then the
L-BFGS fit and 100 multinomial bootstrap refits; and the fit alone from an in-memory battle list.

    python bench/bench_bt.py [--votes 1000000] [--models 50]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from seed import seed

from bot.core.aggregate import bradley_terry
from bot.core.stats import campaign_battles, compute_leaderboard
from storage.db import Database


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--votes", type=int, default=1_000_000)
    ap.add_argument("--models", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    url = f"sqlite:///{tempfile.mkdtemp()}/bt.db"
    t0 = time.perf_counter()
    strength = seed(url, items=args.votes // 3, votes=args.votes, models=args.models)
    print(f"seeded {args.votes} votes in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    db = Database(url)
    load, fit, total = [], [], []
    corr = None
    for _ in range(args.repeats):
        with db.read() as s:
            t0 = time.perf_counter()
            battles = campaign_battles(s, 1)
            t1 = time.perf_counter()
            res = bradley_terry(battles, rounds=100)
            t2 = time.perf_counter()
        load.append(t1 - t0)
        fit.append(t2 - t1)
        total.append(t2 - t0)
        est = np.array([res.scores[res.models.index(f"model-{m:02d}")] for m in range(args.models)])
        corr = float(np.corrcoef(est, strength)[0, 1])
    with db.read() as s:
        t0 = time.perf_counter()
        board = compute_leaderboard(s, 1, bootstrap_rounds=100)
        end_to_end = time.perf_counter() - t0
    out = {
        "votes": args.votes, "models": args.models, "unique_triples": len(battles),
        "sql_aggregate_s_median": round(statistics.median(load), 3),
        "fit_plus_100_bootstrap_s_median": round(statistics.median(fit), 3),
        "total_s_median": round(statistics.median(total), 3),
        "compute_leaderboard_s": round(end_to_end, 3),
        "corr_with_true_strength": round(corr, 4),
        "leaderboard_rows": len(board),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
