"""Named queries. The core calls these instead of composing SQL itself."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, select

from storage.domain import DONE_STATUSES, ItemStatus
from storage.models import (
    Annotator,
    AuditLog,
    Campaign,
    CampaignChannel,
    Correction,
    Delivery,
    ExportRecord,
    Flag,
    Item,
    Post,
    Response,
    Role,
    Skip,
    Vote,
    utcnow,
)


def _insert(session: Session, table: Any):  # type: ignore[no-untyped-def]
    """A dialect insert that supports ON CONFLICT DO NOTHING (SQLite and PostgreSQL)."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def insert_ignore(session: Session, table: Any, values: dict[str, Any], conflict: Sequence[str]) -> bool:
    """Insert a row unless one with the same `conflict` key exists; True when inserted."""
    tbl = table.__table__
    stmt = (
        _insert(session, tbl).values(**values).on_conflict_do_nothing(index_elements=list(conflict))
        .returning(tbl.c[conflict[0]])
    )
    return session.connection().execute(stmt).first() is not None


# --- campaigns ----------------------------------------------------------------------------------


def campaign_by_name(session: Session, name: str) -> Campaign | None:
    return session.exec(select(Campaign).where(Campaign.name == name)).first()


def list_campaigns(session: Session) -> list[Campaign]:
    return list(session.exec(select(Campaign).order_by(Campaign.id)))


def campaigns_for_channel(session: Session, platform: str, channel: str) -> list[Campaign]:
    """Campaigns posting to `channel` on `platform`, oldest first."""
    bound = select(CampaignChannel.campaign_id).where(CampaignChannel.platform == platform,
                                                      CampaignChannel.channel == channel)
    return list(session.exec(select(Campaign).where(Campaign.id.in_(bound)).order_by(Campaign.id)))


def campaign_channels(session: Session, campaign_id: int, platform: str | None = None) -> list[CampaignChannel]:
    """The channels a campaign posts to (all platforms, or one), in the order they were added."""
    stmt = select(CampaignChannel).where(CampaignChannel.campaign_id == campaign_id)
    if platform is not None:
        stmt = stmt.where(CampaignChannel.platform == platform)
    return list(session.exec(stmt.order_by(CampaignChannel.id)))


def all_campaign_channels(session: Session) -> dict[int, list[CampaignChannel]]:
    """campaign id -> its channels, for listings (one query for every campaign)."""
    out: dict[int, list[CampaignChannel]] = {}
    for row in session.exec(select(CampaignChannel).order_by(CampaignChannel.id)):
        out.setdefault(row.campaign_id, []).append(row)
    return out


def set_campaign_channel(session: Session, campaign_id: int, platform: str, channel: str | None,
                         workspace: str = "") -> None:
    """Make `channel` the campaign's one channel on `platform` (None or "" removes the platform's channels)."""
    for row in campaign_channels(session, campaign_id, platform):
        session.delete(row)
    session.flush()
    if channel:
        session.add(CampaignChannel(campaign_id=campaign_id, platform=platform, workspace=workspace,
                                    channel=channel))



def campaign_counts(session: Session, campaign_id: int) -> dict[str, int]:
    """Items, complete items, votes, annotators, flags, skips, corrections of one campaign."""
    items = select(Item.id).where(Item.campaign_id == campaign_id).scalar_subquery()

    def count(stmt: Any) -> int:
        return int(session.exec(stmt).one())

    return {
        "items": count(select(func.count()).select_from(Item).where(Item.campaign_id == campaign_id)),
        "complete_items": count(
            select(func.count()).select_from(Item).where(
                Item.campaign_id == campaign_id, Item.status.in_(DONE_STATUSES)
            )
        ),
        "flagged_items": count(
            select(func.count()).select_from(Item).where(Item.campaign_id == campaign_id,
                                                         Item.status == ItemStatus.FLAGGED)
        ),
        "votes": count(select(func.count()).select_from(Vote).where(Vote.item_id.in_(items))),
        "annotators": count(select(func.count(func.distinct(Vote.annotator_id))).where(Vote.item_id.in_(items))),
        "skips": count(select(func.count()).select_from(Skip).where(Skip.item_id.in_(items))),
        "corrections": count(select(func.count()).select_from(Correction).where(Correction.item_id.in_(items))),
    }


