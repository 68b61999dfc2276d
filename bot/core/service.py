"""LabelingService: every rule of labeling, shared by the Slack and Discord adapters and the CLI.

Adapters translate a payload into an event from `events.py`, call one method here and render the
reply from `replies.py`. A method returns only after its transaction committed, so whatever an
adapter confirms to a person is already durable.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from sqlalchemy.exc import IntegrityError

from bot.core import aggregate, hooks, sampling
from bot.core.errors import (
    CampaignPaused,
    ConflictError,
    InvalidInput,
    LabelingError,
    LimitReached,
    NotFound,
    PermissionDenied,
)
from bot.core.events import (
    MAX_CORRECTION_CHARS,
    MAX_REASON_CHARS,
    Actor,
    CommentAdded,
    CorrectionSubmitted,
    CriteriaScored,
    ItemFlagged,
    ItemIn,
    ItemSkipped,
    RankingSubmitted,
    TaskRequested,
    VoteCast,
)
from bot.core.replies import (
    LETTERS,
    CampaignStats,
    GoldFeedback,
    ItemResult,
    LeaderboardRow,
    Notice,
    PostView,
    ShownResponse,
    VoteRecorded,
    letter,
)
from storage import queries as q
from storage.db import Database
from storage.domain import (
    DONE_STATUSES,
    NEUTRAL_OUTCOMES,
    CampaignStatus,
    Consensus,
    ItemStatus,
    Outcome,
    Platform,
    Reveal,
)
from storage.models import (
    Campaign,
    Comment,
    Correction,
    Flag,
    Guideline,
    Item,
    Post,
    Response,
    Role,
    Skip,
    Vote,
    utcnow,
)

log = logging.getLogger(__name__)

MAX_CAMPAIGN_NAME = 100
REVEAL_POLICIES = tuple(Reveal)


SETTING_KEYS = ("sampling", "consensus", "max_share", "min_read_chars_per_s", "ask_reason_on_split")
# what each of them is when a campaign never set it (campaign.settings holds only what was set)
SETTING_DEFAULTS: dict[str, Any] = {"sampling": "least_votes", "consensus": "majority", "max_share": None,
                                    "min_read_chars_per_s": 40.0, "ask_reason_on_split": True}


def _check_setting(key: str, value: Any) -> Any:
    """Validate one campaign setting; raises InvalidInput with a sentence for people."""
    if key == "sampling":
        return sampling.validate_strategy(str(value))
    if key == "consensus":
        if value not in tuple(Consensus):
            raise InvalidInput("Consensus is majority or weighted.")
        return value
    if key == "max_share":
        if value is not None and not 0 < float(value) <= 1:
            raise InvalidInput("max_share must be in (0, 1].")
        return None if value is None else float(value)
    if key == "daily_cap" and value is not None and int(value) < 1:
        raise InvalidInput("daily_cap must be at least 1.")
    if key == "overlap" and not 1 <= int(value) <= 50:
        raise InvalidInput("Overlap (votes per item) must be between 1 and 50.")
    if key == "reveal" and value not in REVEAL_POLICIES:
        raise InvalidInput(f"Reveal must be one of {', '.join(REVEAL_POLICIES)}.")
    if key == "gold_rate" and not 0 <= float(value) <= 1:
        raise InvalidInput("Gold rate must be between 0 and 1.")
    if key == "min_read_chars_per_s" and float(value) <= 0:
        raise InvalidInput("min_read_chars_per_s must be positive.")
    return value


def _ms_since(created: Any) -> int | None:
    if created is None:
        return None
    if isinstance(created, str):
        from datetime import datetime

        created = datetime.fromisoformat(created)
    if created.tzinfo is None:
        from datetime import UTC

        created = created.replace(tzinfo=UTC)
    return max(0, int((utcnow() - created).total_seconds() * 1000))


@dataclass(frozen=True)
class CampaignSpec:
    """What `campaign create` accepts."""

    name: str
    guidelines: str = ""
    overlap: int = 3
    criteria: tuple[str, ...] = ()
    channels: tuple[tuple[str, str], ...] = ()  # (platform, channel id) pairs
    reveal: str = Reveal.QUORUM
    gold_rate: float = 0.1


class LabelingService:
    """The platform-agnostic labeling core."""

    def __init__(self, db: Database, admins: Iterable[tuple[str, str]] = (), *, seed: int | None = None) -> None:
        self.db = db
        self.env_admins = {(p.lower(), u) for p, u in admins}
        self._rng = random.Random(seed)
        self._responses: dict[int, list[Response]] = {}  # responses never change after import

    # ------------------------------------------------------------------ admin and campaigns

    def is_admin(self, actor: Actor) -> bool:
        """Admins: LABELBOT_ADMINS, the roles table, a platform-verified admin flag; the local CLI operator always."""
        if actor.platform == Platform.CLI or actor.platform_admin or (actor.platform, actor.user_id) in self.env_admins:
            return True
        with self.db.read() as s:
            return q.has_role(s, actor.platform, actor.user_id)

    def require_admin(self, actor: Actor) -> None:
        if not self.is_admin(actor):
            raise PermissionDenied("Sorry, only labelbot admins can do that. Ask an admin to run it for you.")

    def grant_admin(self, actor: Actor, platform: str, user_id: str) -> Notice:
        self.require_admin(actor)
        with self.db.write() as s:
            added = q.insert_ignore(
                s, Role, {"platform": platform, "user_id": user_id, "role": "admin", "granted_by": actor.key,
                          "created_at": utcnow()},
                ("platform", "user_id", "role"),
            )
            q.add_audit(s, actor.key, "admin.add", platform=platform, user_id=user_id)
        return Notice(f"{platform}:{user_id} is {'now' if added else 'already'} an admin.")

    def create_campaign(self, spec: CampaignSpec, actor: Actor) -> Campaign:
        self.require_admin(actor)
        name = spec.name.strip()
        if not name or len(name) > MAX_CAMPAIGN_NAME or any(c.isspace() for c in name):
            raise InvalidInput("Campaign names are 1-100 characters without spaces.")
        if spec.overlap < 1 or spec.overlap > 50:
            raise InvalidInput("Overlap (votes per item) must be between 1 and 50.")
        if spec.reveal not in REVEAL_POLICIES:
            raise InvalidInput(f"Reveal must be one of {', '.join(REVEAL_POLICIES)}.")
        if not 0 <= spec.gold_rate <= 1:
            raise InvalidInput("Gold rate must be between 0 and 1.")
        criteria = [c.strip() for c in spec.criteria if c.strip()]
        if len(criteria) > 5 or any(len(c) > 40 for c in criteria):
            raise InvalidInput("At most 5 criteria of at most 40 characters each (a modal holds 5 inputs).")
        try:
            with self.db.write() as s:
                if q.campaign_by_name(s, name):
                    raise ConflictError(f"A campaign named {name!r} already exists.")
                camp = Campaign(
                    name=name, guidelines=spec.guidelines, overlap=spec.overlap, criteria=criteria,
                    reveal=spec.reveal, gold_rate=spec.gold_rate,
                )
                s.add(camp)
                s.flush()
                for platform, channel in spec.channels:
                    q.set_campaign_channel(s, camp.id, platform, channel)
                s.add(Guideline(campaign_id=camp.id, version=1, text=spec.guidelines))
                q.add_audit(s, actor.key, "campaign.create", campaign_id=camp.id, name=name, overlap=spec.overlap,
                            criteria=criteria)
        except IntegrityError as exc:
            raise ConflictError(f"A campaign named {name!r} already exists.") from exc
        return camp

    def list_campaigns(self) -> list[Campaign]:
        with self.db.read() as s:
            return q.list_campaigns(s)

    def campaign(self, name: str) -> Campaign:
        with self.db.read() as s:
            camp = q.campaign_by_name(s, name)
        if camp is None:
            raise NotFound(f"No campaign named {name!r}. `labelbot campaign list` shows the campaigns.")
        return camp

    def set_status(self, name: str, status: str, actor: Actor) -> Campaign:
        if status not in tuple(CampaignStatus):
            raise InvalidInput("Status is active or paused.")
        self.require_admin(actor)
        with self.db.write() as s:
            camp = self._campaign_in(s, name)
            previous = camp.status
            camp.status = status
            s.add(camp)
            q.add_audit(s, actor.key, f"campaign.{'pause' if status == 'paused' else 'resume'}",
                        campaign_id=camp.id, previous=previous)
        return camp

    def update_campaign(self, name: str, actor: Actor, **changes: Any) -> Campaign:
        """Change channels, overlap, reveal policy or guidelines (which bumps the guideline version)."""
        self.require_admin(actor)
        allowed = {"overlap", "reveal", "guidelines", "gold_rate", "criteria",
                   "daily_cap", "agreement_threshold", "max_extra_votes"} | set(SETTING_KEYS)
        unknown = set(changes) - allowed
        if unknown:
            raise InvalidInput(f"Unknown campaign setting(s): {', '.join(sorted(unknown))}.")
        changes = {k: _check_setting(k, v) for k, v in changes.items()}
        with self.db.write() as s:
            camp = self._campaign_in(s, name)
            before = {k: (camp.settings or {}).get(k) if k in SETTING_KEYS else getattr(camp, k) for k in changes}
            settings = dict(camp.settings or {})
            for key, value in changes.items():
                if key in SETTING_KEYS:
                    settings[key] = value
                    continue
                if key == "guidelines" and value != camp.guidelines:
                    camp.guideline_version += 1
                    s.add(Guideline(campaign_id=camp.id, version=camp.guideline_version, text=value))
                setattr(camp, key, value)
            camp.settings = settings
            s.add(camp)
            q.add_audit(s, actor.key, "campaign.update", campaign_id=camp.id,
                        before={k: v for k, v in before.items() if k != "guidelines"},
                        after={k: v for k, v in changes.items() if k != "guidelines"},
                        guideline_version=camp.guideline_version)
        return camp

    def set_channel(self, name: str, actor: Actor, platform: str, channel: str | None, workspace: str = "") -> Campaign:
        """Make `channel` the campaign's channel on `platform` (None removes it); audited."""
        self.require_admin(actor)
        channel = (channel or "").strip() or None
        if channel is not None and (len(channel) > 64 or any(c.isspace() for c in channel)):
            raise InvalidInput("Channel ids are at most 64 characters without spaces.")
        with self.db.write() as s:
            camp = self._campaign_in(s, name)
            before = [c.channel for c in q.campaign_channels(s, camp.id, platform)]
            q.set_campaign_channel(s, camp.id, platform, channel, workspace)
            q.add_audit(s, actor.key, "campaign.channel", campaign_id=camp.id, platform=platform, before=before,
                        after=channel)
        return camp

    def all_channels(self, platform: str) -> list[str]:
        """Every channel id any campaign posts to on `platform`."""
        with self.db.read() as s:
            return sorted({c.channel for rows in q.all_campaign_channels(s).values() for c in rows
                           if c.platform == platform})

    def channels(self, name: str, platform: str | None = None) -> list[tuple[str, str, str]]:
        """(platform, workspace, channel) of each channel the campaign posts to (one platform, or all)."""
        with self.db.read() as s:
            camp = self._campaign_in(s, name)
            return [(c.platform, c.workspace, c.channel) for c in q.campaign_channels(s, camp.id, platform)]

    def _campaign_in(self, s: Any, name: str) -> Campaign:
        camp = q.campaign_by_name(s, name)
        if camp is None:
            raise NotFound(f"No campaign named {name!r}. `labelbot campaign list` shows the campaigns.")
        return camp

    # ------------------------------------------------------------------ invites to the browser voting page

    def create_invite(self, actor: Actor, campaign: str, name: str | None = None, *, base_url: str,
                      days: float = 30) -> Any:
        """A signed link to the browser voting page for one person (what `labelbot invite` and `/label invite`
        both call); returns a `bot.core.invites.InviteLink`."""
        from bot.core import invites

        self.require_admin(actor)
        return invites.create(self.db, actor.key, self.campaign(campaign).name, name, base_url=base_url, days=days)

    def revoke_invite(self, actor: Actor, campaign: str, invite_id: int) -> Notice:
        from bot.core import invites

        self.require_admin(actor)
        done = invites.revoke(self.db, actor.key, campaign, invite_id)
        return Notice(f"Invite {invite_id} {'withdrawn' if done else 'was already withdrawn'}; its link no longer "
                      "works.")

    def shown_choice_of(self, actor: Actor, post_id: int) -> str | None:
        """This person's current vote on a post's item as they see it (a letter, tie, both_bad, "A>C>B")."""
        with self.db.read() as s:
            post = s.get(Post, post_id)
            ann = q.find_annotator(s, actor.platform, actor.workspace, actor.user_id) if post else None
            vote = q.vote_of(s, ann, post.item_id) if ann is not None else None
            return self._shown_choice(vote, post.permutation) if vote else None

    # ------------------------------------------------------------------ import

    def import_items(self, campaign: str, items: list[ItemIn], actor: Actor) -> tuple[int, int]:
        """Insert validated items in one transaction; returns (added, already present)."""
        self.require_admin(actor)
        with self.db.write() as s:
            camp = self._campaign_in(s, campaign)
            present = q.existing_external_ids(s, camp.id, [i.external_id for i in items])
            added = 0
            seen: set[str] = set()
            for it in items:
                if it.external_id in present or it.external_id in seen:
                    continue
                seen.add(it.external_id)
                row = Item(campaign_id=camp.id, external_id=it.external_id, prompt=it.prompt, meta=it.meta,
                           gold=it.gold, n_responses=len(it.responses))
                s.add(row)
                s.flush()
                for pos, resp in enumerate(it.responses):
                    s.add(Response(item_id=row.id, position=pos, model=resp.get("model", ""),
                                   text=resp.get("text", ""), image=resp.get("image"), audio=resp.get("audio")))
                added += 1
            q.add_audit(s, actor.key, "items.import", campaign_id=camp.id, added=added,
                        skipped=len(items) - added)
        return added, len(items) - added

    # ------------------------------------------------------------------ posting and tasks

    def prepare_posts(self, campaign: str, platform: str, channel: str, limit: int, workspace: str = "") -> list[
            PostView]:
        """Create post rows (with a fresh shuffle each) for the next items to post in a channel.

        The adapter sends each and calls `attach_message`; custom ids carry the post id.
        """
        with self.db.write() as s:
            camp = self._campaign_in(s, campaign)
            if camp.status != CampaignStatus.ACTIVE:
                raise CampaignPaused(f"Campaign {campaign!r} is paused; resume it before posting.")
            items = sampling.pick_items(s, camp, platform=platform, limit=limit, rng=self._rng)
            posts = [self._new_post(s, item, platform, channel, workspace) for item in items]
            s.flush()
            views = [self._post_view(s, p, camp=camp, item=item) for p, item in zip(posts, items, strict=True)]
        return views

    def _new_post(self, s: Any, item: Item, platform: str, channel: str, workspace: str) -> Post:
        perm = list(range(item.n_responses))
        self._rng.shuffle(perm)
        post = Post(item_id=item.id, platform=platform, workspace=workspace, channel=channel, permutation=perm)
        s.add(post)
        return post

    def attach_message(self, post_id: int, message_id: str, *, channel: str | None = None,
                       thread_id: str | None = None) -> None:
        """Remember where a prepared post landed (message ts / id, and its thread)."""
        with self.db.write() as s:
            post = s.get(Post, post_id)
            if post is None:
                raise NotFound("That post no longer exists.")
            post.message_id = message_id
            if channel:
                post.channel = channel
            if thread_id:
                post.thread_id = thread_id
            s.add(post)

    def discard_post(self, post_id: int) -> None:
        """Forget a prepared post whose message could not be sent."""
        with self.db.write() as s:
            post = s.get(Post, post_id)
            if post is not None and post.message_id is None:
                s.delete(post)

    def next_task(self, event: TaskRequested) -> PostView | None:
        """The next item for this person: never one they voted on or skipped, least-voted first."""
        with self.db.write() as s:
            ann = self._annotator(s, event.actor)
            camps = [self._campaign_in(s, event.campaign)] if event.campaign else [
                c for c in q.list_campaigns(s) if c.status == CampaignStatus.ACTIVE
            ]
            for camp in camps:
                if camp.status != CampaignStatus.ACTIVE:
                    raise CampaignPaused(f"Campaign {camp.name!r} is paused.")
                self._check_caps(s, camp, ann)
                picked: list[Item] = []
                if camp.gold_rate > 0 and self._rng.random() < camp.gold_rate:
                    picked = sampling.pick_items(s, camp, annotator=ann, gold=True, rng=self._rng)
                picked = picked or sampling.pick_items(s, camp, annotator=ann, rng=self._rng)
                if picked:
                    item = picked[0]
                    post = self._new_post(s, item, event.actor.platform, event.channel, event.actor.workspace)
                    post.message_id = None
                    s.flush()
                    return self._post_view(s, post, camp=camp, item=item)
        return None

    def resume_or_next(self, event: TaskRequested) -> tuple[PostView | None, bool]:
        """(task, is_new): the person's dealt-but-unanswered post in `event.channel` when they have one (a page
        reload shows the same item in the same order), else `next_task`. Needs `event.campaign`."""
        if not event.campaign:
            raise InvalidInput("Name the campaign.")
        with self.db.read() as s:
            camp = self._campaign_in(s, event.campaign)
            if camp.status == CampaignStatus.ACTIVE:
                post = q.open_post_of(s, camp.id, event.actor.platform, event.actor.workspace, event.actor.user_id,
                                      event.channel)
                if post is not None:
                    return self._post_view(s, post, camp=camp), False
        return self.next_task(event), True

    def post_view(self, post_id: int) -> PostView:
        with self.db.read() as s:
            post = s.get(Post, post_id)
            if post is None:
                raise NotFound("That item is no longer available.")
            return self._post_view(s, post)

    def posts_of_item(self, item_id: int) -> list[Post]:
        """Every post of an item (to refresh all its messages after a vote)."""
        from sqlmodel import select

        with self.db.read() as s:
            return list(s.exec(select(Post).where(Post.item_id == item_id, Post.message_id.is_not(None))))

    def _post_view(self, s: Any, post: Post, *, camp: Campaign | None = None, item: Item | None = None) -> PostView:
        item = item or s.get(Item, post.item_id)
        camp = camp or s.get(Campaign, item.campaign_id)
        responses = self._item_responses(s, item.id)
        quorum = camp.overlap + item.extra_votes
        revealed = camp.reveal == Reveal.ALWAYS or (
            camp.reveal == Reveal.QUORUM and item.status in DONE_STATUSES
        )
        shown = []
        for i, pos in enumerate(post.permutation):
            r = responses[pos]
            shown.append(ShownResponse(letter(i), r.text, r.model if revealed else None, r.image, r.audio))
        result = None
        if revealed:
            votes = q.item_votes(s, item.id)
            tallies: dict[str, int] = {}
            for v in votes:
                key = self._shown_choice(v, post.permutation)
                tallies[key] = tallies.get(key, 0) + 1
            if item.resolution:
                cons = aggregate.resolved_consensus(item.resolution, len(votes), item.n_responses)
            else:
                cons = aggregate.item_consensus([_lite(v) for v in votes], item.n_responses)
            consensus = None
            if cons.outcome in NEUTRAL_OUTCOMES:
                consensus = cons.outcome
            elif cons.order is not None:
                inv = {pos: letter(i) for i, pos in enumerate(post.permutation)}
                consensus = inv[cons.order[0]] if cons.outcome == Outcome.WIN else ">".join(inv[p] for p in cons.order)
            result = ItemResult(tallies, consensus, cons.agreement)
        return PostView(
            post_id=post.id, item_id=item.id, campaign=camp.name, external_id=item.external_id, prompt=item.prompt,
            responses=shown, criteria=list(camp.criteria), vote_count=item.vote_count, quorum=quorum,
            revealed=revealed, result=result, guideline_version=camp.guideline_version,
        )

    def _item_responses(self, s: Any, item_id: int) -> list[Response]:
        cached = self._responses.get(item_id)
        if cached is None:
            cached = q.item_responses(s, item_id)
            for r in cached:
                s.expunge(r)
            if len(self._responses) >= 20_000:
                self._responses.pop(next(iter(self._responses)))
            self._responses[item_id] = cached
        return cached

    @staticmethod
    def _shown_choice(vote: Vote, permutation: list[int]) -> str:
        if vote.outcome in NEUTRAL_OUTCOMES:
            return vote.outcome
        inv = {pos: letter(i) for i, pos in enumerate(permutation)}
        ranking = vote.ranking or []
        if vote.outcome == Outcome.WIN:
            return inv[ranking[0]]
        return ">".join(inv[p] for p in ranking)

    # ------------------------------------------------------------------ votes

    def cast_vote(self, event: VoteCast) -> VoteRecorded:
        """Record or change a vote. Replays (same delivery id) and double clicks add nothing."""
        choice = event.choice
        self._check_choice(choice)
        return self._record(event.actor, event.post_id, event.delivery_id, ("choice", choice),
                            reason=event.reason, scores=event.scores)

    @staticmethod
    def _check_choice(choice: str) -> None:
        if choice not in NEUTRAL_OUTCOMES and not (len(choice) == 1 and choice in LETTERS):
            raise InvalidInput(f"Unknown choice {choice!r}.")

    def cast_votes(self, events: Sequence[VoteCast]) -> list[VoteRecorded | LabelingError]:
        """Group commit: several votes in one transaction (one fsync).

        Results come back in order; a vote the core refuses gives its LabelingError and changes
        nothing, the others still commit. Any other error aborts the whole batch (callers then fall
        back to `cast_vote` one by one). Nothing is returned before the commit, as for `cast_vote`.
        """
        results: list[VoteRecorded | LabelingError] = []
        with hooks.vote_in_flight():
            with self.db.write() as s:
                for event in events:
                    try:  # refusals come before any write (see _record_in): no savepoint needed
                        self._check_choice(event.choice)
                        results.append(self._record_in(s, event.actor, event.post_id, event.delivery_id,
                                                       ("choice", event.choice), reason=event.reason,
                                                       scores=event.scores))
                    except LabelingError as exc:
                        results.append(exc)
            for event, result in zip(events, results, strict=True):  # observed once committed
                if isinstance(result, LabelingError):
                    hooks.vote_observed(event.actor.platform, "rejected")
                else:
                    hooks.vote_committed(event.actor.platform, result)
        return results

    def submit_ranking(self, event: RankingSubmitted) -> VoteRecorded:
        order = [o.strip().upper() for o in event.order]
        if len(set(order)) != len(order) or any(len(o) != 1 or o not in LETTERS for o in order):
            raise InvalidInput("Give each response exactly one rank (no response twice).")
        return self._record(event.actor, event.post_id, event.delivery_id, ("ranking", order), reason=event.reason)

    def submit_scores(self, event: CriteriaScored) -> Notice:
        with self.db.write() as s:
            if event.delivery_id and not q.claim_delivery(s, event.delivery_id, "scores"):
                return Notice("Your scores were already recorded.")
            _post, item, camp = self._post_item(s, event.post_id)
            ann = self._annotator(s, event.actor)
            scores = self._validate_scores(camp, event.scores)
            vote = q.vote_of(s, ann, item.id)
            if vote is None:
                raise InvalidInput("Vote on the item first, then add criterion scores.")
            before = vote.scores
            vote.scores = {**(vote.scores or {}), **scores}
            vote.updated_at = utcnow()
            s.add(vote)
            q.add_audit(s, event.actor.key, "vote.scores", campaign_id=camp.id, item_id=item.id,
                        before=before, after=vote.scores)
        return Notice("Scores saved: " + ", ".join(f"{k} {v}" for k, v in scores.items()))

    @staticmethod
    def _validate_scores(camp: Campaign, scores: dict[str, Any] | None) -> dict[str, int]:
        out: dict[str, int] = {}
        for key, value in (scores or {}).items():
            if key not in camp.criteria:
                raise InvalidInput(f"{key!r} is not a criterion of this campaign ({', '.join(camp.criteria)}).")
            try:
                score = int(str(value).strip())
            except ValueError as exc:
                raise InvalidInput(f"Score for {key} must be a whole number from 1 to 5.") from exc
            if not 1 <= score <= 5:
                raise InvalidInput(f"Score for {key} must be from 1 to 5.")
            out[key] = score
        return out

    def _record(self, actor: Actor, post_id: int, delivery_id: str | None, what: tuple[str, Any], *,
                reason: str | None = None, scores: dict[str, Any] | None = None) -> VoteRecorded:
        """Write one vote while shutdown can see it in flight, then tell the observers (metrics)."""
        with hooks.tracked_vote(actor.platform) as done, self.db.write() as s:
            return done(self._record_in(s, actor, post_id, delivery_id, what, reason=reason, scores=scores))

    def _record_in(self, s: Any, actor: Actor, post_id: int, delivery_id: str | None, what: tuple[str, Any], *,
                   reason: str | None = None, scores: dict[str, Any] | None = None) -> VoteRecorded:
        """The vote path, inside the caller's transaction (its own, or a group commit's).

        One context query, Core writes, one commit: it is the hottest code we have. Every refusal
        (LabelingError) is raised before the first write, so a refused vote in a group commit needs
        no savepoint to leave nothing behind.
        """
        if reason is not None and len(reason) > MAX_REASON_CHARS:
            raise InvalidInput(f"Reasons are limited to {MAX_REASON_CHARS} characters.")
        actor.check()
        ctx = q.vote_context(s, post_id, actor.platform, actor.workspace, actor.user_id, delivery_id)
        if ctx is None:
            raise NotFound("That item is no longer available.")
        if ctx.delivery_seen:
            return self._replayed(s, actor, post_id)
        if ctx.campaign_status != CampaignStatus.ACTIVE:
            raise CampaignPaused(f"Campaign {ctx.name!r} is paused; votes are not being collected.")
        perm = list(ctx.permutation)
        outcome, ranking, winner, shown = self._canonical(what, perm)
        clean_scores = self._validate_scores(ctx, scores) if scores else None
        existing = None if ctx.vote_id is None else SimpleNamespace(
            id=ctx.vote_id, outcome=ctx.vote_outcome, ranking=ctx.vote_ranking, scores=ctx.vote_scores)
        quorum = ctx.overlap + ctx.extra_votes
        previous_shown = self._shown_choice(existing, perm) if existing else None
        if existing is None and ctx.status != ItemStatus.OPEN:
            raise ConflictError("This item already has all its votes. `/label next` gives you a fresh one.")
        if existing is None and ctx.annotator_id is not None and (
                ctx.daily_cap or (ctx.settings or {}).get("max_share")):  # a first-time user is under any cap
            self._check_caps(s, SimpleNamespace(id=ctx.campaign_id, daily_cap=ctx.daily_cap,
                                                settings=ctx.settings), int(ctx.annotator_id))
        # Writes from here on. The claim is the replay guard: losing it to a concurrent delivery of the
        # same click means that delivery is applying the vote, and this one has written nothing.
        if delivery_id and not q.claim_delivery(s, delivery_id, "vote"):
            return self._replayed(s, actor, post_id)
        ann = int(ctx.annotator_id) if ctx.annotator_id is not None else q.annotator_id(
            s, actor.platform, actor.workspace, actor.user_id, actor.display_name)
        gold = self._gold_feedback(ctx, perm, outcome, ranking) if ctx.gold else None
        changed = reached = extra = False
        vote_count, extra_votes, status = ctx.vote_count, ctx.extra_votes, ctx.status
        if existing is None:
            q.insert_vote(s, item_id=ctx.item_id, annotator_id=ann, post_id=post_id, outcome=outcome,
                          ranking=ranking, winner=winner, shown_choice=shown, scores=clean_scores, reason=reason,
                          guideline_version=ctx.guideline_version, delivery_id=delivery_id,
                          is_gold_check=gold is not None, gold_correct=gold.correct if gold else None,
                          latency_ms=_ms_since(ctx.post_created_at))
            vote_count += 1
            if vote_count >= quorum:
                votes = [_lite(v) for v in q.item_votes(s, ctx.item_id)]
                cons = aggregate.item_consensus(votes, len(perm))
                if cons.agreement < ctx.agreement_threshold and extra_votes < ctx.max_extra_votes:
                    extra_votes += 1
                    extra = True
                    q.add_audit(s, "system", "item.extra_vote", campaign_id=ctx.campaign_id, item_id=ctx.item_id,
                                agreement=round(cons.agreement, 3), extra_votes=extra_votes)
                else:
                    status = ItemStatus.COMPLETE
                    reached = True
            q.set_item_counters(s, ctx.item_id, vote_count=vote_count, extra_votes=extra_votes, status=status)
        else:
            values: dict[str, Any] = {}
            if existing.outcome != outcome or (existing.ranking or None) != (ranking or None):
                changed = True
                q.add_audit(s, actor.key, "vote.change", campaign_id=ctx.campaign_id, item_id=ctx.item_id,
                            before={"outcome": existing.outcome, "ranking": existing.ranking},
                            after={"outcome": outcome, "ranking": ranking}, post_id=post_id)
                values.update(outcome=outcome, ranking=ranking, winner=winner, shown_choice=shown,
                              post_id=post_id, guideline_version=ctx.guideline_version)
                if gold is not None:
                    values["gold_correct"] = gold.correct
            if reason is not None:
                values["reason"] = reason
            if clean_scores:
                values["scores"] = {**(existing.scores or {}), **clean_scores}
            if delivery_id:
                values["delivery_id"] = delivery_id
            q.update_vote(s, existing.id, **values)
        view = self._view_from(s, ctx, vote_count=vote_count, extra_votes=extra_votes, status=status)
        ask = extra and (ctx.settings or {}).get("ask_reason_on_split", True)
        return VoteRecorded(post=view, choice=shown, changed=changed, previous=previous_shown, replay=False,
                            reached_quorum=reached, extra_vote_requested=extra, gold=gold, ask_reason=bool(ask))

    @staticmethod
    def _canonical(what: tuple[str, Any], perm: list[int]) -> tuple[str, list[int] | None, int | None, str]:
        """(outcome, ranking in positions, winner position, shown label) for a click or a ranking."""
        n = len(perm)
        kind, value = what
        if kind == "choice":
            if value in NEUTRAL_OUTCOMES:
                return Outcome(value), None, None, value
            idx = LETTERS.index(value)
            if idx >= n:
                raise InvalidInput(f"This item has no response {value}.")
            return Outcome.WIN, [perm[idx]] + ([perm[1 - idx]] if n == 2 else []), perm[idx], value
        if sorted(value) != [letter(i) for i in range(n)]:
            raise InvalidInput(f"Rank all {n} responses ({', '.join(letter(i) for i in range(n))}).")
        ranking = [perm[LETTERS.index(x)] for x in value]
        if n == 2:
            return Outcome.WIN, ranking, ranking[0], value[0]
        return Outcome.RANK, ranking, ranking[0], ">".join(value)

    def _view_from(self, s: Any, ctx: Any, **state: Any) -> PostView:
        post = SimpleNamespace(id=ctx.post_id, permutation=list(ctx.permutation))
        item = SimpleNamespace(id=ctx.item_id, external_id=ctx.external_id, prompt=ctx.prompt,
                               n_responses=ctx.n_responses, campaign_id=ctx.campaign_id,
                               resolution=ctx.resolution, **state)
        camp = SimpleNamespace(name=ctx.name, overlap=ctx.overlap, reveal=ctx.reveal, criteria=ctx.criteria,
                               guideline_version=ctx.guideline_version)
        return self._post_view(s, post, camp=camp, item=item)

    def _replayed(self, s: Any, actor: Actor, post_id: int) -> VoteRecorded:
        post = s.get(Post, post_id)
        if post is None:
            raise NotFound("That item is no longer available.")
        ann = q.find_annotator(s, actor.platform, actor.workspace, actor.user_id)
        vote = q.vote_of(s, ann, post.item_id) if ann is not None else None
        shown = self._shown_choice(vote, post.permutation) if vote else "?"
        view = self._post_view(s, post)
        return VoteRecorded(post=view, choice=shown, changed=False, previous=shown, replay=True,
                            reached_quorum=False)

    @staticmethod
    def _gold_feedback(ctx: Any, perm: list[int], outcome: str, ranking: list[int] | None) -> GoldFeedback:
        gold = ctx.gold or {}
        inv = {pos: letter(i) for i, pos in enumerate(perm)}
        if "best" in gold and gold["best"] is not None:
            expected_pos = int(gold["best"])
            correct = outcome in (Outcome.WIN, Outcome.RANK) and bool(ranking) and ranking[0] == expected_pos
            expected = inv.get(expected_pos, "?")
        else:
            expected = str(gold.get("outcome", Outcome.TIE))
            correct = outcome == expected
        excerpt = (ctx.guidelines or "").strip()
        section = gold.get("guideline") or ""
        if section and section in excerpt:
            start = excerpt.index(section)
            excerpt = excerpt[start : start + 600]
        else:
            excerpt = excerpt[:600]
        return GoldFeedback(correct, expected, str(gold.get("explanation", "")), excerpt)

    def _check_caps(self, s: Any, camp: Any, ann: int) -> None:
        """Per-annotator caps: votes per day and share of the campaign's votes (after 30 votes)."""
        max_share = (camp.settings or {}).get("max_share")
        if not camp.daily_cap and not max_share:
            return
        mine_today, mine, total = q.annotator_vote_counts(s, camp.id, ann)
        if camp.daily_cap and mine_today >= camp.daily_cap:
            raise LimitReached(f"You've reached today's limit of {camp.daily_cap} votes for this campaign. "
                               "Thank you! Come back tomorrow.")
        if max_share and total >= 30 and mine / total >= float(max_share):
            raise LimitReached("You've already cast a large share of this campaign's votes; let others weigh in "
                               "for a while. Thank you!")

    def resolve_item(self, actor: Actor, campaign: str, external_id: str, answer: str) -> Notice:
        """An admin settles a split item: `answer` is a model name, a 1-based response number, tie or both_bad."""
        self.require_admin(actor)
        with self.db.write() as s:
            camp = self._campaign_in(s, campaign)
            item = q.item_by_external_id(s, camp.id, external_id)
            if item is None:
                raise NotFound(f"No item {external_id!r} in {campaign}.")
            responses = q.item_responses(s, item.id)
            answer = answer.strip()
            if answer in NEUTRAL_OUTCOMES:
                resolution: dict[str, Any] = {"outcome": answer, "ranking": None}
            else:
                matches = [r.position for r in responses if r.model == answer]
                if answer.isdigit() and 1 <= int(answer) <= len(responses):
                    matches = [int(answer) - 1]
                if len(matches) != 1:
                    raise InvalidInput("Answer with a model name, a response number (1, 2, ...), tie or both_bad.")
                best = matches[0]
                ranking = [best] + [r.position for r in responses if r.position != best]
                resolution = {"outcome": Outcome.WIN if len(responses) == 2 else Outcome.RANK, "ranking": ranking}
            resolution["by"] = actor.key
            before = item.status
            item.resolution = resolution
            item.status = ItemStatus.RESOLVED
            s.add(item)
            q.add_audit(s, actor.key, "item.resolve", campaign_id=camp.id, item_id=item.id, before=before,
                        resolution=resolution)
        return Notice(f"Item {external_id} resolved as {answer}.")

    def requeue_old_guidelines(self, actor: Actor, campaign: str) -> Notice:
        """Reopen items voted under an older guideline version so they get k votes under the current one."""
        self.require_admin(actor)
        with self.db.write() as s:
            camp = self._campaign_in(s, campaign)
            stale = q.items_with_old_votes(s, camp.id, camp.guideline_version)
            for item, old_votes in stale:
                item.extra_votes = old_votes + item.extra_votes
                item.status = ItemStatus.OPEN
                s.add(item)
            q.add_audit(s, actor.key, "items.requeue", campaign_id=camp.id, items=len(stale),
                        guideline_version=camp.guideline_version)
        return Notice(f"Requeued {len(stale)} item(s) voted under guidelines older than version "
                      f"{camp.guideline_version}.")

    # ------------------------------------------------------------------ skip, flag, corrections, comments

    def skip(self, event: ItemSkipped) -> Notice:
        with self.db.write() as s:
            _post, item, camp = self._post_item(s, event.post_id)
            ann = self._annotator(s, event.actor)
            added = q.insert_ignore(s, Skip, {"item_id": item.id, "annotator_id": ann, "created_at": utcnow()},
                                    ("annotator_id", "item_id"))
            if added:
                q.add_audit(s, event.actor.key, "item.skip", campaign_id=camp.id, item_id=item.id)
        return Notice("Skipped. You won't be asked about this item again. `/label next` gives you another.")

    def flag(self, event: ItemFlagged) -> Notice:
        if len(event.reason) > MAX_REASON_CHARS:
            raise InvalidInput(f"Flag reasons are limited to {MAX_REASON_CHARS} characters.")
        with self.db.write() as s:
            _post, item, camp = self._post_item(s, event.post_id)
            ann = self._annotator(s, event.actor)
            added = q.insert_ignore(
                s, Flag, {"item_id": item.id, "annotator_id": ann, "reason": event.reason, "created_at": utcnow()},
                ("annotator_id", "item_id"),
            )
            if added:
                q.add_audit(s, event.actor.key, "item.flag", campaign_id=camp.id, item_id=item.id,
                            reason=event.reason)
                if len(q.flags_of(s, item.id)) >= 2 and item.status == ItemStatus.OPEN:
                    item.status = ItemStatus.FLAGGED
                    s.add(item)
        return Notice("Thanks, the item is flagged for an admin to review.")

    def submit_correction(self, event: CorrectionSubmitted) -> Notice:
        text = event.text.strip()
        if not text:
            raise InvalidInput("The correction is empty.")
        if len(text) > MAX_CORRECTION_CHARS:
            raise InvalidInput(f"Corrections are limited to {MAX_CORRECTION_CHARS} characters.")
        with self.db.write() as s:
            if event.delivery_id and not q.claim_delivery(s, event.delivery_id, "correction"):
                return Notice("Your correction was already saved.")
            post, item, camp = self._post_item(s, event.post_id)
            idx = LETTERS.index(event.letter) if event.letter in LETTERS else -1
            if not 0 <= idx < len(post.permutation):
                raise InvalidInput(f"This item has no response {event.letter}.")
            ann = self._annotator(s, event.actor)
            corr = Correction(item_id=item.id, annotator_id=ann, position=post.permutation[idx], text=text,
                              guideline_version=camp.guideline_version, delivery_id=event.delivery_id)
            s.add(corr)
            q.add_audit(s, event.actor.key, "correction.submit", campaign_id=camp.id, item_id=item.id,
                        position=corr.position)
        return Notice(f"Thanks! Your correction of response {event.letter} is saved.")

    def add_comment(self, event: CommentAdded) -> Notice | None:
        """Keep a thread reply as a comment on the item; None when the thread is not an item's."""
        text = event.text.strip()
        if not text:
            return None
        with self.db.write() as s:
            post = q.post_for_thread(s, event.platform, event.thread_id)
            if post is None:
                return None
            if event.delivery_id and not q.claim_delivery(s, event.delivery_id, "comment"):
                return Notice("Comment already saved.")
            ann = self._annotator(s, event.actor)
            s.add(Comment(item_id=post.item_id, annotator_id=ann, platform=event.platform,
                          message_id=event.message_id, text=text[:MAX_CORRECTION_CHARS]))
        return Notice("Comment saved.")

    # ------------------------------------------------------------------ stats

    def stats(self, campaign: str, *, bootstrap_rounds: int = 100) -> CampaignStats:
        from bot.core.stats import compute_stats

        return compute_stats(self.db, campaign, bootstrap_rounds=bootstrap_rounds)

    def leaderboard(self, campaign: str, *, bootstrap_rounds: int = 100) -> list[LeaderboardRow]:
        from bot.core.stats import compute_leaderboard

        with self.db.read() as s:
            camp = self._campaign_in(s, campaign)
            return compute_leaderboard(s, camp.id, bootstrap_rounds=bootstrap_rounds)

    def guidelines(self, campaign: str | None = None, *, post_id: int | None = None) -> tuple[str, str, int]:
        """(campaign name, guideline text, version) for a campaign, a posted item's campaign, or the active one."""
        with self.db.read() as s:
            if post_id is not None:
                _post, _item, camp = self._post_item(s, post_id)
            elif campaign:
                camp = self._campaign_in(s, campaign)
            else:
                active = [c for c in q.list_campaigns(s) if c.status == CampaignStatus.ACTIVE]
                if not active:
                    raise NotFound("There is no active campaign.")
                camp = active[0]
            return camp.name, camp.guidelines or "(no guidelines written yet)", camp.guideline_version

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _annotator(s: Any, actor: Actor) -> int:
        actor.check()
        return q.annotator_id(s, actor.platform, actor.workspace, actor.user_id, actor.display_name)


    def _post_item(self, s: Any, post_id: int) -> tuple[Post, Item, Campaign]:
        post = s.get(Post, post_id)
        if post is None:
            raise NotFound("That item is no longer available.")
        item = s.get(Item, post.item_id)
        camp = s.get(Campaign, item.campaign_id)
        return post, item, camp


def _lite(v: Vote) -> aggregate.VoteLite:
    return aggregate.VoteLite(v.outcome, tuple(v.ranking) if v.ranking else None)
