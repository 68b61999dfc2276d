"""Consensus, Krippendorff's alpha and Bradley–Terry against known answers and reference libraries."""

from __future__ import annotations

import numpy as np
import pytest

from bot.core.aggregate import (
    VoteLite,
    bradley_terry,
    collapse_battles,
    implied_pairs,
    item_consensus,
    krippendorff_alpha_nominal,
)

A = VoteLite("win", (0, 1))
B = VoteLite("win", (1, 0))
TIE = VoteLite("tie", None)
BAD = VoteLite("both_bad", None)


def test_plurality_consensus_for_pairs():
    cons = item_consensus([A, A, B], 2)
    assert cons.outcome == "win" and cons.order == (0, 1)
    assert [(p.chosen, p.rejected) for p in cons.pairs] == [(0, 1)]
    assert cons.pairs[0].agreement == pytest.approx(2 / 3)
    assert item_consensus([A, TIE, BAD], 2).outcome is None  # split: no pair
    assert item_consensus([TIE, TIE, A], 2).outcome == "tie"
    assert item_consensus([TIE, TIE, A], 2).pairs == []
    assert item_consensus([BAD, BAD, BAD], 2).outcome == "both_bad"
    assert item_consensus([A, A, TIE, B], 2).outcome == "win"


def test_rankings_expand_to_all_implied_pairs():
    assert sorted(implied_pairs([2, 0, 1], 3)) == [(0, 1), (2, 0), (2, 1)]
    assert sorted(implied_pairs([1], 3)) == [(1, 0), (1, 2)]  # best-of-N click
    cons = item_consensus([VoteLite("rank", (2, 0, 1))] * 2 + [VoteLite("rank", (0, 2, 1))], 3)
    assert {(p.chosen, p.rejected) for p in cons.pairs} == {(2, 0), (2, 1), (0, 1)}
    assert cons.order == (2, 0, 1)


def test_alpha_matches_the_krippendorff_package():
    krippendorff = pytest.importorskip("krippendorff")
    rng = np.random.default_rng(3)
    cats = ["0>1", "1>0", "tie", "both_bad"]
    units = []
    coders = 6
    matrix = np.full((coders, 60), np.nan)
    for u in range(60):
        truth = rng.integers(0, 4)
        labels = []
        for c in rng.choice(coders, size=rng.integers(1, 5), replace=False):
            v = truth if rng.random() < 0.7 else rng.integers(0, 4)
            labels.append(cats[v])
            matrix[c, u] = v
        units.append(labels)
    ours = krippendorff_alpha_nominal(units)
    ref = krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal")
    assert ours == pytest.approx(ref, abs=1e-9)
    assert krippendorff_alpha_nominal([["a", "a"], ["b", "b"]]) == pytest.approx(1.0)
    assert krippendorff_alpha_nominal([["a"]]) is None


def test_bradley_terry_recovers_true_strengths_with_ties_half():
    rng = np.random.default_rng(0)
    strengths = {f"m{i}": s for i, s in enumerate(np.linspace(-1.5, 1.5, 8))}
    names = list(strengths)
    battles = []
    for _ in range(20000):
        a, b = rng.choice(names, 2, replace=False)
        p = 1 / (1 + np.exp(-(strengths[a] - strengths[b])))
        r = rng.random()
        battles.append((a, b, 0.5 if abs(r - p) < 0.05 else float(r < p)))
    res = bradley_terry(collapse_battles(battles), rounds=50)
    est = np.array([res.scores[res.models.index(m)] for m in names])
    assert np.corrcoef(est, list(strengths.values()))[0, 1] > 0.99
    assert np.all(res.lower <= res.scores + 1e-6) and np.all(res.upper >= res.scores - 1e-6)
    # two models that only tie are equal
    tied = bradley_terry([("x", "y", 0.5, 10.0)], rounds=10)
    assert tied.scores[0] == pytest.approx(tied.scores[1], abs=1e-3)