def votes_per_item_histogram(session: Session, campaign_id: int) -> dict[int, int]:
    rows = session.exec(
        select(Item.vote_count, func.count()).where(Item.campaign_id == campaign_id).group_by(Item.vote_count)
    )
    return {int(k): int(v) for k, v in rows}


# --- items --------------------------------------------------------------------------------------


def existing_external_ids(session: Session, campaign_id: int, ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(ids), 500):
        chunk = list(ids[start : start + 500])
        found.update(
            session.exec(select(Item.external_id).where(Item.campaign_id == campaign_id, Item.external_id.in_(chunk)))
        )
    return found


def lock_item(session: Session, item_id: int) -> Item | None:
    """Load an item, locking its row on PostgreSQL so votes on one item apply one at a time."""
    return session.exec(select(Item).where(Item.id == item_id).with_for_update()).first()


def item_responses(session: Session, item_id: int) -> list[Response]:
    return list(session.exec(select(Response).where(Response.item_id == item_id).order_by(Response.position)))






def item_by_external_id(session: Session, campaign_id: int, external_id: str) -> Item | None:
    return session.exec(select(Item).where(Item.campaign_id == campaign_id, Item.external_id == external_id)).first()


def items_with_old_votes(session: Session, campaign_id: int, version: int) -> list[tuple[Item, int]]:
    """Items of a campaign with votes cast under a guideline version older than `version`."""
    rows = session.exec(
        select(Item, func.count(Vote.id)).join(Vote, Vote.item_id == Item.id)
        .where(Item.campaign_id == campaign_id, Vote.guideline_version < version).group_by(Item.id)
    )
    return [(item, int(n)) for item, n in rows]


def annotator_vote_counts(session: Session, campaign_id: int, annotator: int) -> tuple[int, int, int]:
    """(votes today (UTC), votes in the campaign, all votes in the campaign) for the caps."""
    from datetime import datetime, time

    midnight = datetime.combine(utcnow().date(), time.min, tzinfo=utcnow().tzinfo)
    base = select(func.count()).select_from(Vote).join(Item, Item.id == Vote.item_id).where(
        Item.campaign_id == campaign_id)
    today = session.exec(base.where(Vote.annotator_id == annotator, Vote.created_at >= midnight)).one()
    mine = session.exec(base.where(Vote.annotator_id == annotator)).one()
    total = session.exec(base).one()
    return int(today), int(mine), int(total)




# --- annotators and roles -----------------------------------------------------------------------


def annotator_id(session: Session, platform: str, workspace: str, user_id: str, name: str | None) -> int:
    """The canonical annotator id for a platform user (created on first sight, links followed)."""
    found = find_annotator(session, platform, workspace, user_id)
    if found is not None:
        return found
    insert_ignore(
        session, Annotator,
        {"platform": platform, "workspace": workspace, "user_id": user_id, "display_name": name,
         "created_at": utcnow()},
        ("platform", "workspace", "user_id"),
    )
    found = find_annotator(session, platform, workspace, user_id)
    assert found is not None
    return found


def has_role(session: Session, platform: str, user_id: str, role: str = "admin") -> bool:
    return (
        session.exec(
            select(Role.id).where(Role.platform == platform, Role.user_id == user_id, Role.role == role)
        ).first()
        is not None
    )


# --- votes --------------------------------------------------------------------------------------


_CLAIM: dict[str, Any] = {}


def claim_delivery(session: Session, delivery_id: str, kind: str) -> bool:
    """Record a platform delivery id; False when it was already applied (a replay)."""
    dialect = session.get_bind().dialect.name
    stmt = _CLAIM.get(dialect)
    if stmt is None:
        tbl = Delivery.__table__
        ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(tbl)
        stmt = _CLAIM[dialect] = ins.on_conflict_do_nothing(index_elements=["delivery_id"]).returning(
            tbl.c.delivery_id)
    params = {"delivery_id": delivery_id, "kind": kind, "result": {}, "created_at": utcnow()}
    return session.connection().execute(stmt, params).first() is not None


