"""Outbound replies: what the core tells adapters to show. Data only; adapters do the formatting."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from storage.domain import Outcome

# Said on every platform when handling an action failed unexpectedly: some work may have been committed.
SORRY = "Sorry, something went wrong on our side; your last action may not have been saved. Please try again."

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
REASON_REQUEST = ("The votes on this item are split. If you voted, please reply here with a one-line reason "
                  "for your choice; an admin will settle it.")


def letter(index: int) -> str:
    return LETTERS[index]


def choice_label(choice: str) -> str:
    """How a stored choice reads to a person."""
    if choice == Outcome.TIE:
        return "Tie"
    if choice == Outcome.BOTH_BAD:
        return "Both bad"
    if len(choice) == 1:
        return f"{choice} better"
    return f"Ranking {choice}"


@dataclass(frozen=True)
class ShownResponse:
    letter: str
    text: str
    model: str | None  # None while the item is blind
    image: str | None = None
    audio: str | None = None


@dataclass(frozen=True)
class ItemResult:
    """Tallies and consensus, only filled in once an item may be revealed."""

    tallies: dict[str, int]  # shown-letter choices, "tie", "both_bad" -> count
    consensus: str | None  # e.g. "A", "tie", "both_bad", "A>C>B" or None when split
    agreement: float


@dataclass(frozen=True)
class PostView:
    """Everything needed to render a posted item on any platform."""

    post_id: int
    item_id: int
    campaign: str
    external_id: str
    prompt: Any
    responses: list[ShownResponse]
    criteria: list[str]
    vote_count: int
    quorum: int
    revealed: bool
    result: ItemResult | None = None
    guideline_version: int = 1

    @property
    def n(self) -> int:
        return len(self.responses)

    @property
    def prompt_text(self) -> str:
        return prompt_as_text(self.prompt)


@dataclass(frozen=True)
class GoldFeedback:
    correct: bool
    expected: str  # the letter (as shown to this voter) or tie/both_bad
    explanation: str
    guideline_excerpt: str


@dataclass(frozen=True)
class VoteRecorded:
    """Returned once the vote is committed; adapters confirm it privately to the voter."""

    post: PostView
    choice: str  # letter, tie, both_bad, or "A>C>B" for rankings
    changed: bool
    previous: str | None
    replay: bool
    reached_quorum: bool
    extra_vote_requested: bool = False
    gold: GoldFeedback | None = None
    ask_reason: bool = False  # votes split: adapters ask the item's voters for a one-line reason

    @property
    def summary(self) -> str:
        label = choice_label(self.choice)
        if self.replay:
            return f"Your vote ({label}) was already recorded."
        if self.changed and self.previous:
            return f"Vote changed from {choice_label(self.previous)} to {label}. Click another choice to change it."
        if self.previous == self.choice:
            return f"Your vote ({label}) is unchanged. Click another choice to change it."
        return f"Vote recorded: {label}. Click another choice to change it."


@dataclass(frozen=True)
class Notice:
    """A short private message (skip, flag, correction, errors)."""

    text: str
    ok: bool = True
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LeaderboardRow:
    model: str
    score: float
    lower: float
    upper: float
    battles: int
    rank: int


@dataclass(frozen=True)
class CampaignStats:
    campaign: str
    status: str
    items: int
    complete_items: int
    votes: int
    annotators: int
    votes_per_item: dict[int, int]
    agreement_alpha: float | None
    mean_item_agreement: float | None
    consensus_pairs: int
    flagged_items: int
    skips: int
    corrections: int
    leaderboard: list[LeaderboardRow]
    guideline_version: int

    @property
    def progress(self) -> float:
        return self.complete_items / self.items if self.items else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "status": self.status,
            "items": self.items,
            "complete_items": self.complete_items,
            "progress": round(self.progress, 4),
            "votes": self.votes,
            "annotators": self.annotators,
            "votes_per_item": {str(k): v for k, v in sorted(self.votes_per_item.items())},
            "agreement_alpha": self.agreement_alpha,
            "mean_item_agreement": self.mean_item_agreement,
            "consensus_pairs": self.consensus_pairs,
            "flagged_items": self.flagged_items,
            "skips": self.skips,
            "corrections": self.corrections,
            "guideline_version": self.guideline_version,
            "leaderboard": [row.__dict__ for row in self.leaderboard],
        }


def prompt_as_text(prompt: Any) -> str:
    """A chat prompt (list of messages) or plain string, as readable text."""
    if isinstance(prompt, str):
        return prompt
    parts = []
    for msg in prompt or []:
        role = str(msg.get("role", "user")).capitalize()
        parts.append(f"{role}: {msg.get('content', '')}")
    return "\n\n".join(parts)
