"""Active-learning simulation: how many votes each sampling strategy needs to reach a target.

Models have hidden strengths; every item pits two of them, and its true winner is the response of
higher hidden quality (model strength plus item noise). Simulated annotators of varied reliability
vote through the real core (`LabelingService.next_task` with the campaign's strategy, then `cast_vote`)
on SQLite. After every batch of votes we measure consensus accuracy (items whose current consensus is
the true winner; no consensus counts as wrong) and the Kendall tau between the Bradley–Terry ranking
and the true model strengths. Reported: votes needed to first reach each target, median over seeds,
and the saving against uniform random sampling.

    python bench/bench_active.py [--seeds 3] [--items 240]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlmodel import select

from bot.core import aggregate
from bot.core.errors import LimitReached
from bot.core.events import Actor, TaskRequested, VoteCast
from bot.core.importer import validate_row
from bot.core.service import CampaignSpec, LabelingService
from bot.core.stats import compute_leaderboard
from storage.db import Database, upgrade
from storage.models import Item, ItemScore, Post, Vote

CLI = Actor("cli", "", "bench")
STRATEGIES = ("random", "least_votes", "disagreement", "uncertainty", "informative_pairs")


def simulate(strategy: str, seed: int, *, items: int, models: int, annotators: int, budget: int, acc_target: float,
             tau_target: float, every: int) -> dict:
    rng = np.random.default_rng(seed)
    strength = rng.normal(0, 1.0, models)
    url = f"sqlite:///{tempfile.mkdtemp()}/sim.db"
    upgrade(url)
    svc = LabelingService(Database(url), seed=seed)
    svc.create_campaign(CampaignSpec("sim", overlap=15, gold_rate=0.0), CLI)
    svc.update_campaign("sim", CLI, sampling=strategy, max_extra_votes=0)
    pairs = [rng.choice(models, 2, replace=False) for _ in range(items)]
    quality = [(strength[a] + rng.normal(0, 0.6), strength[b] + rng.normal(0, 0.6)) for a, b in pairs]
    truth = {f"i{i}": 0 if qa > qb else 1 for i, (qa, qb) in enumerate(quality)}
    rows = [{"id": f"i{i}", "prompt": f"prompt {i}",
             "responses": [{"model": f"m{a}", "text": f"a{i}"}, {"model": f"m{b}", "text": f"b{i}"}]}
            for i, (a, b) in enumerate(pairs)]
    svc.import_items("sim", [validate_row(r, n)[0] for n, r in enumerate(rows)], CLI)
    with svc.db.write() as s:  # a noisy reward model's margins, for the uncertainty strategy
        for item in s.exec(select(Item)):
            qa, qb = quality[int(item.external_id[1:])]
            s.add(ItemScore(item_id=item.id, model_version="sim-rm", margin=float(qa - qb + rng.normal(0, 0.5))))
    skill = rng.uniform(1.0, 3.0, annotators)  # how sharply each annotator sees quality differences
    need_acc = need_tau = None
    votes = 0
    curve = []
    while votes < budget and (need_acc is None or need_tau is None):
        who = int(rng.integers(annotators))
        try:
            task = svc.next_task(TaskRequested(Actor("sim", "", f"a{who}"), "sim"))
        except LimitReached:
            continue
        if task is None:
            continue
        i = int(task.external_id[1:])
        qa, qb = quality[i]
        p_first = 1 / (1 + np.exp(-skill[who] * (qa - qb)))
        winner_pos = 0 if rng.random() < p_first else 1
        with svc.db.read() as s:
            perm = s.get(Post, task.post_id).permutation
        svc.cast_vote(VoteCast(Actor("sim", "", f"a{who}"), task.post_id, "AB"[perm.index(winner_pos)]))
        votes += 1
        if votes % every == 0:
            acc, tau = measure(svc, truth, strength)
            curve.append((votes, round(acc, 3), round(tau, 3)))
            if need_acc is None and acc >= acc_target:
                need_acc = votes
            if need_tau is None and tau >= tau_target:
                need_tau = votes
    svc.db.dispose()
    return {"strategy": strategy, "seed": seed, "votes_to_accuracy": need_acc, "votes_to_tau": need_tau,
            "final": curve[-1] if curve else None}


def measure(svc: LabelingService, truth: dict[str, int], strength: np.ndarray) -> tuple[float, float]:
    with svc.db.read() as s:
        rows = s.exec(select(Item.external_id, Vote.outcome, Vote.winner).join(Vote, Vote.item_id == Item.id)
                      .order_by(Item.id)).all()
        board = compute_leaderboard(s, 1, bootstrap_rounds=0)
    by_item: dict[str, list[aggregate.VoteLite]] = {}
    for ext, outcome, winner in rows:
        by_item.setdefault(ext, []).append(aggregate.VoteLite(outcome, (winner, 1 - winner)))
    correct = 0
    for ext, want in truth.items():
        cons = aggregate.item_consensus(by_item.get(ext, []), 2)
        correct += cons.order is not None and cons.order[0] == want
    scores = {row.model: row.score for row in board}
    est = [scores.get(f"m{m}", 1000.0) for m in range(len(strength))]
    tau = kendalltau(est, strength).statistic if len(scores) > 1 else 0.0
    return correct / len(truth), float(tau)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--items", type=int, default=240)
    ap.add_argument("--models", type=int, default=10)
    ap.add_argument("--annotators", type=int, default=60)
    ap.add_argument("--accuracy", type=float, default=0.85)
    ap.add_argument("--tau", type=float, default=0.8)
    ap.add_argument("--every", type=int, default=20)
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    args = ap.parse_args()
    budget = args.items * 8
    results: dict[str, list[dict]] = {}
    for strategy in args.strategies.split(","):
        for seed in range(args.seeds):
            res = simulate(strategy, seed, items=args.items, models=args.models, annotators=args.annotators,
                           budget=budget, acc_target=args.accuracy, tau_target=args.tau, every=args.every)
            print(json.dumps(res), flush=True)
            results.setdefault(strategy, []).append(res)

    def med(strategy: str, key: str) -> float:
        return statistics.median(r[key] if r[key] is not None else budget for r in results[strategy])

    print(f"\nTargets: consensus accuracy {args.accuracy}, Kendall tau {args.tau}; {args.items} items, "
          f"{args.models} models, {args.annotators} annotators, budget {budget} votes (a run that never reaches "
          f"a target counts as the budget); median of {args.seeds} seeds.\n")
    print("| strategy | votes to accuracy | vs random | votes to tau | vs random |")
    print("|---|---|---|---|---|")
    base_acc, base_tau = (med("random", "votes_to_accuracy"), med("random", "votes_to_tau")) if "random" in results \
        else (None, None)
    for strategy in results:
        acc, tau = med(strategy, "votes_to_accuracy"), med(strategy, "votes_to_tau")
        rel_acc = f"{1 - acc / base_acc:+.0%} fewer" if base_acc else "-"
        rel_tau = f"{1 - tau / base_tau:+.0%} fewer" if base_tau else "-"
        print(f"| {strategy} | {acc:.0f} | {rel_acc} | {tau:.0f} | {rel_tau} |")


if __name__ == "__main__":
    main()