# Statements on the vote path are built once with bind parameters: rebuilding them per call costs more
# than executing them.
_P, _I, _C, _A, _V = Post.__table__, Item.__table__, Campaign.__table__, Annotator.__table__, Vote.__table__
_D = Delivery.__table__
_VOTER = func.coalesce(_A.c.linked_to_id, _A.c.id)  # the canonical annotator (links followed)
_VOTE_CONTEXT = (
    select(
        _P.c.id.label("post_id"), _P.c.permutation, _I.c.id.label("item_id"), _I.c.external_id, _I.c.prompt,
        _I.c.gold, _I.c.n_responses, _I.c.vote_count, _I.c.extra_votes, _I.c.status, _I.c.campaign_id,
        _C.c.name, _C.c.status.label("campaign_status"), _C.c.overlap, _C.c.reveal, _C.c.criteria,
        _C.c.guideline_version, _C.c.guidelines, _C.c.agreement_threshold, _C.c.max_extra_votes,
        _C.c.daily_cap, _C.c.settings, _I.c.resolution, _P.c.created_at.label("post_created_at"),
        _VOTER.label("annotator_id"), _V.c.id.label("vote_id"), _V.c.outcome.label("vote_outcome"),
        _V.c.ranking.label("vote_ranking"), _V.c.scores.label("vote_scores"),
        _D.c.delivery_id.label("delivery_seen"),
    )
    .select_from(
        _P.join(_I, _I.c.id == _P.c.item_id).join(_C, _C.c.id == _I.c.campaign_id)
        .outerjoin(_A, and_(_A.c.platform == bindparam("platform"), _A.c.workspace == bindparam("workspace"),
                            _A.c.user_id == bindparam("user_id")))
        .outerjoin(_V, and_(_V.c.item_id == _I.c.id, _V.c.annotator_id == _VOTER))
        .outerjoin(_D, _D.c.delivery_id == bindparam("delivery_id"))
    )
    .where(_P.c.id == bindparam("post_id"))
)
_LOCK_ITEM_OF_POST = (
    select(_I.c.id).where(_I.c.id == select(_P.c.item_id).where(_P.c.id == bindparam("post_id")).scalar_subquery())
    .with_for_update()
)
_FIND_ANNOTATOR = select(_A.c.id, _A.c.linked_to_id).where(
    _A.c.platform == bindparam("platform"), _A.c.workspace == bindparam("workspace"),
    _A.c.user_id == bindparam("user_id"),
)
_SET_ITEM_COUNTERS = (
    update(_I).where(_I.c.id == bindparam("b_item"))
    .values(vote_count=bindparam("b_votes"), extra_votes=bindparam("b_extra"), status=bindparam("b_status"))
)


def vote_context(session: Session, post_id: int, platform: str, workspace: str, user_id: str,
                 delivery_id: str | None = None, *, lock: bool = True) -> Any:
    """Everything a vote needs in one query, read after the item row is locked.

    Post, item and campaign fields, the voter's annotator id (`annotator_id`, None for a first-time
    user), their current vote on the item (`vote_id`, `vote_outcome`, `vote_ranking`, `vote_scores`;
    None when they have not voted on it) and whether `delivery_id` was already applied
    (`delivery_seen`). On PostgreSQL the item row is locked by a statement of its own first: a
    statement that waits for a row lock keeps the snapshot it started with, so reading the votes in
    the locking statement would miss a concurrent vote committed during the wait. SQLite's write
    transaction (BEGIN IMMEDIATE) already serialises writers.
    """
    params = {"post_id": post_id, "platform": platform, "workspace": workspace, "user_id": user_id,
              "delivery_id": delivery_id}
    conn = session.connection()
    if lock and conn.dialect.name == "postgresql":
        conn.execute(_LOCK_ITEM_OF_POST, params)
    return conn.execute(_VOTE_CONTEXT, params).first()


