"""The vote path of the core: one row per (annotator, item), replays, changes, quorum and reveal."""

from __future__ import annotations

import threading

import pytest
from sqlmodel import func, select

from bot.core.errors import CampaignPaused, ConflictError, InvalidInput, NotFound, PermissionDenied
from bot.core.events import (
    CorrectionSubmitted,
    CriteriaScored,
    ItemFlagged,
    ItemSkipped,
    RankingSubmitted,
    TaskRequested,
    VoteCast,
)
from bot.core.importer import validate_row
from bot.core.service import CampaignSpec
from storage.models import AuditLog, Correction, Item, Post, Vote
from tests.conftest import CLI, actor, make_items


def count(db, model) -> int:
    with db.read() as s:
        return s.exec(select(func.count()).select_from(model)).one()


def test_vote_is_stored_in_canonical_positions(service, campaign, db):
    views = service.prepare_posts(campaign, "slack", "C123", 6)
    with db.read() as s:
        swapped = [v for v in views if s.get(Post, v.post_id).permutation == [1, 0]]
    assert swapped, "some post must show the responses swapped (shuffled sides)"
    view = swapped[0]
    res = service.cast_vote(VoteCast(actor("U1"), view.post_id, "A", delivery_id="d-1"))
    assert res.choice == "A" and not res.replay and not res.changed
    with db.read() as s:
        vote = s.exec(select(Vote)).one()
    assert vote.winner == 1 and vote.ranking == [1, 0]  # shown "A" is the second stored response
    assert vote.shown_choice == "A" and vote.guideline_version == 1
    assert res.post.vote_count == 1 and res.post.quorum == 3 and not res.post.revealed
    assert all(r.model is None for r in res.post.responses), "model names must stay hidden before quorum"


def test_replayed_delivery_and_double_clicks_add_nothing(service, campaign, db):
    view = service.prepare_posts(campaign, "slack", "C123", 1)[0]
    for _ in range(4):
        service.cast_vote(VoteCast(actor("U1"), view.post_id, "B", delivery_id="same-delivery"))
    for i in range(5):
        service.cast_vote(VoteCast(actor("U1"), view.post_id, "B", delivery_id=f"click-{i}"))
    assert count(db, Vote) == 1
    with db.read() as s:
        assert s.get(Item, view.item_id).vote_count == 1
        assert not [a for a in s.exec(select(AuditLog)) if a.action == "vote.change"]


def test_concurrent_double_clicks_give_one_vote(service, campaign, db):
    view = service.prepare_posts(campaign, "slack", "C123", 1)[0]
    errors = []

    def click(i: int) -> None:
        try:
            service.cast_vote(VoteCast(actor("U9"), view.post_id, "A", delivery_id=f"c{i}"))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=click, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert count(db, Vote) == 1


def test_change_vote_updates_row_and_audits_history(service, campaign, db):
    view = service.prepare_posts(campaign, "slack", "C123", 1)[0]
    service.cast_vote(VoteCast(actor("U1"), view.post_id, "A"))
    res = service.cast_vote(VoteCast(actor("U1"), view.post_id, "tie"))
    assert res.changed and res.previous == "A" and res.choice == "tie"
    assert "changed from A better to Tie" in res.summary
    with db.read() as s:
        vote = s.exec(select(Vote)).one()
        changes = [a for a in s.exec(select(AuditLog)) if a.action == "vote.change"]
    assert vote.outcome == "tie" and vote.winner is None
    assert len(changes) == 1 and changes[0].details["before"]["outcome"] == "win"


def test_quorum_reveals_models_and_tallies(service, campaign):
    view = service.prepare_posts(campaign, "slack", "C123", 1)[0]
    service.cast_vote(VoteCast(actor("U1"), view.post_id, "A"))
    res = service.cast_vote(VoteCast(actor("U2"), view.post_id, "A"))
    assert not res.post.revealed and res.post.result is None
    res = service.cast_vote(VoteCast(actor("U3"), view.post_id, "A"))
    assert res.reached_quorum and res.post.revealed
    assert res.post.result.tallies == {"A": 3} and res.post.result.consensus == "A"
    assert all(r.model for r in res.post.responses)
    with pytest.raises(ConflictError):
        service.cast_vote(VoteCast(actor("U4"), view.post_id, "B"))


def test_split_votes_ask_for_an_extra_vote(service, campaign):
    view = service.prepare_posts(campaign, "slack", "C123", 1)[0]
    service.cast_vote(VoteCast(actor("U1"), view.post_id, "A"))
    service.cast_vote(VoteCast(actor("U2"), view.post_id, "B"))
    res = service.cast_vote(VoteCast(actor("U3"), view.post_id, "tie"))
    assert res.extra_vote_requested and not res.reached_quorum and res.post.quorum == 4
    res = service.cast_vote(VoteCast(actor("U4"), view.post_id, "A"))
    assert res.extra_vote_requested and res.post.quorum == 5  # 2/4 agree: still split
    res = service.cast_vote(VoteCast(actor("U5"), view.post_id, "A"))
    assert res.reached_quorum and res.post.result.consensus == "A"  # 3/5 = threshold


def test_next_task_respects_overlap_history_and_skips(service, campaign):
    seen = set()
    for _ in range(6):
        task = service.next_task(TaskRequested(actor("U1"), campaign))
        assert task is not None and task.item_id not in seen
        seen.add(task.item_id)
        if len(seen) % 2:
            service.cast_vote(VoteCast(actor("U1"), task.post_id, "A"))
        else:
            service.skip(ItemSkipped(actor("U1"), task.post_id))
    assert service.next_task(TaskRequested(actor("U1"), campaign)) is None
    # least-voted first: U2's first task is an item U1 skipped (0 votes)
    task = service.next_task(TaskRequested(actor("U2"), campaign))
    assert task.vote_count == 0


