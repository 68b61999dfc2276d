"""Quality layer: sampling strategies, caps, reliability and outliers, bias, resolve and requeue."""

from __future__ import annotations

import random

import pytest
from sqlmodel import select

from bot.core import sampling
from bot.core.errors import LimitReached, PermissionDenied
from bot.core.events import TaskRequested, VoteCast
from bot.core.importer import validate_row
from bot.core.quality import formatting_score, quality_report
from bot.core.service import CampaignSpec
from storage.models import Campaign, Item, ItemScore, Post, Vote
from tests.conftest import CLI, actor


def add_items(service, name, rows, **spec):
    service.create_campaign(CampaignSpec(name, gold_rate=0.0, **spec), CLI)
    service.import_items(name, [validate_row(r, i)[0] for i, r in enumerate(rows, 1)], CLI)


def pair_rows(n, models=("m0", "m1"), texts=None, prefix="x"):
    return [{"id": f"{prefix}{i}", "prompt": f"p{i}",
             "responses": [{"model": models[0], "text": (texts or ("first answer", "second answer"))[0] + f" {i}"},
                           {"model": models[1], "text": (texts or ("first answer", "second answer"))[1] + f" {i}"}]}
            for i in range(n)]


def letter_of(service, post_id, text_prefix):
    return next(r.letter for r in service.post_view(post_id).responses if r.text.startswith(text_prefix))


def vote_for(service, user, item_ext, campaign, prefix):
    """`user` votes for the response starting with `prefix` on item `item_ext`, through a fresh post."""
    with service.db.read() as s:
        item = s.exec(select(Item).where(Item.external_id == item_ext)).one()
    view = next(v for v in service.prepare_posts(campaign, f"p-{user}-{item_ext}", "C", 100) if v.item_id == item.id)
    choice = prefix if prefix in ("tie", "both_bad") else letter_of(service, view.post_id, prefix)
    return service.cast_vote(VoteCast(actor(user), view.post_id, choice))


def set_strategy(service, name, strategy):
    service.update_campaign(name, CLI, sampling=strategy)
    with service.db.read() as s:
        return s.exec(select(Campaign).where(Campaign.name == name)).one()


def ids(items):
    return [i.external_id for i in items]


def test_least_votes_and_disagreement_strategies(service, db):
    add_items(service, "s", pair_rows(4), overlap=5)
    vote_for(service, "U1", "x0", "s", "first")
    vote_for(service, "U2", "x0", "s", "second")  # x0 split 1:1
    vote_for(service, "U1", "x1", "s", "first")
    vote_for(service, "U2", "x1", "s", "first")  # x1 agrees
    vote_for(service, "U1", "x2", "s", "first")
    camp = set_strategy(service, "s", "least_votes")
    with db.read() as s:
        assert ids(sampling.pick_items(s, camp, limit=2)) == ["x3", "x2"]
        camp = set_strategy(service, "s", "disagreement")
        assert ids(sampling.pick_items(s, camp, limit=2)) == ["x0", "x3"]  # split first, then least votes
        # never an item the annotator already voted on
        assert "x0" not in ids(sampling.pick_items(s, camp, annotator=_ann(s, "U1"), limit=4))


def _ann(s, user):
    from storage import queries as q

    return q.find_annotator(s, "slack", "T1", user)


def test_uncertainty_strategy_prefers_margins_near_zero(service, db):
    add_items(service, "u", pair_rows(4), overlap=3)
    with db.write() as s:
        items = {i.external_id: i.id for i in s.exec(select(Item))}
        for ext, margin in (("x0", 2.5), ("x1", -0.05), ("x2", 0.7)):
            s.add(ItemScore(item_id=items[ext], model_version="rm-v1", margin=margin))
        s.add(ItemScore(item_id=items["x0"], model_version="rm-v2", margin=0.01))  # newer model: now uncertain
    camp = set_strategy(service, "u", "uncertainty")
    with db.read() as s:
        assert ids(sampling.pick_items(s, camp, limit=4)) == ["x0", "x1", "x2", "x3"]