def find_annotator(session: Session, platform: str, workspace: str, user_id: str) -> int | None:
    row = session.connection().execute(
        _FIND_ANNOTATOR, {"platform": platform, "workspace": workspace, "user_id": user_id}
    ).first()
    return None if row is None else int(row[1] or row[0])


def update_vote(session: Session, vote_id: int, **values: Any) -> None:
    session.connection().execute(update(_V).where(_V.c.id == vote_id).values(updated_at=utcnow(), **values))


def insert_vote(session: Session, **values: Any) -> None:
    """Insert a vote row."""
    now = utcnow()
    session.connection().execute(_V.insert(), {"created_at": now, "updated_at": now, **values})


def set_item_counters(session: Session, item_id: int, *, vote_count: int, extra_votes: int, status: str) -> None:
    session.connection().execute(
        _SET_ITEM_COUNTERS, {"b_item": item_id, "b_votes": vote_count, "b_extra": extra_votes, "b_status": status}
    )


def vote_of(session: Session, annotator: int, item_id: int) -> Vote | None:
    return session.exec(select(Vote).where(Vote.annotator_id == annotator, Vote.item_id == item_id)).first()


def item_votes(session: Session, item_id: int) -> list[Vote]:
    return list(session.exec(select(Vote).where(Vote.item_id == item_id).order_by(Vote.id)))


def add_audit(
    session: Session, actor: str, action: str, *, campaign_id: int | None = None, item_id: int | None = None,
    **details: Any,
) -> None:
    session.connection().execute(
        AuditLog.__table__.insert(),
        {"at": utcnow(), "actor": actor, "action": action, "campaign_id": campaign_id, "item_id": item_id,
         "details": details},
    )




def post_for_thread(session: Session, platform: str, thread_id: str) -> Post | None:
    return session.exec(
        select(Post).where(
            Post.platform == platform, or_(Post.thread_id == thread_id, Post.message_id == thread_id)
        ).order_by(Post.id)
    ).first()


# --- streams for stats and export ---------------------------------------------------------------


def stream_campaign_votes(session: Session, campaign_id: int, *, max_vote_id: int | None = None,
                          batch: int = 20000) -> Iterator[tuple[Any, ...]]:
    """(item_id, outcome, ranking_json, vote_id) for every vote of a campaign, ordered by item."""
    conn = session.connection()
    sql = (
        "SELECT v.item_id, v.outcome, v.ranking, v.id FROM vote v JOIN item i ON i.id = v.item_id "
        "WHERE i.campaign_id = :c" + (" AND v.id <= :m" if max_vote_id is not None else "") +
        " ORDER BY v.item_id, v.id"
    )
    from sqlalchemy import text

    result = conn.execution_options(stream_results=True, yield_per=batch).execute(
        text(sql), {"c": campaign_id, "m": max_vote_id}
    )
    for part in result.partitions(batch):
        yield from part


def pairwise_battle_counts(session: Session, campaign_id: int) -> list[tuple[str, str, str, int | None, int]]:
    """(model_0, model_1, outcome, winner, count) for two-response items, aggregated in SQL."""
    from sqlalchemy import text

    sql = text(
        "SELECT r0.model, r1.model, v.outcome, v.winner, COUNT(*) FROM vote v "
        "JOIN item i ON i.id = v.item_id "
        "JOIN response r0 ON r0.item_id = v.item_id AND r0.position = 0 "
        "JOIN response r1 ON r1.item_id = v.item_id AND r1.position = 1 "
        "WHERE i.campaign_id = :c AND i.n_responses = 2 "
        "GROUP BY r0.model, r1.model, v.outcome, v.winner"
    )
    return [tuple(r) for r in session.connection().execute(sql, {"c": campaign_id})]


