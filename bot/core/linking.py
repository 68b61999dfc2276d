"""Account linking: one person, one annotator, across Slack and Discord.

`/label link` on one platform shows a one-time code; `/label link CODE` on the other ties the two
accounts together. From then on `storage.queries.annotator_id` resolves both accounts to the same
canonical annotator (the code issuer's), so an item posted on both platforms counts that person once.

Votes cast before the link are merged into the canonical annotator in the same transaction:
- an item only one account voted on keeps that vote (moved to the canonical annotator);
- an item both accounts voted on keeps the most recently updated vote (the person's latest intent,
  the same rule as clicking another choice) and drops the other; the item's vote count goes down by
  one and an item that had reached quorum only through the double count is reopened;
- skips and flags are merged the same way (one per item), corrections and comments move over;
- every merge step is written to the audit log (`link.accounts`, `link.vote_merged`).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import select

from bot.core.errors import InvalidInput, PermissionDenied
from bot.core.events import Actor
from storage import queries as q
from storage.db import Database
from storage.models import (
    Annotator,
    AuditLog,
    Campaign,
    Comment,
    Correction,
    Flag,
    LinkCode,
    Skip,
    Vote,
    utcnow,
)

CODE_TTL = timedelta(minutes=10)
ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789"  # no 0/O, 1/I/L, U: easy to read and type
CODE_CHARS = 8
MAX_FAILURES = 5  # wrong codes per account per CODE_TTL before redeeming is refused


@dataclass(frozen=True)
class IssuedCode:
    code: str  # shown to the person, e.g. "K7QX-M2PD"
    expires_at: datetime


@dataclass(frozen=True)
class LinkResult:
    canonical_id: int
    linked: list[tuple[str, str]]  # (platform, user_id) of every account now sharing the annotator
    votes_moved: int
    votes_dropped: int
    already: bool = False

    @property
    def text(self) -> str:
        accounts = ", ".join(f"{p}:{u}" for p, u in self.linked)
        if self.already:
            return f"These accounts are already linked ({accounts})."
        merged = ""
        if self.votes_moved or self.votes_dropped:
            merged = (f" {self.votes_moved} earlier vote(s) moved over; {self.votes_dropped} duplicate vote(s) on the"
                      " same item merged (your most recent choice kept).")
        return f"Linked: {accounts} now count as one annotator.{merged}"


def normalise_code(raw: str) -> str:
    return "".join(ch for ch in (raw or "").upper() if ch.isalnum())


def _hash(code: str) -> str:
    return hashlib.sha256(normalise_code(code).encode()).hexdigest()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _own_row(s: Any, actor: Actor) -> Annotator:
    """The actor's own annotator row (not the canonical one), created on first sight."""
    actor.check()
    q.annotator_id(s, actor.platform, actor.workspace, actor.user_id, actor.display_name)
    return s.exec(select(Annotator).where(Annotator.platform == actor.platform, Annotator.workspace == actor.workspace,
                                         Annotator.user_id == actor.user_id)).one()


def _group(s: Any, root: int) -> list[Annotator]:
    return list(s.exec(select(Annotator).where((Annotator.id == root) | (Annotator.linked_to_id == root))
                       .order_by(Annotator.id)))


def issue_code(db: Database, actor: Actor) -> IssuedCode:
    """A fresh one-time code for this account; earlier unused codes of the account stop working."""
    raw = "".join(secrets.choice(ALPHABET) for _ in range(CODE_CHARS))
    now = utcnow()
    with db.write() as s:
        own = _own_row(s, actor)
        for old in s.exec(select(LinkCode).where(LinkCode.annotator_id == own.id, LinkCode.used_at.is_(None))):
            old.expires_at = now
            s.add(old)
        s.add(LinkCode(code_hash=_hash(raw), annotator_id=own.id, expires_at=now + CODE_TTL))
        q.add_audit(s, actor.key, "link.code_issued", annotator_id=own.id)
    return IssuedCode(f"{raw[:4]}-{raw[4:]}", now + CODE_TTL)


def linked_accounts(db: Database, actor: Actor) -> list[tuple[str, str]]:
    """(platform, user_id) of every account that counts as the same annotator as `actor`."""
    with db.read() as s:
        row = s.exec(select(Annotator).where(Annotator.platform == actor.platform,
                                             Annotator.workspace == actor.workspace,
                                             Annotator.user_id == actor.user_id)).first()
        if row is None:
            return [(actor.platform, actor.user_id)]
        return [(a.platform, a.user_id) for a in _group(s, row.linked_to_id or row.id)]


