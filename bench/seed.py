"""Fast synthetic campaign data for benchmarks: items from models of hidden strengths and noisy votes.

Rows go in with executemany on the migrated schema (not through the core: the core's vote path is
measured separately by bench_votes.py).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine

from storage.db import upgrade


def seed(url: str, *, items: int, votes: int, models: int = 50, annotators: int = 2000, seed: int = 0,
         text_chars: int = 200, campaign: str = "bench", overlap: int = 3) -> np.ndarray:
    """Create a campaign with `items` two-response items and `votes` votes; returns the true strengths."""
    upgrade(url)
    rng = np.random.default_rng(seed)
    strength = rng.normal(0, 1, models)
    now = datetime.now(UTC).isoformat(sep=" ")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO campaign (name, guidelines, guideline_version, overlap, criteria, status, reveal, "
            "max_extra_votes, agreement_threshold, gold_rate, settings, created_at) "
            "VALUES (%s, '', 1, %s, '[]', 'active', 'quorum', 0, 0.0, 0.0, '{}', %s)"
            if engine.dialect.name == "postgresql" else
            "INSERT INTO campaign (name, guidelines, guideline_version, overlap, criteria, status, reveal, "
            "max_extra_votes, agreement_threshold, gold_rate, settings, created_at) "
            "VALUES (?, '', 1, ?, '[]', 'active', 'quorum', 0, 0.0, 0.0, '{}', ?)",
            (campaign, overlap, now),
        )
        camp_id = conn.exec_driver_sql("SELECT max(id) FROM campaign").scalar()
        base_item = conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM item").scalar()
        ph = "%s" if engine.dialect.name == "postgresql" else "?"
        pairs = np.array([rng.choice(models, 2, replace=False) for _ in range(items)])
        per_item = np.full(items, votes // items)
        per_item[: votes - per_item.sum()] += 1
        filler = "x" * text_chars
        item_rows = []
        resp_rows = []
        for i in range(items):
            iid = base_item + i + 1
            status = "complete" if per_item[i] >= overlap else "open"
            item_rows.append((iid, camp_id, f"i{i}", json.dumps(f"Prompt {i}: {filler}"), "{}", 2,
                              int(per_item[i]), 0, status, now))
            for pos in range(2):
                resp_rows.append((iid, pos, f"model-{pairs[i, pos]:02d}", f"Response {pos} of {i}: {filler}"))
        conn.exec_driver_sql(
            f"INSERT INTO item (id, campaign_id, external_id, prompt, meta, n_responses, vote_count, extra_votes, "
            f"status, created_at) VALUES ({', '.join([ph] * 10)})", item_rows)
        conn.exec_driver_sql(f"INSERT INTO response (item_id, position, model, text) VALUES ({ph}, {ph}, {ph}, {ph})",
                             resp_rows)
        conn.exec_driver_sql(
            "INSERT INTO annotator (id, platform, workspace, user_id, created_at) "
            f"VALUES ({ph}, 'slack', 'T', {ph}, {ph}) ON CONFLICT DO NOTHING",
            [(a + 1, f"U{a}", now) for a in range(annotators)])
        vote_rows = []
        for i in range(items):
            a, b = pairs[i]
            p_a = 1 / (1 + np.exp(-(strength[a] - strength[b])))
            users = rng.choice(annotators, int(per_item[i]), replace=False) + 1
            draws = rng.random(len(users))
            for u, r in zip(users, draws, strict=True):
                if abs(r - p_a) < 0.05:
                    outcome, ranking, winner = "tie", None, None
                elif r < p_a:
                    outcome, ranking, winner = "win", "[0, 1]", 0
                else:
                    outcome, ranking, winner = "win", "[1, 0]", 1
                vote_rows.append((base_item + i + 1, int(u), outcome, ranking, winner, "A", 1, False, now, now))
            if len(vote_rows) >= 200_000:
                _insert_votes(conn, vote_rows, ph)
                vote_rows = []
        _insert_votes(conn, vote_rows, ph)
    engine.dispose()
    return strength


def _insert_votes(conn, rows, ph) -> None:  # type: ignore[no-untyped-def]
    if rows:
        conn.exec_driver_sql(
            "INSERT INTO vote (item_id, annotator_id, outcome, ranking, winner, shown_choice, guideline_version, "
            f"is_gold_check, created_at, updated_at) VALUES ({', '.join([ph] * 10)})", rows)
