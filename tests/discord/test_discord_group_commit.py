"""Group commit of votes (LabelingService.cast_votes and the Discord VoteBatcher)."""

from __future__ import annotations

import asyncio

from sqlmodel import select

from bot.adapters.discord.batching import VoteBatcher
from bot.core.errors import CampaignPaused, InvalidInput, NotFound
from bot.core.events import VoteCast
from storage.models import AuditLog, Delivery, Vote
from tests.conftest import actor


def test_batch_commits_each_vote_once_and_isolates_refusals(service, campaign, db):
    posts = service.prepare_posts(campaign, "discord", "200000000000000001", 3)
    u1, u2 = actor("1", "discord", ""), actor("2", "discord", "")
    results = service.cast_votes([
        VoteCast(u1, posts[0].post_id, "A", delivery_id="i-1"),
        VoteCast(u1, posts[0].post_id, "A", delivery_id="i-1"),  # the same delivery replayed in the batch
        VoteCast(u1, posts[0].post_id, "A", delivery_id="i-2"),  # a double click
        VoteCast(u2, 999999, "A", delivery_id="i-3"),  # unknown post: refused, nothing written
        VoteCast(u2, posts[1].post_id, "Z", delivery_id="i-4"),  # bad choice
        VoteCast(u2, posts[1].post_id, "tie", delivery_id="i-5"),
        VoteCast(u2, posts[1].post_id, "B", delivery_id="i-6"),  # a change of vote
    ])
    assert not results[0].replay and results[1].replay and "unchanged" in results[2].summary
    assert isinstance(results[3], NotFound) and isinstance(results[4], InvalidInput)
    assert results[6].changed and results[6].previous == "tie"
    with db.read() as s:
        votes = s.exec(select(Vote).order_by(Vote.item_id)).all()
        deliveries = {d.delivery_id for d in s.exec(select(Delivery))}
        changes = [a for a in s.exec(select(AuditLog)) if a.action == "vote.change"]
    assert [(v.shown_choice, v.annotator_id != votes[0].annotator_id) for v in votes] == [("A", False), ("B", True)]
    assert "i-3" not in deliveries and "i-4" not in deliveries  # a refused vote leaves no trace
    assert len(changes) == 1
    assert service.post_view(posts[0].post_id).vote_count == 1


async def test_batcher_groups_concurrent_votes(service, campaign, db):
    posts = service.prepare_posts(campaign, "discord", "200000000000000001", 6)
    batcher = VoteBatcher(service)
    events = [VoteCast(actor(str(u), "discord", ""), p.post_id, "A", delivery_id=f"b-{u}-{p.post_id}")
              for u in range(3) for p in posts]
    results = await asyncio.gather(*[batcher.cast(e) for e in events[:-1]])
    assert all(not r.replay for r in results)
    assert batcher.batches < len(events) - 1, "concurrent votes should share commits"
    service.set_status(campaign, "paused", actor("x", "cli", ""))
    try:
        await batcher.cast(events[-1])
        raise AssertionError("a paused campaign must refuse the vote")
    except CampaignPaused:
        pass
    await batcher.close()
    with db.read() as s:
        assert len(s.exec(select(Vote)).all()) == len(events) - 1
