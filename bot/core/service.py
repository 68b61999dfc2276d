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
from typing import Any

from sqlalchemy.exc import IntegrityError

from bot.core import aggregate
from bot.core.errors import (
    CampaignPaused,
    ConflictError,
    InvalidInput,
    LabelingError,
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
REVEAL_POLICIES = ("quorum", "never", "always")


@dataclass(frozen=True)
class CampaignSpec:
    """What `campaign create` accepts."""

    name: str
    guidelines: str = ""
    overlap: int = 3
    criteria: tuple[str, ...] = ()
    slack_channel: str | None = None
    discord_channel: str | None = None
    reveal: str = "quorum"
    gold_rate: float = 0.1


class LabelingService:
    """The platform-agnostic labeling core."""

    def __init__(self, db: Database, admins: Iterable[tuple[str, str]] = (), *, seed: int | None = None) -> None:
        self.db = db
        self.env_admins = {(p.lower(), u) for p, u in admins}
        self._rng = random.Random(seed)

    # ------------------------------------------------------------------ admin and campaigns

    def is_admin(self, actor: Actor) -> bool:
        """Admins: LABELBOT_ADMINS, the roles table, a platform-verified admin flag; the local CLI operator always."""
        if actor.platform == "cli" or actor.platform_admin or (actor.platform, actor.user_id) in self.env_admins:
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
                    slack_channel=spec.slack_channel, discord_channel=spec.discord_channel, reveal=spec.reveal,
                    gold_rate=spec.gold_rate,
                )
                s.add(camp)
                s.flush()
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
        if status not in ("active", "paused"):
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
        allowed = {"slack_channel", "discord_channel", "overlap", "reveal", "guidelines", "gold_rate", "criteria",
                   "daily_cap", "agreement_threshold", "max_extra_votes"}
        unknown = set(changes) - allowed
        if unknown:
            raise InvalidInput(f"Unknown campaign setting(s): {', '.join(sorted(unknown))}.")
        with self.db.write() as s:
            camp = self._campaign_in(s, name)
            before = {k: getattr(camp, k) for k in changes}
            for key, value in changes.items():
                if key == "guidelines" and value != camp.guidelines:
                    camp.guideline_version += 1
                    s.add(Guideline(campaign_id=camp.id, version=camp.guideline_version, text=value))
                setattr(camp, key, value)
            s.add(camp)
            q.add_audit(s, actor.key, "campaign.update", campaign_id=camp.id,
                        before={k: v for k, v in before.items() if k != "guidelines"},
                        after={k: v for k, v in changes.items() if k != "guidelines"},
                        guideline_version=camp.guideline_version)
        return camp

    def _campaign_in(self, s: Any, name: str) -> Campaign:
        camp = q.campaign_by_name(s, name)
        if camp is None:
            raise NotFound(f"No campaign named {name!r}. `labelbot campaign list` shows the campaigns.")
        return camp

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
            if camp.status != "active":
                raise CampaignPaused(f"Campaign {campaign!r} is paused; resume it before posting.")
            items = q.items_to_post(s, camp.id, platform, limit)
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
                c for c in q.list_campaigns(s) if c.status == "active"
            ]
            for camp in camps:
                if camp.status != "active":
                    raise CampaignPaused(f"Campaign {camp.name!r} is paused.")
                item = None
                if camp.gold_rate > 0 and self._rng.random() < camp.gold_rate:
                    item = q.next_item_for(s, camp.id, ann, overlap=camp.overlap, gold=True)
                item = item or q.next_item_for(s, camp.id, ann, overlap=camp.overlap)
                if item is not None:
                    post = self._new_post(s, item, event.actor.platform, event.channel, event.actor.workspace)
                    post.message_id = None
                    s.flush()
                    return self._post_view(s, post, camp=camp, item=item)
        return None

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
        responses = q.item_responses(s, item.id)
        quorum = camp.overlap + item.extra_votes
        revealed = camp.reveal == "always" or (
            camp.reveal == "quorum" and item.status in ("complete", "resolved")
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
            cons = aggregate.item_consensus([_lite(v) for v in votes], item.n_responses)
            consensus = None
            if cons.outcome in ("tie", "both_bad"):
                consensus = cons.outcome
            elif cons.order is not None:
                inv = {pos: letter(i) for i, pos in enumerate(post.permutation)}
                consensus = inv[cons.order[0]] if cons.outcome == "win" else ">".join(inv[p] for p in cons.order)
            result = ItemResult(tallies, consensus, cons.agreement)
        return PostView(
            post_id=post.id, item_id=item.id, campaign=camp.name, external_id=item.external_id, prompt=item.prompt,
            responses=shown, criteria=list(camp.criteria), vote_count=item.vote_count, quorum=quorum,
            revealed=revealed, result=result, guideline_version=camp.guideline_version,
        )

    @staticmethod
    def _shown_choice(vote: Vote, permutation: list[int]) -> str:
        if vote.outcome in ("tie", "both_bad"):
            return vote.outcome
        inv = {pos: letter(i) for i, pos in enumerate(permutation)}
        ranking = vote.ranking or []
        if vote.outcome == "win":
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
        if choice not in ("tie", "both_bad") and not (len(choice) == 1 and choice in LETTERS):
            raise InvalidInput(f"Unknown choice {choice!r}.")

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

    def cast_votes(self, events: Sequence[VoteCast]) -> list[VoteRecorded | LabelingError]:
        """Group commit: several votes in one transaction (one fsync), each in its own savepoint.

        Results come back in order; a vote the core refuses gives its LabelingError and changes
        nothing, the others still commit. Any other error aborts the whole batch (callers then fall
        back to `cast_vote` one by one). Nothing is returned before the commit, as for `cast_vote`.
        """
        results: list[VoteRecorded | LabelingError] = []
        with self.db.write() as s:
            for event in events:
                try:
                    self._check_choice(event.choice)
                    with s.begin_nested():
                        results.append(self._record_in(s, event.actor, event.post_id, event.delivery_id,
                                                       ("choice", event.choice), reason=event.reason,
                                                       scores=event.scores, batch=True))
                except LabelingError as exc:
                    results.append(exc)
        return results

    def _record(self, actor: Actor, post_id: int, delivery_id: str | None, what: tuple[str, Any], *,
                reason: str | None = None, scores: dict[str, Any] | None = None) -> VoteRecorded:
        with self.db.write() as s:
            return self._record_in(s, actor, post_id, delivery_id, what, reason=reason, scores=scores)

    def _record_in(self, s: Any, actor: Actor, post_id: int, delivery_id: str | None, what: tuple[str, Any], *,
                   reason: str | None = None, scores: dict[str, Any] | None = None,
                   batch: bool = False) -> VoteRecorded:
        """One vote inside the caller's transaction (`batch`: inside a savepoint of a group commit)."""
        if reason is not None and len(reason) > MAX_REASON_CHARS:
            raise InvalidInput(f"Reasons are limited to {MAX_REASON_CHARS} characters.")
        if delivery_id and not q.claim_delivery(s, delivery_id, "vote"):
            if not batch:
                s.rollback()
            return self._replayed(s, actor, post_id)
        post = s.get(Post, post_id)
        if post is None:
            raise NotFound("That item is no longer available.")
        item = q.lock_item(s, post.item_id)
        camp = s.get(Campaign, item.campaign_id)
        if camp.status != "active":
            raise CampaignPaused(f"Campaign {camp.name!r} is paused; votes are not being collected.")
        perm = post.permutation
        n = len(perm)
        kind, value = what
        if kind == "choice":
            if value in ("tie", "both_bad"):
                outcome, ranking, winner = value, None, None
            else:
                idx = LETTERS.index(value)
                if idx >= n:
                    raise InvalidInput(f"This item has no response {value}.")
                outcome = "win"
                ranking = [perm[idx]] + ([perm[1 - idx]] if n == 2 else [])
                winner = perm[idx]
            shown = value
        else:
            if sorted(value) != [letter(i) for i in range(n)]:
                raise InvalidInput(f"Rank all {n} responses ({', '.join(letter(i) for i in range(n))}).")
            ranking = [perm[LETTERS.index(x)] for x in value]
            outcome, winner = ("win", ranking[0]) if n == 2 else ("rank", ranking[0])
            shown = ">".join(value) if n > 2 else value[0]
        clean_scores = self._validate_scores(camp, scores) if scores else None
        ann = self._annotator(s, actor)
        existing = q.vote_of(s, ann, item.id)
        quorum = camp.overlap + item.extra_votes
        previous_shown = self._shown_choice(existing, perm) if existing else None
        if existing is None and item.status != "open":
            raise ConflictError("This item already has all its votes. `/label next` gives you a fresh one.")
        gold = None
        if item.gold:
            gold = self._gold_feedback(camp, item, perm, outcome, ranking)
        changed = False
        reached = False
        extra = False
        if existing is None:
            vote = Vote(item_id=item.id, annotator_id=ann, post_id=post.id, outcome=outcome, ranking=ranking,
                        winner=winner, shown_choice=shown, scores=clean_scores, reason=reason,
                        guideline_version=camp.guideline_version, delivery_id=delivery_id,
                        is_gold_check=gold is not None, gold_correct=gold.correct if gold else None)
            s.add(vote)
            item.vote_count += 1
            q.add_audit(s, actor.key, "vote.cast", campaign_id=camp.id, item_id=item.id, choice=outcome,
                        ranking=ranking, shown=shown, post_id=post.id)
            s.flush()
            if item.vote_count >= quorum:
                votes = [_lite(v) for v in q.item_votes(s, item.id)]
                cons = aggregate.item_consensus(votes, n)
                if cons.agreement < camp.agreement_threshold and item.extra_votes < camp.max_extra_votes:
                    item.extra_votes += 1
                    extra = True
                    q.add_audit(s, "system", "item.extra_vote", campaign_id=camp.id, item_id=item.id,
                                agreement=round(cons.agreement, 3), extra_votes=item.extra_votes)
                else:
                    item.status = "complete"
                    reached = True
            s.add(item)
        else:
            same = existing.outcome == outcome and (existing.ranking or None) == (ranking or None)
            if not same:
                changed = True
                q.add_audit(s, actor.key, "vote.change", campaign_id=camp.id, item_id=item.id,
                            before={"outcome": existing.outcome, "ranking": existing.ranking},
                            after={"outcome": outcome, "ranking": ranking}, post_id=post.id)
                existing.outcome, existing.ranking, existing.winner = outcome, ranking, winner
                existing.shown_choice = shown
                existing.post_id = post.id
                existing.guideline_version = camp.guideline_version
                if gold is not None:
                    existing.gold_correct = gold.correct
            if reason is not None:
                existing.reason = reason
            if clean_scores:
                existing.scores = {**(existing.scores or {}), **clean_scores}
            if delivery_id:
                existing.delivery_id = delivery_id
            existing.updated_at = utcnow()
            s.add(existing)
        s.flush()
        view = self._post_view(s, post, camp=camp, item=item)
        return VoteRecorded(post=view, choice=shown, changed=changed, previous=previous_shown, replay=False,
                            reached_quorum=reached, extra_vote_requested=extra, gold=gold)

    def _replayed(self, s: Any, actor: Actor, post_id: int) -> VoteRecorded:
        post = s.get(Post, post_id)
        if post is None:
            raise NotFound("That item is no longer available.")
        ann = self._annotator_readonly(s, actor)
        vote = q.vote_of(s, ann, post.item_id) if ann is not None else None
        shown = self._shown_choice(vote, post.permutation) if vote else "?"
        view = self._post_view(s, post)
        return VoteRecorded(post=view, choice=shown, changed=False, previous=shown, replay=True,
                            reached_quorum=False)

    def _gold_feedback(self, camp: Campaign, item: Item, perm: list[int], outcome: str,
                       ranking: list[int] | None) -> GoldFeedback:
        gold = item.gold or {}
        inv = {pos: letter(i) for i, pos in enumerate(perm)}
        if "best" in gold and gold["best"] is not None:
            expected_pos = int(gold["best"])
            correct = outcome in ("win", "rank") and bool(ranking) and ranking[0] == expected_pos
            expected = inv.get(expected_pos, "?")
        else:
            expected = str(gold.get("outcome", "tie"))
            correct = outcome == expected
        excerpt = (camp.guidelines or "").strip()
        section = gold.get("guideline") or ""
        if section and section in excerpt:
            start = excerpt.index(section)
            excerpt = excerpt[start : start + 600]
        else:
            excerpt = excerpt[:600]
        return GoldFeedback(correct, expected, str(gold.get("explanation", "")), excerpt)

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
                if len(q.flags_of(s, item.id)) >= 2 and item.status == "open":
                    item.status = "flagged"
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

    def guidelines(self, campaign: str | None = None) -> tuple[str, str, int]:
        """(campaign name, guideline text, version) for one campaign or the only active one."""
        with self.db.read() as s:
            if campaign:
                camp = self._campaign_in(s, campaign)
            else:
                active = [c for c in q.list_campaigns(s) if c.status == "active"]
                if not active:
                    raise NotFound("There is no active campaign.")
                camp = active[0]
            return camp.name, camp.guidelines or "(no guidelines written yet)", camp.guideline_version

    # ------------------------------------------------------------------ helpers

    def _annotator(self, s: Any, actor: Actor) -> int:
        if not actor.user_id or len(actor.user_id) > 64 or len(actor.workspace) > 64:
            raise InvalidInput("Unknown user.")
        return q.annotator_id(s, actor.platform, actor.workspace, actor.user_id, actor.display_name)

    @staticmethod
    def _annotator_readonly(s: Any, actor: Actor) -> int | None:
        from sqlmodel import select

        from storage.models import Annotator

        row = s.exec(select(Annotator.id, Annotator.linked_to_id).where(
            Annotator.platform == actor.platform, Annotator.workspace == actor.workspace,
            Annotator.user_id == actor.user_id)).first()
        return None if row is None else int(row[1] or row[0])

    def _post_item(self, s: Any, post_id: int) -> tuple[Post, Item, Campaign]:
        post = s.get(Post, post_id)
        if post is None:
            raise NotFound("That item is no longer available.")
        item = s.get(Item, post.item_id)
        camp = s.get(Campaign, item.campaign_id)
        return post, item, camp


def _lite(v: Vote) -> aggregate.VoteLite:
    return aggregate.VoteLite(v.outcome, tuple(v.ranking) if v.ranking else None)
