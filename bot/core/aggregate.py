"""Consensus per item, Krippendorff's alpha, and the Bradley–Terry leaderboard.

A vote is canonical: `outcome` in {win, rank, tie, both_bad} and `ranking`, response positions best
first. A partial ranking means the listed responses beat every unlisted one (a "best of N" click).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from storage.domain import NEUTRAL_OUTCOMES, Outcome


@dataclass(frozen=True)
class VoteLite:
    outcome: str
    ranking: tuple[int, ...] | None
    weight: float = 1.0

    @property
    def category(self) -> str:
        """A hashable label for agreement statistics."""
        if self.outcome in NEUTRAL_OUTCOMES:
            return self.outcome
        return ">".join(map(str, self.ranking or ()))


@dataclass(frozen=True)
class PairConsensus:
    chosen: int
    rejected: int
    support: float  # weighted votes saying chosen > rejected
    total: float  # weighted votes on the item

    @property
    def agreement(self) -> float:
        return self.support / self.total if self.total else 0.0


@dataclass(frozen=True)
class ItemConsensus:
    outcome: str | None  # "win" | "tie" | "both_bad" | "rank" | None (split)
    order: tuple[int, ...] | None  # best-first positions when there is a winner
    agreement: float  # share of (weighted) votes in the modal category
    pairs: list[PairConsensus]
    votes: int


def implied_pairs(ranking: Sequence[int], n: int) -> Iterable[tuple[int, int]]:
    """All (better, worse) pairs a best-first (possibly partial) ranking implies over n responses."""
    listed = list(ranking)
    seen = set(listed)
    rest = [p for p in range(n) if p not in seen]
    for i, better in enumerate(listed):
        for worse in listed[i + 1 :]:
            yield better, worse
        for worse in rest:
            yield better, worse


def item_consensus(votes: Sequence[VoteLite], n: int) -> ItemConsensus:
    """Consensus by plurality: i beats j when "i>j" outweighs both "j>i" and the neutral votes."""
    if not votes:
        return ItemConsensus(None, None, 0.0, [], 0)
    total = float(sum(v.weight for v in votes))
    wins: dict[tuple[int, int], float] = {}  # a dict, not an n x n array: n is tiny and this runs per item
    neutral = dict.fromkeys(NEUTRAL_OUTCOMES, 0.0)
    for v in votes:
        if v.outcome in neutral:
            neutral[v.outcome] += v.weight
            continue
        for pair in implied_pairs(v.ranking or (), n):
            wins[pair] = wins.get(pair, 0.0) + v.weight
    pairs: list[PairConsensus] = []
    for (i, j), support in sorted(wins.items()):
        against = wins.get((j, i), 0.0)
        if support > against and support > total - support - against:
            pairs.append(PairConsensus(i, j, float(support), total))
    categories: Counter[str] = Counter()
    for v in votes:
        categories[v.category] += v.weight
    (top_cat, top_w), *rest = [*categories.most_common(), ("", 0.0)]
    agreement = top_w / total
    outcome: str | None
    order: tuple[int, ...] | None = None
    if pairs:
        copeland = Counter(p.chosen for p in pairs)
        order = tuple(sorted(range(n), key=lambda p: (-copeland.get(p, 0), p)))
        outcome = Outcome.WIN if n == 2 else Outcome.RANK
    else:
        best_neutral = max(neutral, key=lambda k: neutral[k])
        strictly_top = rest[0][1] < top_w if rest else True
        outcome = best_neutral if top_cat == best_neutral and strictly_top else None
    return ItemConsensus(outcome, order, agreement, pairs, len(votes))


def resolved_consensus(resolution: dict, votes: int, n: int) -> ItemConsensus:
    """The consensus an admin settled with `/label resolve`: it overrides the votes."""
    outcome = resolution.get("outcome")
    ranking = tuple(resolution.get("ranking") or ())
    if outcome in NEUTRAL_OUTCOMES or not ranking:
        return ItemConsensus(outcome, None, 1.0, [], votes)
    pairs = [PairConsensus(b, w, 1.0, 1.0) for b, w in implied_pairs(ranking, n)]
    return ItemConsensus(outcome, ranking, 1.0, pairs, votes)


class AlphaAccumulator:
    """Nominal Krippendorff's alpha built up one unit (item) at a time on a sparse coincidence matrix.

    Hand-rolled so it streams over 300k items inside an export; the `krippendorff` package (a dense
    coders x units matrix) is the reference in the tests.
    """

    def __init__(self) -> None:
        self.coincidence: Counter[tuple[str, str]] = Counter()

    def add(self, labels: Sequence[str]) -> None:
        m = len(labels)
        if m < 2:
            return
        counts = Counter(labels)
        for c, nc in counts.items():
            for k, nk in counts.items():
                pairs = nc * (nc - 1) if c == k else nc * nk
                if pairs:
                    self.coincidence[(c, k)] += pairs / (m - 1)

    def value(self) -> float | None:
        if not self.coincidence:
            return None
        n_c: Counter[str] = Counter()
        for (c, _k), v in self.coincidence.items():
            n_c[c] += v
        n = sum(n_c.values())
        if n <= 1:
            return None
        d_o = sum(v for (c, k), v in self.coincidence.items() if c != k)
        d_e = (n * n - sum(x * x for x in n_c.values())) / (n - 1)
        if d_e == 0:
            return 1.0 if d_o == 0 else None
        return float(1.0 - d_o / d_e)


def krippendorff_alpha_nominal(units: Iterable[Sequence[str]]) -> float | None:
    """Nominal Krippendorff's alpha from each unit's list of category labels."""
    acc = AlphaAccumulator()
    for labels in units:
        acc.add(labels)
    return acc.value()


# ---------------------------------------------------------------------------------------------
# Bradley–Terry (FastChat's method: MLE on unique (a, b, outcome) triples, multinomial bootstrap)


@dataclass(frozen=True)
class BTResult:
    models: list[str]
    scores: np.ndarray  # Elo-like scale (400 per factor of 10 in odds), centred at 1000
    lower: np.ndarray
    upper: np.ndarray
    battles: np.ndarray


def _bt_fit(a: np.ndarray, b: np.ndarray, y: np.ndarray, w: np.ndarray, n_models: int) -> np.ndarray:
    from scipy.optimize import minimize

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        d = theta[a] - theta[b]
        p = 1.0 / (1.0 + np.exp(-d))
        eps = 1e-12
        nll = -np.sum(w * (y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)))
        g = w * (p - y)
        grad = np.bincount(a, weights=g, minlength=n_models) - np.bincount(b, weights=g, minlength=n_models)
        reg = 1e-6
        return float(nll + reg * theta @ theta), grad + 2 * reg * theta

    res = minimize(loss, np.zeros(n_models), jac=True, method="L-BFGS-B",
                   options={"maxiter": 200, "gtol": 1e-8})
    theta = res.x - res.x.mean()
    return theta


def bradley_terry(
    battles: Sequence[tuple[str, str, float, float]] | np.ndarray,
    models: Sequence[str] | None = None,
    *,
    rounds: int = 100,
    seed: int = 0,
) -> BTResult | None:
    """Fit BT on (model_a, model_b, outcome for a in {0, .5, 1}, count) rows; 95% bootstrap CIs.

    Rows should already be collapsed to unique triples with counts (cheap to do in SQL), which
    makes both the fit and the multinomial bootstrap independent of the number of votes.
    """
    rows = [r for r in battles if r[0] != r[1] and r[3] > 0]
    if not rows:
        return None
    names = sorted({r[0] for r in rows} | {r[1] for r in rows} | set(models or ()))
    index = {m: i for i, m in enumerate(names)}
    a = np.array([index[r[0]] for r in rows], dtype=np.int64)
    b = np.array([index[r[1]] for r in rows], dtype=np.int64)
    y = np.array([float(r[2]) for r in rows])
    counts = np.array([float(r[3]) for r in rows])
    n = len(names)
    scale = 400.0 / np.log(10.0)
    theta = _bt_fit(a, b, y, counts, n)
    total = int(counts.sum())
    rng = np.random.default_rng(seed)
    boots = np.empty((rounds, n))
    probs = counts / counts.sum()
    for r in range(rounds):
        resampled = rng.multinomial(total, probs).astype(float)
        boots[r] = _bt_fit(a, b, y, resampled, n)
    lower = np.percentile(boots, 2.5, axis=0) if rounds else theta
    upper = np.percentile(boots, 97.5, axis=0) if rounds else theta
    played = np.bincount(a, weights=counts, minlength=n) + np.bincount(b, weights=counts, minlength=n)
    return BTResult(names, 1000 + scale * theta, 1000 + scale * lower, 1000 + scale * upper, played)


def collapse_battles(
    battles: Iterable[tuple[str, str, float]],
) -> list[tuple[str, str, float, float]]:
    """(a, b, outcome) per battle -> unique (a, b, outcome, count), canonical a < b."""
    counter: Counter[tuple[str, str, float]] = Counter()
    for a, b, y in battles:
        if a > b:
            a, b, y = b, a, 1.0 - y
        counter[(a, b, y)] += 1
    return [(a, b, y, float(c)) for (a, b, y), c in counter.items()]


def vote_battles(models: Sequence[str], vote: VoteLite) -> Iterable[tuple[str, str, float]]:
    """The battles one vote contributes: each implied pair a win, tie and both-bad count half."""
    n = len(models)
    if vote.outcome in NEUTRAL_OUTCOMES:
        for i in range(n):
            for j in range(i + 1, n):
                yield models[i], models[j], 0.5
        return
    for better, worse in implied_pairs(vote.ranking or (), n):
        yield models[better], models[worse], 1.0
