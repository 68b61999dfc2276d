"""Which item to post or hand out next: sampling strategies selectable per campaign.

- least_votes (default): fill items evenly, least-voted first.
- disagreement: items whose votes split (agreement below the campaign threshold) first.
- uncertainty: items whose latest reward-model margin is closest to zero (scores written by the
  scheduler after a reward model is trained); unscored items fall back to least votes.
- informative_pairs: items comparing two models whose Bradley–Terry intervals overlap most, the way
  Chatbot Arena samples battles; models never compared come first.
- random: uniform, the baseline the others are measured against (bench/bench_active.py).
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from itertools import groupby
from typing import Any

import numpy as np
from sqlalchemy import exists, func, literal
from sqlmodel import select

from bot.core import aggregate
from bot.core.errors import InvalidInput
from storage.domain import NEUTRAL_OUTCOMES
from storage.models import Campaign, Item, ItemScore, Post, Response, Skip, Vote

STRATEGIES = ("least_votes", "disagreement", "uncertainty", "informative_pairs", "random")
CANDIDATES = 2000
BT_CACHE_SECONDS = 30.0
_bt_cache: dict[tuple[str, int], tuple[float, int, dict[str, tuple[float, float, float]]]] = {}


def strategy_of(camp: Campaign) -> str:
    name = (camp.settings or {}).get("sampling", "least_votes")
    return name if name in STRATEGIES else "least_votes"


def validate_strategy(name: str) -> str:
    if name not in STRATEGIES:
        raise InvalidInput(f"Unknown sampling strategy {name!r}; choose one of {', '.join(STRATEGIES)}.")
    return name


def _eligible(s: Any, camp: Campaign, annotator: int | None, platform: str | None, gold: bool | None) -> Any:
    conds = [Item.campaign_id == camp.id, Item.status == "open",
             Item.vote_count < literal(camp.overlap) + Item.extra_votes]
    if annotator is not None:
        conds.append(~exists().where(Vote.item_id == Item.id, Vote.annotator_id == annotator))
        conds.append(~exists().where(Skip.item_id == Item.id, Skip.annotator_id == annotator))
    if platform is not None:
        conds.append(~exists().where(Post.item_id == Item.id, Post.platform == platform,
                                     Post.message_id.is_not(None), Post.channel != "direct"))
    if gold is True:
        conds.append(Item.gold.is_not(None))
    elif gold is False:
        conds.append(Item.gold.is_(None))
    return select(Item).where(*conds)


def pick_items(s: Any, camp: Campaign, *, limit: int = 1, annotator: int | None = None, platform: str | None = None,
               gold: bool | None = None, rng: random.Random | None = None) -> list[Item]:
    """Up to `limit` eligible items in the order the campaign's strategy prefers."""
    strategy = strategy_of(camp)
    base = _eligible(s, camp, annotator, platform, gold)
    least = base.order_by(Item.vote_count, Item.id)
    if strategy == "random":
        return list(s.exec(base.order_by(func.random()).limit(limit)))
    if strategy == "least_votes":
        return list(s.exec(least.limit(limit)))
    if strategy == "uncertainty":
        chosen = _most_uncertain(s, base, limit)
    elif strategy == "disagreement":
        chosen = _split_first(s, camp, base, limit)
    else:
        chosen = _informative_pairs(s, camp, base, limit, rng)
    if len(chosen) < limit:
        seen = {i.id for i in chosen}
        for item in s.exec(least.limit(limit + len(seen))):
            if item.id not in seen and len(chosen) < limit:
                chosen.append(item)
    return chosen


RM_PRIOR_VOTES = 2.0  # how many votes the reward model's opinion is worth before people vote


def _most_uncertain(s: Any, base: Any, limit: int) -> list[Item]:
    """Items whose winner is least certain given the reward model's margin *and* the votes so far.

    The margin gives a prior P(first response better) = sigmoid(margin) worth RM_PRIOR_VOTES votes; the
    votes update it (Beta posterior); we ask where the current leader is most likely wrong. Without the
    votes in the posterior, uncertainty sampling keeps sending people to the same few items.
    """
    from scipy.special import betainc, expit

    latest = select(ItemScore.item_id, func.max(ItemScore.id).label("sid")).group_by(ItemScore.item_id).subquery()
    rows = list(s.execute(
        base.join(latest, latest.c.item_id == Item.id).join(ItemScore, ItemScore.id == latest.c.sid)
        .where(Item.n_responses == 2).add_columns(ItemScore.margin).order_by(Item.vote_count, Item.id)
        .limit(CANDIDATES * 2)
    ))
    if not rows:
        return []
    by_id = {item.id: (item, margin) for item, margin in rows}
    wins: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for item_id, outcome, winner in s.exec(select(Vote.item_id, Vote.outcome, Vote.winner)
                                           .where(Vote.item_id.in_(list(by_id)))):
        if outcome in NEUTRAL_OUTCOMES or winner is None:
            wins[item_id][0] += 0.5
            wins[item_id][1] += 0.5
        else:
            wins[item_id][int(winner)] += 1.0
    ids = list(by_id)
    prior = expit(np.array([by_id[i][1] for i in ids], dtype=float))
    a = 1.0 + RM_PRIOR_VOTES * prior + np.array([wins[i][0] for i in ids])
    b = 1.0 + RM_PRIOR_VOTES * (1 - prior) + np.array([wins[i][1] for i in ids])
    p_first_worse = betainc(a, b, 0.5)  # P(theta < 1/2): the first response is in fact the worse one
    p_leader_wrong = np.minimum(p_first_worse, 1 - p_first_worse)
    order = np.argsort(-p_leader_wrong, kind="stable")
    return [by_id[ids[k]][0] for k in order[:limit]]