def test_informative_pairs_prefers_overlapping_models(service, db):
    rows = pair_rows(30, ("strong", "weak"), prefix="a") + pair_rows(30, ("even1", "even2"), prefix="b")
    rows += pair_rows(2, ("strong", "weak"), prefix="ca") + pair_rows(2, ("even1", "even2"), prefix="cb")
    add_items(service, "ip", rows, overlap=1)
    for i in range(30):
        vote_for(service, f"V{i}", f"a{i}", "ip", "first")  # strong always beats weak
        vote_for(service, f"W{i}", f"b{i}", "ip", "first" if i % 2 else "second")  # even1 ~ even2
    camp = set_strategy(service, "ip", "informative_pairs")
    with db.read() as s:
        picks = [ids(sampling.pick_items(s, camp, limit=1, rng=random.Random(seed)))[0] for seed in range(40)]
    assert sum(p.startswith("cb") for p in picks) >= 36, picks
    assert sampling.pair_informativeness(None, (1000, 900, 1100)) > 1


def test_caps_refuse_extra_votes_politely(service, db):
    add_items(service, "cap", pair_rows(5), overlap=3)
    service.update_campaign("cap", CLI, daily_cap=2)
    vote_for(service, "U1", "x0", "cap", "first")
    vote_for(service, "U1", "x1", "cap", "first")
    with pytest.raises(LimitReached, match="today's limit of 2"):
        vote_for(service, "U1", "x2", "cap", "first")
    with pytest.raises(LimitReached):
        service.next_task(TaskRequested(actor("U1"), "cap"))
    assert service.next_task(TaskRequested(actor("U2"), "cap")) is not None
    with db.read() as s:
        assert len(s.exec(select(Vote)).all()) == 2


def test_outliers_position_bias_and_reliability(service, db):
    add_items(service, "q", pair_rows(12), overlap=5)
    for i in range(12):
        for u in ("U1", "U2", "U3"):
            vote_for(service, u, f"x{i}", "q", "first")
        vote_for(service, "BAD", f"x{i}", "q", "second")
    # LEFTY always clicks the response shown first
    for i in range(12):
        with db.read() as s:
            item = s.exec(select(Item).where(Item.external_id == f"x{i}")).one()
        view = next(v for v in service.prepare_posts("q", f"lefty{i}", "C", 100) if v.item_id == item.id)
        service.cast_vote(VoteCast(actor("LEFTY"), view.post_id, "A"))
    rep = quality_report(db, "q")
    by = {a.name: a for a in rep.annotators}
    assert "contradicts the crowd" in by["slack:BAD"].flags
    assert by["slack:BAD"].agreement == 0 and by["slack:U1"].agreement == 1
    assert by["slack:BAD"].reliability < 0.2 < by["slack:U1"].reliability
    assert "position bias" in by["slack:LEFTY"].flags and by["slack:LEFTY"].a_share == 1.0
    assert {"contradicts the crowd", "position bias"}.isdisjoint(by["slack:U1"].flags)
    assert rep.weights()[by["slack:U1"].annotator_id] > rep.weights()[by["slack:BAD"].annotator_id]


def test_length_and_formatting_bias_and_fast_votes(service, db):
    long = "**Answer**\n- a detailed point\n- another point " + "x" * 300
    add_items(service, "len", pair_rows(8, texts=(long, "short")), overlap=1)
    for i in range(8):
        vote_for(service, "U1", f"x{i}", "len", "**Answer**")
    rep = quality_report(db, "len")
    assert rep.bias.pairs == 8 and rep.bias.chosen_longer_share == 1.0 and rep.bias.length_p < 0.01
    assert rep.bias.chosen_more_formatted_share == 1.0
    assert rep.bias.mean_chosen_chars > rep.bias.mean_rejected_chars
    assert formatting_score(long) == 3 and formatting_score("plain") == 0
    # every vote came within milliseconds of its post: all are faster than reading allows
    assert "votes faster than anyone can read" in rep.annotators[0].flags


