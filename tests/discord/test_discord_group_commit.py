"""Group commit of votes (LabelingService.cast_votes and the Discord VoteBatcher)."""

from __future__ import annotations

import asyncio

from sqlalchemy import event
from sqlmodel import select

from bot.adapters.discord.batching import VoteBatcher
from bot.core.errors import CampaignPaused, InvalidInput, NotFound
from bot.core.events import VoteCast
from storage.models import AuditLog, Delivery, Vote
from tests.conftest import CLI, actor


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


def test_refusals_after_the_context_read_leave_nothing_in_a_group_commit(service, campaign, db):
    """Full items and daily caps are refused before any write, so the batch needs no savepoints."""
    posts = service.prepare_posts(campaign, "discord", "200000000000000001", 2)
    service.update_campaign(campaign, CLI, daily_cap=1)
    voters = [actor(str(u), "discord", "") for u in range(4)]
    results = service.cast_votes(
        [VoteCast(v, posts[0].post_id, "A", delivery_id=f"full-{n}") for n, v in enumerate(voters)]  # k=3
        + [VoteCast(voters[0], posts[1].post_id, "B", delivery_id="capped")]  # voter 0's second vote today
    )
    assert [type(r).__name__ for r in results] == ["VoteRecorded"] * 3 + ["ConflictError", "LimitReached"]
    with db.read() as s:
        deliveries = {d.delivery_id for d in s.exec(select(Delivery))}
        assert len(s.exec(select(Vote)).all()) == 3
    assert deliveries == {"full-0", "full-1", "full-2"}


def test_a_vote_costs_few_database_round_trips(service, campaign, db):
    """Context (annotator, current vote and replay check included), claim, insert, counters: no more."""
    posts = service.prepare_posts(campaign, "discord", "200000000000000001", 6)
    voters = [actor(str(u), "discord", "") for u in range(2)]
    service.cast_votes([VoteCast(v, posts[0].post_id, "A", delivery_id=f"w-{n}") for n, v in enumerate(voters)])
    statements: list[str] = []

    def seen(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement.split()[0].upper())

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        batch = [VoteCast(v, p.post_id, "B", delivery_id=f"r-{n}-{p.post_id}")
                 for n, v in enumerate(voters) for p in posts[1:5]]
        assert all(not getattr(r, "replay", True) for r in service.cast_votes(batch))
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    per_vote = 5 if db.engine.dialect.name == "postgresql" else 4  # PostgreSQL locks the item row first
    assert "SAVEPOINT" not in statements
    assert len([s for s in statements if s != "BEGIN"]) <= per_vote * len(batch)
