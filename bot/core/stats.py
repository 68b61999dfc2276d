"""Campaign statistics: progress, agreement and the Bradley–Terry leaderboard."""

from __future__ import annotations

import json
from itertools import groupby
from typing import Any

from bot.core import aggregate
from bot.core.errors import NotFound
from bot.core.replies import CampaignStats, LeaderboardRow
from storage import queries as q
from storage.db import Database
from storage.domain import NEUTRAL_OUTCOMES


def _ranking(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = json.loads(value)
    return tuple(value) if value else None


def campaign_battles(session: Any, campaign_id: int) -> list[tuple[str, str, float, float]]:
    """Unique (model_a, model_b, outcome, count) triples over all votes of a campaign."""
    counts: dict[tuple[str, str, float], float] = {}

    def add(a: str, b: str, y: float, c: float) -> None:
        if a == b:
            return
        if a > b:
            a, b, y = b, a, 1.0 - y
        counts[(a, b, y)] = counts.get((a, b, y), 0.0) + c

    for m0, m1, outcome, winner, c in q.pairwise_battle_counts(session, campaign_id):
        if outcome in NEUTRAL_OUTCOMES:
            add(m0, m1, 0.5, c)
        elif winner is not None:
            add(m0, m1, 1.0 if winner == 0 else 0.0, c)
    multi = list(q.multiway_votes(session, campaign_id))
    if multi:
        models = q.models_by_item(session, sorted({r[0] for r in multi}))
        for item_id, outcome, ranking in multi:
            vote = aggregate.VoteLite(outcome, _ranking(ranking))
            for a, b, y in aggregate.vote_battles(models[item_id], vote):
                add(a, b, y, 1.0)
    return [(a, b, y, c) for (a, b, y), c in counts.items()]


def compute_leaderboard(session: Any, campaign_id: int, *, bootstrap_rounds: int = 100) -> list[LeaderboardRow]:
    battles = campaign_battles(session, campaign_id)
    result = aggregate.bradley_terry(battles, rounds=bootstrap_rounds)
    if result is None:
        return []
    order = sorted(range(len(result.models)), key=lambda i: -result.scores[i])
    rows = []
    for rank, i in enumerate(order, start=1):
        rows.append(LeaderboardRow(result.models[i], round(float(result.scores[i]), 1),
                                   round(float(result.lower[i]), 1), round(float(result.upper[i]), 1),
                                   int(result.battles[i]), rank))
    return rows


def agreement_summary(session: Any, campaign_id: int, n_by_item: dict[int, int] | None = None) -> tuple[
        float | None, float | None, int]:
    """(Krippendorff's alpha, mean per-item agreement, consensus pairs) streamed over the votes."""
    item_labels: list[list[str]] = []
    agreements: list[float] = []
    pairs = 0
    n_by_item = n_by_item or {}
    for item_id, rows in groupby(q.stream_campaign_votes(session, campaign_id), key=lambda r: r[0]):
        votes = [aggregate.VoteLite(outcome, _ranking(ranking)) for _i, outcome, ranking, _v in rows]
        item_labels.append([v.category for v in votes])
        if len(votes) >= 2:
            cons = aggregate.item_consensus(votes, n_by_item.get(item_id, 2))
            agreements.append(cons.agreement)
            pairs += len(cons.pairs)
        elif votes:
            pairs += len(aggregate.item_consensus(votes, n_by_item.get(item_id, 2)).pairs)
    alpha = aggregate.krippendorff_alpha_nominal(item_labels)
    mean = sum(agreements) / len(agreements) if agreements else None
    return alpha, mean, pairs


def compute_stats(db: Database, campaign: str, *, bootstrap_rounds: int = 100) -> CampaignStats:
    from sqlmodel import select

    from storage.models import Item

    with db.read() as s:
        camp = q.campaign_by_name(s, campaign)
        if camp is None:
            raise NotFound(f"No campaign named {campaign!r}.")
        counts = q.campaign_counts(s, camp.id)
        hist = q.votes_per_item_histogram(s, camp.id)
        multi = dict(s.exec(select(Item.id, Item.n_responses).where(Item.campaign_id == camp.id,
                                                                      Item.n_responses > 2)).all())
        alpha, mean_agreement, pairs = agreement_summary(s, camp.id, multi)
        board = compute_leaderboard(s, camp.id, bootstrap_rounds=bootstrap_rounds)
    return CampaignStats(
        campaign=camp.name, status=camp.status, items=counts["items"], complete_items=counts["complete_items"],
        votes=counts["votes"], annotators=counts["annotators"], votes_per_item=hist,
        agreement_alpha=None if alpha is None else round(alpha, 4),
        mean_item_agreement=None if mean_agreement is None else round(mean_agreement, 4),
        consensus_pairs=pairs, flagged_items=counts["flagged_items"], skips=counts["skips"],
        corrections=counts["corrections"], leaderboard=board, guideline_version=camp.guideline_version,
    )