def redeem_code(db: Database, actor: Actor, code: str) -> LinkResult:
    """Link `actor` to the account that issued `code` and merge their earlier votes (see module doc)."""
    clean = normalise_code(code)
    if len(clean) != CODE_CHARS or any(ch not in ALPHABET for ch in clean):
        raise InvalidInput("That is not a link code. Run `/label link` on your other account to get one "
                           "(it looks like `K7QX-M2PD`).")
    now = utcnow()
    with db.read() as s:
        recent = s.exec(select(AuditLog.id).where(AuditLog.actor == actor.key, AuditLog.action == "link.failed",
                                                  AuditLog.at >= now - CODE_TTL)).all()
    if len(recent) >= MAX_FAILURES:
        raise PermissionDenied("Too many wrong link codes. Wait ten minutes and ask for a new code.")
    with db.write() as s:
        row = s.exec(select(LinkCode).where(LinkCode.code_hash == _hash(clean)).with_for_update()).first()
        valid = row is not None and row.used_at is None and _aware(row.expires_at) > now
        if valid:
            return _link(s, actor, row, now)
    with db.write() as s:
        q.add_audit(s, actor.key, "link.failed")
    raise InvalidInput("That link code is wrong, used or expired (codes last 10 minutes). "
                       "Run `/label link` on your other account for a new one.")


def _link(s: Any, actor: Actor, code: LinkCode, now: datetime) -> LinkResult:
    issuer = s.get(Annotator, code.annotator_id)
    me = _own_row(s, actor)
    if me.id == issuer.id:
        raise InvalidInput("That code is for this same account: enter it on your *other* platform account.")
    root = issuer.linked_to_id or issuer.id
    mine = me.linked_to_id or me.id
    code.used_at, code.used_by_id = now, me.id
    s.add(code)
    if root == mine:
        return LinkResult(root, [(a.platform, a.user_id) for a in _group(s, root)], 0, 0, already=True)
    group = _group(s, mine)
    ids = [a.id for a in group]
    for acc in group:
        acc.linked_to_id = root
        s.add(acc)
    s.flush()
    moved, dropped = _merge_votes(s, actor, ids, root)
    _merge_unique(s, Skip, ids, root)
    _merge_unique(s, Flag, ids, root)
    for table in (Correction, Comment):
        for row in s.exec(select(table).where(table.annotator_id.in_(ids))):
            row.annotator_id = root
            s.add(row)
    linked = [(a.platform, a.user_id) for a in _group(s, root)]
    q.add_audit(s, actor.key, "link.accounts", canonical_id=root, merged_ids=ids, accounts=[list(x) for x in linked],
                votes_moved=moved, votes_dropped=dropped)
    return LinkResult(root, linked, moved, dropped)


def _merge_votes(s: Any, actor: Actor, ids: list[int], root: int) -> tuple[int, int]:
    moved = dropped = 0
    votes = list(s.exec(select(Vote).where(Vote.annotator_id.in_(ids)).order_by(Vote.item_id, Vote.id)))
    for vote in votes:
        item = q.lock_item(s, vote.item_id)
        other = q.vote_of(s, root, vote.item_id)
        if other is None:
            vote.annotator_id = root
            s.add(vote)
            s.flush()
            moved += 1
            continue
        keep, drop = (vote, other) if _aware(vote.updated_at) > _aware(other.updated_at) else (other, vote)
        q.add_audit(s, actor.key, "link.vote_merged", item_id=item.id, kept_vote_id=keep.id, dropped_vote_id=drop.id,
                    dropped={"outcome": drop.outcome, "ranking": drop.ranking, "annotator_id": drop.annotator_id,
                             "shown": drop.shown_choice})
        s.delete(drop)
        s.flush()
        if keep is vote:
            vote.annotator_id = root
            s.add(vote)
        item.vote_count = max(0, item.vote_count - 1)
        camp = s.get(Campaign, item.campaign_id)
        if item.status == "complete" and item.vote_count < camp.overlap + item.extra_votes:
            item.status = "open"
            q.add_audit(s, "system", "item.reopened", campaign_id=camp.id, item_id=item.id,
                        reason="duplicate vote merged by account link", vote_count=item.vote_count)
        s.add(item)
        s.flush()
        dropped += 1
    return moved, dropped


def _merge_unique(s: Any, table: Any, ids: list[int], root: int) -> None:
    """Move (annotator, item)-unique rows to `root`, dropping those `root` already has."""
    have = set(s.exec(select(table.item_id).where(table.annotator_id == root)))
    for row in list(s.exec(select(table).where(table.annotator_id.in_(ids)))):
        if row.item_id in have:
            s.delete(row)
        else:
            have.add(row.item_id)
            row.annotator_id = root
            s.add(row)
        s.flush()