def test_resolve_and_requeue(service, db):
    add_items(service, "r", pair_rows(2), overlap=2)
    service.update_campaign("r", CLI, max_extra_votes=0)
    vote_for(service, "U1", "x0", "r", "first")
    res = vote_for(service, "U2", "x0", "r", "second")
    assert res.reached_quorum and res.post.result.consensus is None  # split, no extra votes allowed
    with pytest.raises(PermissionDenied):
        service.resolve_item(actor("U1"), "r", "x0", "m1")
    service.resolve_item(actor("UADMIN"), "r", "x0", "m1")
    with db.read() as s:
        item = s.exec(select(Item).where(Item.external_id == "x0")).one()
        post = s.exec(select(Post).where(Post.item_id == item.id)).first()
    assert item.status == "resolved" and item.resolution["ranking"] == [1, 0]
    assert service.post_view(post.id).result.consensus == letter_of(service, post.id, "second")
    # a vote changed afterwards (now both votes say "first") still gets the admin's answer in its reply
    changed = service.cast_vote(VoteCast(actor("U2"), post.id, letter_of(service, post.id, "first")))
    assert changed.changed and changed.post.result.consensus == letter_of(service, post.id, "second")
    assert quality_report(db, "r").split_items == []
    service.update_campaign("r", CLI, guidelines="New rules")
    note = service.requeue_old_guidelines(actor("UADMIN"), "r")
    assert "Requeued 1 item" in note.text
    with db.read() as s:
        item = s.exec(select(Item).where(Item.external_id == "x0")).one()
    assert item.status == "open" and item.extra_votes == 2  # two fresh votes under version 2


def test_exports_use_resolution_weights_alpha_and_length_balance(service, db, tmp_path):
    import json as _json

    from scheduler.export import export_campaign

    rows = pair_rows(40, texts=("a much longer and more detailed answer", "short"))
    add_items(service, "ex", rows, overlap=6)
    service.update_campaign("ex", CLI, max_extra_votes=0)
    # U1-U4 pick the long answer on 36 items where C1 and C2 always pick the short one
    for i in range(36):
        for u in ("U1", "U2", "U3", "U4"):
            vote_for(service, u, f"x{i}", "ex", "a much")
        for u in ("C1", "C2"):
            vote_for(service, u, f"x{i}", "ex", "short")
    # on the last 4 the two contrarians and a newcomer outvote two reliable voters 3:2 (one tie)
    for i in range(36, 40):
        for u, choice in (("U1", "a much"), ("U2", "a much"), ("U3", "tie"), ("C1", "short"), ("C2", "short"),
                          ("N1", "short")):
            vote_for(service, u, f"x{i}", "ex", choice)

    def pairs(**kw):
        res = export_campaign(db, "ex", "trl", tmp_path / f"d{len(list(tmp_path.iterdir()))}", test_fraction=0,
                              **kw)
        data = [_json.loads(x) for x in (res.path / "train.jsonl").read_text().splitlines()]
        return {d["item_id"]: d["chosen_model"] for d in data}, res.manifest

    majority, manifest = pairs()
    assert majority["x37"] == "m1" and manifest["consensus"]["weights"] is None
    assert manifest["agreement"]["krippendorff_alpha"] is not None
    balanced, manifest = pairs(balance_length=True)
    longer = sum(1 for model in balanced.values() if model == "m0")
    assert manifest["consensus"]["length_balanced"]
    assert len(balanced) - longer == 4 and longer <= 12, longer  # 36 "longer wins" pairs cut to about 4
    service.update_campaign("ex", CLI, consensus="weighted")
    weighted, manifest = pairs()
    assert weighted["x37"] == "m0", "reliable voters outweigh the contrarians"
    assert manifest["consensus"]["method"].endswith("weighted") and manifest["consensus"]["weights"]
    service.resolve_item(actor("UADMIN"), "ex", "x38", "m1")
    resolved, _ = pairs()
    assert resolved["x38"] == "m1" and resolved["x37"] == "m0"