def _split_first(s: Any, camp: Campaign, base: Any, limit: int) -> list[Item]:
    """Eligible items with two or more votes and agreement below the threshold, least agreement first."""
    candidates = list(s.exec(base.where(Item.vote_count >= 2).order_by(Item.vote_count.desc(), Item.id)
                             .limit(CANDIDATES)))
    if not candidates:
        return []
    by_id = {c.id: c for c in candidates}
    rows = s.exec(select(Vote.item_id, Vote.outcome, Vote.ranking).where(Vote.item_id.in_(list(by_id)))
                  .order_by(Vote.item_id))
    scored = []
    for item_id, group in groupby(rows, key=lambda r: r[0]):
        votes = [aggregate.VoteLite(o, tuple(r) if r else None) for _i, o, r in group]
        cons = aggregate.item_consensus(votes, by_id[item_id].n_responses)
        if cons.agreement < camp.agreement_threshold or cons.outcome is None:
            scored.append((cons.agreement, by_id[item_id].vote_count, item_id))
    scored.sort()
    return [by_id[i] for _a, _n, i in scored[:limit]]


def model_intervals(s: Any, camp: Campaign, rounds: int = 30) -> dict[str, tuple[float, float, float]]:
    """model -> (score, lower, upper), cached briefly per campaign (recomputed as votes arrive)."""
    from bot.core.stats import campaign_battles

    votes = s.exec(select(func.count()).select_from(Vote).join(Item, Item.id == Vote.item_id)
                   .where(Item.campaign_id == camp.id)).one()
    key = (str(s.get_bind().url), camp.id)
    cached = _bt_cache.get(key)
    if cached and time.monotonic() - cached[0] < BT_CACHE_SECONDS and abs(cached[1] - votes) < 50:
        return cached[2]
    res = aggregate.bradley_terry(campaign_battles(s, camp.id), rounds=rounds)
    table = {} if res is None else {m: (float(res.scores[i]), float(res.lower[i]), float(res.upper[i]))
                                    for i, m in enumerate(res.models)}
    _bt_cache[key] = (time.monotonic(), votes, table)
    return table


def pair_informativeness(a: tuple[float, float, float] | None, b: tuple[float, float, float] | None) -> float:
    """How unsure we are which of two models is better: 1 for unseen models, interval overlap otherwise."""
    if a is None or b is None:
        return 2.0
    overlap = min(a[2], b[2]) - max(a[1], b[1])
    width = max(min(a[2] - a[1], b[2] - b[1]), 1e-9)
    return max(0.0, overlap) / width


def _informative_pairs(s: Any, camp: Campaign, base: Any, limit: int, rng: random.Random | None) -> list[Item]:
    candidates = list(s.exec(base.where(Item.n_responses == 2).order_by(Item.vote_count, Item.id)
                             .limit(CANDIDATES)))
    if not candidates:
        return []
    intervals = model_intervals(s, camp)
    models: dict[int, list[str]] = defaultdict(list)
    for item_id, model in s.exec(select(Response.item_id, Response.model)
                                 .where(Response.item_id.in_([c.id for c in candidates]))
                                 .order_by(Response.item_id, Response.position)):
        models[item_id].append(model)
    weighted: list[tuple[float, Item]] = []
    per_pair: dict[tuple[str, str], int] = defaultdict(int)
    for c in candidates:
        pair = models.get(c.id, [])
        if len(pair) == 2 and pair[0] != pair[1]:
            per_pair[(min(pair), max(pair))] += 1
    for c in candidates:
        pair = models.get(c.id, [])
        if len(pair) == 2 and pair[0] != pair[1]:
            info = pair_informativeness(intervals.get(pair[0]), intervals.get(pair[1]))
            # each pair's total weight follows its informativeness, however many items it has
            weighted.append(((info + 0.02) / per_pair[(min(pair), max(pair))], c))
    rng = rng or random.Random()
    chosen: list[Item] = []
    while weighted and len(chosen) < limit:
        idx = rng.choices(range(len(weighted)), weights=[w for w, _ in weighted])[0]
        chosen.append(weighted.pop(idx)[1])
    return chosen
