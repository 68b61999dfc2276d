"""Account linking in the core: codes, one annotator per person, merging earlier votes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from bot.adapters.commands import handle
from bot.config import Settings
from bot.core import linking
from bot.core.errors import InvalidInput, PermissionDenied
from bot.core.events import VoteCast
from storage.models import Annotator, AuditLog, Item, LinkCode, Vote
from tests.conftest import actor

SLACK = actor("U1", "slack", "T1")
DISCORD = actor("300000000000000001", "discord", "")


def _code(text: str) -> str:
    return text.split("`")[1]


def test_link_via_shared_dispatcher_counts_one_vote_per_person(service, campaign, db):
    s_post = service.prepare_posts(campaign, "slack", "C123", 1)[0]
    d_post = service.prepare_posts(campaign, "discord", "200000000000000001", 1)[0]
    assert s_post.item_id == d_post.item_id  # the same item cross-posted
    reply = handle(service, Settings(), SLACK, "link")
    assert reply.ok and "valid 10 minutes" in reply.text
    reply = handle(service, Settings(), DISCORD, f"link {_code(reply.text).lower()}")
    assert reply.ok and "now count as one annotator" in reply.text, reply.text
    service.cast_vote(VoteCast(SLACK, s_post.post_id, "A", delivery_id="s-1"))
    res = service.cast_vote(VoteCast(DISCORD, d_post.post_id, "B", delivery_id="d-1"))
    assert res.changed and res.post.vote_count == 1
    with db.read() as s:
        assert len(s.exec(select(Vote)).all()) == 1
        accounts = s.exec(select(Annotator)).all()
    assert len({a.linked_to_id or a.id for a in accounts}) == 1


def test_link_merges_earlier_votes_keeping_latest_and_reopens_item(service, campaign, db):
    service.update_campaign(campaign, actor("x", "cli", ""), overlap=2, max_extra_votes=0)
    s_post = service.prepare_posts(campaign, "slack", "C123", 2)
    d_post = service.prepare_posts(campaign, "discord", "200000000000000001", 2)
    service.cast_vote(VoteCast(SLACK, s_post[0].post_id, "A"))
    service.cast_vote(VoteCast(DISCORD, d_post[0].post_id, "tie"))  # later: kept
    service.cast_vote(VoteCast(DISCORD, d_post[1].post_id, "both_bad"))  # only on Discord: moved
    with db.read() as s:
        assert s.get(Item, s_post[0].item_id).status == "complete"  # reached k=2 through the double count
    issued = linking.issue_code(db, SLACK)
    result = linking.redeem_code(db, DISCORD, issued.code)
    assert (result.votes_moved, result.votes_dropped) == (1, 1)
    with db.read() as s:
        votes = s.exec(select(Vote).order_by(Vote.item_id)).all()
        item = s.get(Item, s_post[0].item_id)
        audit = [a.action for a in s.exec(select(AuditLog))]
    assert [v.outcome for v in votes] == ["tie", "both_bad"]
    assert {v.annotator_id for v in votes} == {result.canonical_id}
    assert item.vote_count == 1 and item.status == "open"
    assert {"link.accounts", "link.vote_merged", "item.reopened"} <= set(audit)


def test_bad_codes_change_nothing_and_are_rate_limited(service, campaign, db):
    issued = linking.issue_code(db, SLACK)
    with pytest.raises(InvalidInput):
        linking.redeem_code(db, SLACK, issued.code)  # same account
    with pytest.raises(InvalidInput):
        linking.redeem_code(db, DISCORD, "not a code")
    for _ in range(linking.MAX_FAILURES):
        with pytest.raises(InvalidInput):
            linking.redeem_code(db, DISCORD, "AAAA-AAAA")
    with pytest.raises(PermissionDenied):
        linking.redeem_code(db, DISCORD, issued.code)  # even the right code, once locked out
    with db.read() as s:
        assert all(a.linked_to_id is None for a in s.exec(select(Annotator)))
        assert s.exec(select(LinkCode)).one().used_at is None


def test_codes_expire_work_once_and_new_code_replaces_old(service, campaign, db):
    first = linking.issue_code(db, SLACK)
    second = linking.issue_code(db, SLACK)
    with pytest.raises(InvalidInput):
        linking.redeem_code(db, DISCORD, first.code)
    other = actor("300000000000000002", "discord", "")
    with db.write() as s:
        row = s.exec(select(LinkCode).where(LinkCode.used_at.is_(None))).all()
        for r in row:
            r.expires_at = r.expires_at - timedelta(minutes=11)
            s.add(r)
    with pytest.raises(InvalidInput):
        linking.redeem_code(db, DISCORD, second.code)
    third = linking.issue_code(db, SLACK)
    assert "now count as one" in linking.redeem_code(db, DISCORD, third.code).text
    with pytest.raises(InvalidInput):
        linking.redeem_code(db, other, third.code)  # used
    assert sorted(linking.linked_accounts(db, DISCORD)) == [("discord", DISCORD.user_id), ("slack", "U1")]
