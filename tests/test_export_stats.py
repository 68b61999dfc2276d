"""Exports (consensus pairs, provenance, split, manifest, atomic versions) and campaign statistics."""

from __future__ import annotations

import hashlib
import json

import pyarrow.parquet as pq
import pytest

from bot.core.events import RankingSubmitted, VoteCast
from bot.core.importer import validate_row
from bot.core.service import CampaignSpec
from scheduler.export import export_campaign, split_of
from tests.conftest import CLI, actor, make_items


def rows(folder, split="train"):
    return [json.loads(line) for line in (folder / f"{split}.jsonl").read_text().splitlines()]


def all_rows(folder):
    return rows(folder, "train") + rows(folder, "test")


@pytest.fixture
def voted(service):
    """Items with known outcomes: 0 -> model-0 wins 2:1, 1 -> tie, 2 -> split, 3 -> only 1 vote (open)."""
    service.create_campaign(CampaignSpec("ex", overlap=3), CLI)
    service.import_items("ex", [validate_row(r, 1)[0] for r in make_items(4)], CLI)
    posts = service.prepare_posts("ex", "slack", "C", 4)

    def letter_of(view, model):
        return next(r.letter for r in service.post_view(view.post_id).responses
                    if r.text.startswith(f"Answer {model[-1]}"))

    plan = {0: ["model-0", "model-0", "model-1"], 1: ["tie", "tie", "tie"], 2: ["model-0", "model-1", "both_bad"],
            3: ["model-0"]}
    for view in posts:
        idx = int(view.external_id.split("-")[1])
        for u, choice in enumerate(plan[idx]):
            ch = choice if choice in ("tie", "both_bad") else letter_of(view, choice)
            service.cast_vote(VoteCast(actor(f"U{u}"), view.post_id, ch))
    return service


def test_trl_export_holds_consensus_pairs_with_provenance(voted, db, tmp_path):
    res = export_campaign(db, "ex", "trl", tmp_path / "ds", test_fraction=0.0)
    data = all_rows(res.path)
    # item 2 got an extra vote request (split) so it is not complete; item 1 is a tie; item 3 is open
    assert len(data) == 1
    row = data[0]
    assert row["prompt"] == "Question 0: explain topic 0."
    assert row["chosen"] == "Answer 0 to question 0." and row["rejected"] == "Answer 1 to question 0."
    assert row["chosen_model"] == "model-0" and row["votes"] == 3 and row["agreement"] == pytest.approx(0.6667)
    assert pq.read_table(res.path / "train.parquet").num_rows == 1
    manifest = json.loads((res.path / "manifest.json").read_text())
    assert manifest["counts"]["rows"] == 1 and manifest["format"] == "trl" and manifest["guideline_version"] == 1
    for name, meta in manifest["files"].items():
        assert hashlib.sha256((res.path / name).read_bytes()).hexdigest() == meta["sha256"]
    assert (tmp_path / "ds" / "latest").resolve() == res.path.resolve()


def test_conversational_and_votes_formats(voted, db, tmp_path):
    conv = all_rows(export_campaign(db, "ex", "trl-conversational", tmp_path / "c", test_fraction=0).path)
    assert conv[0]["prompt"] == [{"role": "user", "content": "Question 0: explain topic 0."}]
    assert conv[0]["chosen"][0]["role"] == "assistant"
    votes = all_rows(export_campaign(db, "ex", "votes", tmp_path / "v", test_fraction=0).path)
    assert len(votes) == 10  # every raw vote, complete or not
    assert {v["outcome"] for v in votes} == {"win", "tie", "both_bad"}
    win = next(v for v in votes if v["outcome"] == "win")
    assert win["ranking_models"][0] in ("model-0", "model-1") and win["shown_choice"] in ("A", "B")


def test_rankings_expand_to_pairs(service, db, tmp_path):
    service.create_campaign(CampaignSpec("rk", overlap=1), CLI)
    service.import_items("rk", [validate_row(r, 1)[0] for r in make_items(1, responses=3)], CLI)
    view = service.prepare_posts("rk", "slack", "C", 1)[0]
    service.submit_ranking(RankingSubmitted(actor("U1"), view.post_id, ["A", "B", "C"]))
    shown = [r.text for r in service.post_view(view.post_id).responses]
    data = all_rows(export_campaign(db, "rk", "trl", tmp_path / "r", test_fraction=0).path)
    assert {(d["chosen"], d["rejected"]) for d in data} == {(shown[0], shown[1]), (shown[0], shown[2]),
                                                           (shown[1], shown[2])}


def test_split_is_deterministic_by_item(voted, db, tmp_path):
    ids = [f"ext-{i}" for i in range(1000)]
    test_share = sum(split_of("ex", i, 0.2) == "test" for i in ids) / len(ids)
    assert 0.15 < test_share < 0.25
    assert [split_of("ex", i, 0.2) for i in ids] == [split_of("ex", i, 0.2) for i in ids]
    a = export_campaign(db, "ex", "votes", tmp_path / "s", test_fraction=0.5)
    b = export_campaign(db, "ex", "votes", tmp_path / "s", test_fraction=0.5)
    assert b.version == a.version + 1
    assert {r["item_id"] for r in rows(a.path, "test")} == {r["item_id"] for r in rows(b.path, "test")}
    for r in rows(a.path, "test"):
        assert split_of("ex", r["item_id"], 0.5) == "test"


def test_stats_progress_agreement_and_leaderboard(voted):
    st = voted.stats("ex", bootstrap_rounds=20)
    assert st.items == 4 and st.votes == 10 and st.annotators == 3
    assert st.complete_items == 2 and st.votes_per_item == {1: 1, 3: 3}
    assert st.agreement_alpha == pytest.approx(0.3103, abs=1e-3)  # what the fixture's planned votes give
    board = {row.model: row for row in st.leaderboard}
    assert set(board) == {"model-0", "model-1"}
    assert board["model-0"].score > board["model-1"].score  # 3 wins (incl. half ties) vs 2
    assert board["model-0"].lower <= board["model-0"].score <= board["model-0"].upper
    assert st.as_dict()["leaderboard"][0]["model"] == "model-0"