def multiway_votes(session: Session, campaign_id: int) -> Iterator[tuple[int, str, Any]]:
    """(item_id, outcome, ranking) of votes on items with more than two responses."""
    stmt = (
        select(Vote.item_id, Vote.outcome, Vote.ranking)
        .join(Item, Item.id == Vote.item_id)
        .where(Item.campaign_id == campaign_id, Item.n_responses > 2)
        .order_by(Vote.item_id)
    )
    yield from session.exec(stmt)


def models_by_item(session: Session, item_ids: Sequence[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for start in range(0, len(item_ids), 500):
        chunk = list(item_ids[start : start + 500])
        rows = session.exec(
            select(Response.item_id, Response.position, Response.model)
            .where(Response.item_id.in_(chunk))
            .order_by(Response.item_id, Response.position)
        )
        for item_id, _pos, model in rows:
            out.setdefault(item_id, []).append(model)
    return out


def latest_export(session: Session, campaign_id: int, fmt: str) -> ExportRecord | None:
    return session.exec(
        select(ExportRecord)
        .where(ExportRecord.campaign_id == campaign_id, ExportRecord.format == fmt)
        .order_by(ExportRecord.version.desc())
    ).first()


def max_vote_id(session: Session, campaign_id: int) -> int:
    value = session.exec(
        select(func.max(Vote.id)).join(Item, Item.id == Vote.item_id).where(Item.campaign_id == campaign_id)
    ).one()
    return int(value or 0)




def flags_of(session: Session, item_id: int) -> list[Flag]:
    return list(session.exec(select(Flag).where(Flag.item_id == item_id)))



# --- invites to the browser voting page ---------------------------------------------------------


def app_secret(session: Session, name: str, make: Any) -> str:
    """The shared random key `name`, created with `make()` on first use (concurrent first uses agree)."""
    from storage.models import AppSecret

    insert_ignore(session, AppSecret, {"name": name, "value": make(), "created_at": utcnow()}, ("name",))
    return session.exec(select(AppSecret.value).where(AppSecret.name == name)).one()


def app_secret_value(session: Session, name: str) -> str | None:
    from storage.models import AppSecret

    return session.exec(select(AppSecret.value).where(AppSecret.name == name)).first()


def invite_with_campaign(session: Session, invite_id: int) -> tuple[Any, Campaign] | None:
    """(invite, its campaign) or None."""
    from storage.models import Invite

    row = session.exec(select(Invite, Campaign).join(Campaign, Campaign.id == Invite.campaign_id)
                       .where(Invite.id == invite_id)).first()
    return None if row is None else (row[0], row[1])


def campaign_invites(session: Session, campaign_id: int) -> list[Any]:
    from storage.models import Invite

    return list(session.exec(select(Invite).where(Invite.campaign_id == campaign_id).order_by(Invite.id)))


def open_post_of(session: Session, campaign_id: int, platform: str, workspace: str, user_id: str,
                 channel: str) -> Post | None:
    """The person's newest post of the campaign in `channel`, if its item is open and they have neither voted
    on it nor skipped it; else None.

    For personal channels (the browser page deals each voter posts in a channel of their own), so a reload
    shows the same item in the same order instead of dealing a new one. Index lookups only
    (`ix_post_personal`, the vote and skip unique keys): its cost does not grow with the votes."""
    post = session.exec(
        select(Post).join(Item, Item.id == Post.item_id)
        .where(Post.platform == platform, Post.workspace == workspace, Post.channel == channel,
               Item.campaign_id == campaign_id)
        .order_by(Post.id.desc()).limit(1)
    ).first()
    if post is None:
        return None
    item = session.get(Item, post.item_id)
    if item is None or item.status != ItemStatus.OPEN:
        return None
    ann = find_annotator(session, platform, workspace, user_id)
    if ann is None:
        return post
    done = session.exec(select(Vote.id).where(Vote.annotator_id == ann, Vote.item_id == post.item_id)).first()
    skipped = session.exec(select(Skip.id).where(Skip.annotator_id == ann, Skip.item_id == post.item_id)).first()
    return None if done is not None or skipped is not None else post
