"""SQLModel tables. Schema changes go through Alembic (storage/migrations).

Response positions are the item's original order (0-based); what a voter saw is the post's
permutation, so every vote is stored in canonical positions and the shown letter is kept for
position-bias analysis.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class Campaign(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=100)
    guidelines: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    guideline_version: int = 1
    overlap: int = 3
    criteria: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    slack_channel: str | None = None
    discord_channel: str | None = None
    status: str = "active"  # active | paused
    reveal: str = "quorum"  # quorum | never | always: when model names and tallies show
    max_extra_votes: int = 2
    agreement_threshold: float = 0.6
    gold_rate: float = 0.1
    daily_cap: int | None = None
    settings: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class Guideline(SQLModel, table=True):
    """Every guideline text a campaign ever had, so votes can cite the version they saw."""

    __table_args__ = (UniqueConstraint("campaign_id", "version"),)
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    version: int
    text: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class Item(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("campaign_id", "external_id"),
        Index("ix_item_campaign_votes", "campaign_id", "vote_count", "id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id")
    external_id: str = Field(max_length=200)
    prompt: Any = Field(sa_column=Column(JSON, nullable=False))  # str or list of chat messages
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    gold: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True), nullable=True))
    n_responses: int = 2
    vote_count: int = 0
    extra_votes: int = 0  # extra votes requested because the first k split
    status: str = "open"  # open | complete | flagged | resolved
    created_at: datetime = Field(default_factory=utcnow)


class Response(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("item_id", "position"),)
    id: int | None = Field(default=None, primary_key=True)
    item_id: int = Field(foreign_key="item.id", index=True)
    position: int
    model: str = Field(default="", max_length=200)
    text: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    image: str | None = None
    audio: str | None = None


class Annotator(SQLModel, table=True):
    """A person on one platform; `linked_to_id` points at the annotator they were linked to."""

    __table_args__ = (UniqueConstraint("platform", "workspace", "user_id"),)
    id: int | None = Field(default=None, primary_key=True)
    platform: str = Field(max_length=20)
    workspace: str = Field(default="", max_length=64)
    user_id: str = Field(max_length=64)
    display_name: str | None = None
    linked_to_id: int | None = Field(default=None, foreign_key="annotator.id")
    created_at: datetime = Field(default_factory=utcnow)


class Role(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("platform", "user_id", "role"),)
    id: int | None = Field(default=None, primary_key=True)
    platform: str = Field(max_length=20)
    user_id: str = Field(max_length=64)
    role: str = "admin"
    granted_by: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Post(SQLModel, table=True):
    """Where an item appeared; `permutation[i]` is the response position shown as letter i."""

    id: int | None = Field(default=None, primary_key=True)
    item_id: int = Field(foreign_key="item.id", index=True)
    platform: str = Field(max_length=20)
    workspace: str = Field(default="", max_length=64)
    channel: str = Field(default="", max_length=64)
    message_id: str | None = Field(default=None, max_length=64, index=True)
    thread_id: str | None = Field(default=None, max_length=64)
    permutation: list[int] = Field(sa_column=Column(JSON, nullable=False))
    revealed: bool = False
    created_at: datetime = Field(default_factory=utcnow)


class Vote(SQLModel, table=True):
    """One row per (annotator, item); a later click updates it and the audit log keeps history."""

    __table_args__ = (
        UniqueConstraint("annotator_id", "item_id", name="uq_vote_annotator_item"),
        Index("ix_vote_item", "item_id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    item_id: int = Field(foreign_key="item.id")
    annotator_id: int = Field(foreign_key="annotator.id", index=True)
    post_id: int | None = Field(default=None, foreign_key="post.id")
    outcome: str = Field(max_length=16)  # win | tie | both_bad | ranking
    ranking: list[int] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True), nullable=True))
    winner: int | None = None  # position ranked first (None for tie / both_bad): fast SQL aggregates
    shown_choice: str | None = Field(default=None, max_length=16)  # letter clicked (A, B, ...)
    scores: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True), nullable=True))
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    guideline_version: int = 1
    delivery_id: str | None = Field(default=None, max_length=128)
    is_gold_check: bool = False
    gold_correct: bool | None = None
    latency_ms: int | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Delivery(SQLModel, table=True):
    """Platform delivery ids already applied, so a replayed delivery is recognised, not re-applied."""

    delivery_id: str = Field(primary_key=True, max_length=160)
    kind: str = Field(max_length=32)
    result: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class Skip(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("annotator_id", "item_id"),)
    id: int | None = Field(default=None, primary_key=True)
    item_id: int = Field(foreign_key="item.id", index=True)
    annotator_id: int = Field(foreign_key="annotator.id")
    created_at: datetime = Field(default_factory=utcnow)


class Flag(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("annotator_id", "item_id"),)
    id: int | None = Field(default=None, primary_key=True)
    item_id: int = Field(foreign_key="item.id", index=True)
    annotator_id: int = Field(foreign_key="annotator.id")
    reason: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    created_at: datetime = Field(default_factory=utcnow)


class Correction(SQLModel, table=True):
    """An annotator's edited version of one response (feeds `sft` and `correction-pairs`)."""

    id: int | None = Field(default=None, primary_key=True)
    item_id: int = Field(foreign_key="item.id", index=True)
    annotator_id: int = Field(foreign_key="annotator.id")
    position: int
    text: str = Field(sa_column=Column(Text, nullable=False))
    guideline_version: int = 1
    delivery_id: str | None = Field(default=None, max_length=128)
    created_at: datetime = Field(default_factory=utcnow)


class Comment(SQLModel, table=True):
    """A thread reply about an item."""

    id: int | None = Field(default=None, primary_key=True)
    item_id: int = Field(foreign_key="item.id", index=True)
    annotator_id: int = Field(foreign_key="annotator.id")
    platform: str = Field(max_length=20)
    message_id: str | None = Field(default=None, max_length=64)
    text: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class AuditLog(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor: str = Field(max_length=120)
    action: str = Field(max_length=60, index=True)
    campaign_id: int | None = Field(default=None, index=True)
    item_id: int | None = None
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class ExportRecord(SQLModel, table=True):
    """A written export version folder."""

    __table_args__ = (UniqueConstraint("campaign_id", "format", "version"),)
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    format: str = Field(max_length=40)
    version: int
    path: str
    rows: int = 0
    max_vote_id: int = 0
    manifest: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class LinkCode(SQLModel, table=True):
    """A one-time code tying two platform accounts to one annotator (`/label link`).

    Only a hash of the code is stored, so a database dump cannot be used to hijack a pending link.
    """

    __tablename__ = "link_code"
    id: int | None = Field(default=None, primary_key=True)
    code_hash: str = Field(max_length=64, unique=True)
    annotator_id: int = Field(foreign_key="annotator.id", index=True)  # the issuing account's own row
    expires_at: datetime
    used_at: datetime | None = None
    used_by_id: int | None = Field(default=None, foreign_key="annotator.id")
    created_at: datetime = Field(default_factory=utcnow)