def test_next_task_shuffles_sides_per_post(service, campaign, db):
    perms = set()
    for i in range(20):
        task = service.next_task(TaskRequested(actor(f"U{i}"), campaign))
        with db.read() as s:
            perms.add(tuple(s.get(Post, task.post_id).permutation))
    assert perms == {(0, 1), (1, 0)}


def test_ranking_of_three_and_bad_rankings(service, db):
    service.create_campaign(CampaignSpec("multi", overlap=1), CLI)
    service.import_items("multi", [validate_row(r, 1)[0] for r in make_items(1, responses=3)], CLI)
    view = service.prepare_posts("multi", "discord", "c", 1)[0]
    with pytest.raises(InvalidInput):
        service.submit_ranking(RankingSubmitted(actor("U1"), view.post_id, ["A", "A", "B"]))
    with pytest.raises(InvalidInput):
        service.submit_ranking(RankingSubmitted(actor("U1"), view.post_id, ["A", "B"]))
    res = service.submit_ranking(RankingSubmitted(actor("U1"), view.post_id, ["C", "A", "B"]))
    assert res.choice == "C>A>B" and res.reached_quorum
    with db.read() as s:
        post = s.get(Post, view.post_id)
        vote = s.exec(select(Vote)).one()
    assert vote.ranking == [post.permutation[2], post.permutation[0], post.permutation[1]]
    assert res.post.result.consensus == "C>A>B"


def test_criteria_scores_need_a_vote_and_valid_values(service, campaign, db):
    view = service.prepare_posts(campaign, "slack", "C123", 1)[0]
    with pytest.raises(InvalidInput):
        service.submit_scores(CriteriaScored(actor("U1"), view.post_id, {"helpfulness": 4}))
    service.cast_vote(VoteCast(actor("U1"), view.post_id, "A"))
    with pytest.raises(InvalidInput):
        service.submit_scores(CriteriaScored(actor("U1"), view.post_id, {"helpfulness": 9}))
    with pytest.raises(InvalidInput):
        service.submit_scores(CriteriaScored(actor("U1"), view.post_id, {"speed": 3}))
    service.submit_scores(CriteriaScored(actor("U1"), view.post_id, {"helpfulness": 4, "harmlessness": 5}))
    with db.read() as s:
        assert s.exec(select(Vote)).one().scores == {"helpfulness": 4, "harmlessness": 5}


def test_corrections_flags_and_bad_ids(service, campaign, db):
    view = service.prepare_posts(campaign, "slack", "C123", 1)[0]
    service.submit_correction(CorrectionSubmitted(actor("U1"), view.post_id, "B", "A better answer.", "m-1"))
    service.submit_correction(CorrectionSubmitted(actor("U1"), view.post_id, "B", "A better answer.", "m-1"))
    with db.read() as s:
        corr = s.exec(select(Correction)).one()
        post = s.get(Post, view.post_id)
    assert corr.position == post.permutation[1]
    with pytest.raises(InvalidInput):
        service.submit_correction(CorrectionSubmitted(actor("U1"), view.post_id, "Z", "x"))
    with pytest.raises(InvalidInput):
        service.submit_correction(CorrectionSubmitted(actor("U1"), view.post_id, "A", "x" * 50_000))
    with pytest.raises(NotFound):
        service.cast_vote(VoteCast(actor("U1"), 999_999, "A"))
    with pytest.raises(InvalidInput):
        service.cast_vote(VoteCast(actor("U1"), view.post_id, "Q"))
    service.flag(ItemFlagged(actor("U1"), view.post_id, "offensive"))
    service.flag(ItemFlagged(actor("U2"), view.post_id, "offensive"))
    with db.read() as s:
        assert s.get(Item, view.item_id).status == "flagged"
    assert count(db, Vote) == 0


def test_paused_campaign_refuses_votes_and_admin_checks(service, campaign):
    view = service.prepare_posts(campaign, "slack", "C123", 1)[0]
    with pytest.raises(PermissionDenied):
        service.set_status(campaign, "paused", actor("U1"))
    service.set_status(campaign, "paused", actor("UADMIN"))
    with pytest.raises(CampaignPaused):
        service.cast_vote(VoteCast(actor("U1"), view.post_id, "A"))
    with pytest.raises(PermissionDenied):
        service.grant_admin(actor("U1"), "slack", "U1")
    service.grant_admin(actor("UADMIN"), "slack", "U7")
    assert service.is_admin(actor("U7"))
    assert not service.is_admin(actor("U8"))


def test_gold_items_give_private_feedback(service, db):
    service.create_campaign(CampaignSpec("gold", guidelines="Prefer correct.", overlap=3, gold_rate=1.0), CLI)
    rows = make_items(4, gold_every=2)
    service.import_items("gold", [validate_row(r, 1)[0] for r in rows], CLI)
    task = service.next_task(TaskRequested(actor("U1"), "gold"))
    with db.read() as s:
        item = s.get(Item, task.item_id)
        post = s.get(Post, task.post_id)
    assert item.gold is not None, "gold_rate=1 must hand out a gold item first"
    wrong = "B" if post.permutation[0] == 0 else "A"
    res = service.cast_vote(VoteCast(actor("U1"), task.post_id, wrong))
    assert res.gold is not None and not res.gold.correct
    assert res.gold.expected == ("A" if wrong == "B" else "B")
    assert "Prefer correct" in res.gold.guideline_excerpt
