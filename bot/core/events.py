"""Inbound events: what adapters translate platform payloads into. Plain dataclasses, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.core.errors import InvalidInput
from storage.domain import NEUTRAL_OUTCOMES

PAIR_CHOICES = NEUTRAL_OUTCOMES
MAX_REASON_CHARS = 4000
MAX_CORRECTION_CHARS = 40000


@dataclass(frozen=True)
class Actor:
    """A person on a platform: annotators are keyed by (platform, workspace or guild, user id)."""

    platform: str
    workspace: str
    user_id: str
    display_name: str | None = None
    # Set only by an adapter from a verified platform payload: the platform itself says this person
    # administers the space the command came from (Discord: Manage Server in a guild hosting a campaign).
    platform_admin: bool = False

    @property
    def key(self) -> str:
        return f"{self.platform}:{self.user_id}"

    def check(self) -> None:
        """Refuse ids no platform issues (empty or over 64 characters) before they reach the database."""
        if not self.user_id or len(self.user_id) > 64 or len(self.workspace) > 64:
            raise InvalidInput("Unknown user.")


@dataclass(frozen=True)
class VoteCast:
    """A click on A better / B better / ... / Tie / Both bad (`choice` is a letter, tie or both_bad)."""

    actor: Actor
    post_id: int
    choice: str
    delivery_id: str | None = None
    reason: str | None = None
    scores: dict[str, int] | None = None


@dataclass(frozen=True)
class RankingSubmitted:
    """A full ranking of the shown responses, best first, as letters."""

    actor: Actor
    post_id: int
    order: list[str]
    delivery_id: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class CriteriaScored:
    """Per-criterion scores (1-5) for the item, attached to the annotator's vote."""

    actor: Actor
    post_id: int
    scores: dict[str, int]
    delivery_id: str | None = None


@dataclass(frozen=True)
class ItemSkipped:
    actor: Actor
    post_id: int
    delivery_id: str | None = None


@dataclass(frozen=True)
class ItemFlagged:
    actor: Actor
    post_id: int
    reason: str = ""
    delivery_id: str | None = None


@dataclass(frozen=True)
class CorrectionSubmitted:
    """An edited version of the response shown under `letter`."""

    actor: Actor
    post_id: int
    letter: str
    text: str
    delivery_id: str | None = None


@dataclass(frozen=True)
class CommentAdded:
    """A reply in an item's thread; the post is found by (platform, thread or message id)."""

    actor: Actor
    platform: str
    thread_id: str
    text: str
    message_id: str | None = None
    delivery_id: str | None = None  # e.g. Slack's event_id: a redelivered event adds no second comment


@dataclass(frozen=True)
class TaskRequested:
    """`/label next`: the next item this person should label."""

    actor: Actor
    campaign: str | None = None
    channel: str = "direct"


@dataclass(frozen=True)
class ItemIn:
    """One validated import row."""

    external_id: str
    prompt: Any
    responses: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)
    gold: dict[str, Any] | None = None
