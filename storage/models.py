"""SQLModel tables. Schema changes go through Alembic (storage/migrations).

Response positions are the item's original order (0-based); what a voter saw is the post's
permutation, so every vote is stored in canonical positions and the shown letter is kept for
position-bias analysis.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, Float, Index, LargeBinary, Table, Text, Unicode, UniqueConstraint
from sqlmodel import Field, SQLModel

from storage.domain import CampaignStatus, ItemStatus, JobStatus, Reveal, RunStatus


def utcnow() -> datetime:
    return datetime.now(UTC)


class Campaign(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=100)
    guidelines: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    guideline_version: int = 1
    overlap: int = 3
    criteria: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    status: str = CampaignStatus.ACTIVE
    reveal: str = Reveal.QUORUM  # when model names and tallies show
    max_extra_votes: int = 2
    agreement_threshold: float = 0.6
    gold_rate: float = 0.1
    daily_cap: int | None = None
    settings: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class CampaignChannel(SQLModel, table=True):
    """A chat channel a campaign posts to: one row per (platform, workspace, channel).

    Platforms are rows, not columns, so a new platform needs no migration and a campaign can post to
    several channels of one platform.
    """

    __tablename__ = "campaign_channel"
    __table_args__ = (
        UniqueConstraint("campaign_id", "platform", "workspace", "channel", name="uq_campaign_channel"),
        Index("ix_campaign_channel_lookup", "platform", "channel"),
    )
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    platform: str = Field(max_length=20)
    workspace: str = Field(default="", max_length=64)
    channel: str = Field(max_length=64)
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
    status: str = ItemStatus.OPEN
    resolution: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True), nullable=True))
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

    # a person's own posts (browser voting page: channel = the voter's id), newest first
    __table_args__ = (Index("ix_post_personal", "platform", "workspace", "channel"),)
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
    outcome: str = Field(max_length=16)  # an Outcome
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


class ItemScore(SQLModel, table=True):
    """A reward model's margin between an item's responses (written by the scheduler after training);
    the `uncertainty` sampling strategy asks for the items whose latest margin is nearest zero."""

    __table_args__ = (UniqueConstraint("item_id", "model_version"),)
    id: int | None = Field(default=None, primary_key=True)
    item_id: int = Field(foreign_key="item.id", index=True)
    model_version: str = Field(max_length=200)
    margin: float
    created_at: datetime = Field(default_factory=utcnow)
# --- scheduler (migration 0003) ----------------------------------------------------------------


class JobRun(SQLModel, table=True):
    """The run ledger: one row per (job, slot), so a scheduled slot runs once across restarts and replicas.

    status: running | done | failed | skipped | crashed. A `running` row whose owner is gone (the leader
    lock changed hands) is a crash: the new leader marks it `crashed` and runs the slot again.
    """

    __tablename__ = "job_run"
    __table_args__ = (UniqueConstraint("job_id", "slot", name="uq_job_run_slot"),)
    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(max_length=191, index=True)
    slot: datetime
    status: str = Field(default=RunStatus.RUNNING, max_length=16, index=True)
    owner: str = Field(default="", max_length=200)
    attempts: int = 1
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    heartbeat_at: datetime = Field(default_factory=utcnow)
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    result: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class CampaignSchedule(SQLModel, table=True):
    """A campaign's schedule of one kind (post | export | finetune); `spec` is validated by scheduler.schedules."""

    __tablename__ = "campaign_schedule"
    __table_args__ = (UniqueConstraint("campaign_id", "kind", name="uq_campaign_schedule_kind"),)
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    kind: str = Field(max_length=16)
    enabled: bool = True
    spec: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class FinetuneTrigger(SQLModel, table=True):
    """Each fine-tune the scheduler started: an export version is trained once per method (unique key)."""

    __tablename__ = "finetune_trigger"
    __table_args__ = (
        UniqueConstraint("campaign_id", "method", "export_format", "export_version",
                         name="uq_finetune_trigger_version"),
        UniqueConstraint("campaign_id", "method", "max_vote_id", name="uq_finetune_trigger_data"),
    )
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    method: str = Field(max_length=20)
    export_format: str = Field(max_length=40)
    export_version: int | None = None  # set once the export is written (the row is claimed first)
    export_path: str = ""
    pairs: int = 0  # training rows in that export (the threshold counts new ones since the last trigger)
    max_vote_id: int = 0  # newest source id (vote; correction for sft) the data covers
    reason: str = Field(default="", max_length=40)  # threshold | cron | manual
    job_id: int | None = None  # the fine-tune job the launcher returned
    created_at: datetime = Field(default_factory=utcnow)


# APScheduler 3's SQLAlchemyJobStore table, declared here so Alembic owns it (same shape the store creates).
apscheduler_jobs = Table(
    "apscheduler_jobs",
    SQLModel.metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)
class FinetuneJob(SQLModel, table=True):
    """One fine-tune run of one export with one method (reward | dpo | sft) and variant (full | lora | head).

    `dedupe_key` (campaign:export:method:variant) is unique while a job is queued, running or succeeded, so
    an export version is trained once per method across restarts and replicas; a failed job clears it
    so the same export can be retried.
    """

    __tablename__ = "finetune_job"
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    method: str = Field(max_length=16)
    variant: str = Field(default="full", max_length=16)
    backend: str = Field(default="local", max_length=16)
    status: str = Field(default=JobStatus.QUEUED, max_length=16, index=True)
    dedupe_key: str | None = Field(default=None, max_length=400, unique=True)
    export_path: str
    export_format: str = Field(default="", max_length=40)
    export_version: int | None = None
    base_model: str = ""
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    command: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    pid: int | None = None
    log_path: str | None = None
    exit_code: int | None = None
    log_tail: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    metrics: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    artifact_path: str | None = None
    result_message: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    notifications: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    notified_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
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


class Invite(SQLModel, table=True):
    """A signed link to the browser voting page for one person (`labelbot invite`, `/label invite`).

    The link carries this row's id under an HMAC signature; the row lets an admin revoke it. `user_id`
    is the voter's annotator id on the web platform: the same `--name` gives the same annotator, so
    a fresh link for someone keeps their votes together.
    """

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    name: str | None = Field(default=None, max_length=100)
    user_id: str = Field(max_length=64)
    created_by: str = Field(max_length=120)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    revoked_at: datetime | None = None


class AppSecret(SQLModel, table=True):
    """Random keys made on first use and shared by every process on this database (invite signing)."""

    __tablename__ = "app_secret"
    name: str = Field(primary_key=True, max_length=64)
    value: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow)
