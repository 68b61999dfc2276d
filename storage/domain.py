"""The domain vocabulary: every value stored in a status, outcome, platform or format column.

`StrEnum`s, so a member *is* its stored string (`Outcome.TIE == "tie"`): rows written before these
enums existed read back unchanged, JSON output stays the same, and SQL compares them as plain text.
This module sits at the bottom of the import graph (storage) so tables, core, adapters, scheduler and
CLI all name the same values; it imports nothing of ours.
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """What a vote says about an item's responses (canonical, independent of the shown order)."""

    WIN = "win"  # one response is best (two responses: it beat the other)
    RANK = "rank"  # a full or partial best-first ranking of three or more responses
    TIE = "tie"  # equally good
    BOTH_BAD = "both_bad"  # none acceptable ("All bad" with more than two responses)

    @property
    def is_neutral(self) -> bool:
        """Tie and both-bad name no winner, so they imply no preference pair."""
        return self in NEUTRAL_OUTCOMES


NEUTRAL_OUTCOMES = frozenset({Outcome.TIE, Outcome.BOTH_BAD})


class ItemStatus(StrEnum):
    OPEN = "open"  # collecting votes
    COMPLETE = "complete"  # reached its quorum
    FLAGGED = "flagged"  # flagged by two or more people; waits for an admin
    RESOLVED = "resolved"  # settled by an admin (`labelbot resolve`)


DONE_STATUSES = (ItemStatus.COMPLETE, ItemStatus.RESOLVED)


class CampaignStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"


class Reveal(StrEnum):
    """When model names and tallies become visible on a posted item."""

    QUORUM = "quorum"
    NEVER = "never"
    ALWAYS = "always"


class Consensus(StrEnum):
    MAJORITY = "majority"
    WEIGHTED = "weighted"  # votes weighted by annotator reliability


class Platform(StrEnum):
    """Where an actor or a post comes from. Chat platforms have channels; the others do not."""

    SLACK = "slack"
    DISCORD = "discord"
    WEB = "web"  # the browser voting page
    CLI = "cli"  # the local operator
    IMPORT = "import"  # identities of votes brought in by `labelbot import`
    AI = "ai"  # model judges voting as annotators


class ExportFormat(StrEnum):
    TRL = "trl"
    TRL_CONVERSATIONAL = "trl-conversational"
    REWARD = "reward"
    KTO = "kto"
    SFT = "sft"
    CORRECTION_PAIRS = "correction-pairs"
    HH = "hh"
    OPENAI_PREFERENCE = "openai-preference"
    VOTES = "votes"


class FinetuneMethod(StrEnum):
    REWARD = "reward"
    DPO = "dpo"
    SFT = "sft"


class JobStatus(StrEnum):
    """A fine-tune job's life: queued -> running -> succeeded | failed."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class ScheduleKind(StrEnum):
    POST = "post"
    EXPORT = "export"
    FINETUNE = "finetune"
    DUEL = "duel"


class RunStatus(StrEnum):
    """A scheduled slot in the run ledger (`job_run`)."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    CRASHED = "crashed"
