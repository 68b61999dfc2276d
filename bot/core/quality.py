"""Label quality: annotator reliability, outlier voters, position / length / formatting bias, fast votes.

Everything is computed from the vote table on demand (streamed by item), so the numbers always match
the data and nothing extra is written on the vote path.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from itertools import groupby
from typing import Any

from scipy.stats import binomtest
from sqlmodel import select

from bot.core import aggregate
from bot.core.errors import NotFound
from bot.core.replies import prompt_as_text
from storage import queries as q
from storage.domain import NEUTRAL_OUTCOMES, Outcome
from storage.models import Annotator, Item, Response, Vote

OUTLIER_ALPHA = 0.05
MIN_VOTES_FOR_TESTS = 5
DEFAULT_READ_CPS = 40.0  # characters per second nobody reads faster than, for the fast-vote check
MIN_READ_SECONDS = 2.0
FORMAT_MARKS = re.compile(r"(^#{1,6} |^\s*[-*+] |^\s*\d+\. |\*\*[^*]+\*\*|`{3})", re.MULTILINE)


@dataclass
class AnnotatorQuality:
    annotator_id: int
    name: str
    votes: int = 0
    gold_checks: int = 0
    gold_correct: int = 0
    compared: int = 0  # votes on items with at least two other votes
    agreed: int = 0  # ... that matched the others' consensus
    a_choices: int = 0  # pairwise win votes for the response shown first
    ab_choices: int = 0  # pairwise win votes (A or B)
    fast_votes: int = 0
    reliability: float = 1.0
    outlier_p: float | None = None
    position_p: float | None = None
    flags: list[str] = field(default_factory=list)

    @property
    def gold_accuracy(self) -> float | None:
        return self.gold_correct / self.gold_checks if self.gold_checks else None

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.compared if self.compared else None

    @property
    def a_share(self) -> float | None:
        return self.a_choices / self.ab_choices if self.ab_choices else None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(gold_accuracy=self.gold_accuracy, agreement=self.agreement, a_share=self.a_share)
        return out


@dataclass
class BiasReport:
    position_a_share: float | None
    position_p: float | None
    position_votes: int
    pairs: int
    chosen_longer_share: float | None
    length_p: float | None
    mean_chosen_chars: float | None
    mean_rejected_chars: float | None
    chosen_more_formatted_share: float | None
    formatting_p: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class QualityReport:
    campaign: str
    alpha: float | None
    mean_item_agreement: float | None
    split_items: list[str]
    flagged_items: list[str]
    annotators: list[AnnotatorQuality]
    bias: BiasReport
    fast_vote_threshold_chars_per_s: float

    @property
    def flagged_annotators(self) -> list[AnnotatorQuality]:
        return [a for a in self.annotators if a.flags]

    def weights(self) -> dict[int, float]:
        return {a.annotator_id: a.reliability for a in self.annotators}

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "agreement_alpha": self.alpha,
            "mean_item_agreement": self.mean_item_agreement,
            "split_items": self.split_items,
            "flagged_items": self.flagged_items,
            "annotators": [a.as_dict() for a in self.annotators],
            "flagged_annotators": [a.name for a in self.flagged_annotators],
            "bias": self.bias.as_dict(),
            "fast_vote_threshold_chars_per_s": self.fast_vote_threshold_chars_per_s,
        }


def formatting_score(text: str) -> int:
    """Markdown structure in a response: headers, list items, bold spans, code fences."""
    return len(FORMAT_MARKS.findall(text or ""))


def _p(successes: int, trials: int, p: float = 0.5, alternative: str = "two-sided") -> float | None:
    if trials == 0:
        return None
    return float(binomtest(successes, trials, p, alternative=alternative).pvalue)


def quality_report(db: Any, campaign: str) -> QualityReport:
    """Reliability and bias for every annotator and the campaign as a whole."""
    with db.read() as s:
        camp = q.campaign_by_name(s, campaign)
        if camp is None:
            raise NotFound(f"No campaign named {campaign!r}.")
        read_cps = float((camp.settings or {}).get("min_read_chars_per_s", DEFAULT_READ_CPS))
        # plain rows, not ORM objects: this reads every vote of the campaign
        items = {i.id: i for i in s.execute(
            select(Item.id, Item.external_id, Item.prompt, Item.n_responses, Item.status, Item.resolution)
            .where(Item.campaign_id == camp.id))}
        responses: dict[int, list[Any]] = defaultdict(list)
        for r in s.execute(select(Response.item_id, Response.text).join(Item, Item.id == Response.item_id)
                           .where(Item.campaign_id == camp.id).order_by(Response.item_id, Response.position)):
            responses[r.item_id].append(r)
        votes = list(s.execute(
            select(Vote.item_id, Vote.annotator_id, Vote.outcome, Vote.ranking, Vote.is_gold_check, Vote.gold_correct,
                   Vote.latency_ms, Vote.shown_choice)
            .join(Item, Item.id == Vote.item_id).where(Item.campaign_id == camp.id).order_by(Vote.item_id, Vote.id)))
        names = {a.id: f"{a.platform}:{a.display_name or a.user_id}"
                 for a in s.execute(select(Annotator.id, Annotator.platform, Annotator.display_name,
                                           Annotator.user_id))}
    people: dict[int, AnnotatorQuality] = {}
    labels: list[list[str]] = []
    agreements: list[float] = []
    split: list[str] = []
    chosen_longer = length_pairs = chosen_fmt = fmt_pairs = 0
    chosen_chars: list[int] = []
    rejected_chars: list[int] = []
    for item_id, group in groupby(votes, key=lambda v: v.item_id):
        item_votes = list(group)
        item = items[item_id]
        texts = [r.text for r in responses[item_id]]
        lites = [aggregate.VoteLite(v.outcome, tuple(v.ranking) if v.ranking else None) for v in item_votes]
        labels.append([lv.category for lv in lites])
        min_ms = max(MIN_READ_SECONDS, (len(prompt_as_text(item.prompt)) + sum(map(len, texts))) / read_cps) * 1000
        for v, lv in zip(item_votes, lites, strict=True):
            aq = people.setdefault(v.annotator_id, AnnotatorQuality(v.annotator_id, names.get(v.annotator_id, "?")))
            aq.votes += 1
            if v.is_gold_check:
                aq.gold_checks += 1
                aq.gold_correct += bool(v.gold_correct)
            if v.latency_ms is not None and v.latency_ms < min_ms:
                aq.fast_votes += 1
            if item.n_responses == 2 and v.outcome == Outcome.WIN and v.shown_choice in ("A", "B"):
                aq.ab_choices += 1
                aq.a_choices += v.shown_choice == "A"
            if len(item_votes) >= 3:
                others = [o for o in lites if o is not lv]
                cons = aggregate.item_consensus(others, item.n_responses)
                if cons.outcome is not None:
                    aq.compared += 1
                    aq.agreed += _matches(lv, cons)
        cons = (aggregate.resolved_consensus(item.resolution, len(lites), item.n_responses) if item.resolution
                else aggregate.item_consensus(lites, item.n_responses))
        if len(lites) >= 2:
            agreements.append(cons.agreement)
            if item.status != "resolved" and (cons.outcome is None or cons.agreement < camp.agreement_threshold):
                split.append(item.external_id)
        for pair in cons.pairs:
            if pair.chosen < len(texts) and pair.rejected < len(texts):
                a, b = texts[pair.chosen], texts[pair.rejected]
                chosen_chars.append(len(a))
                rejected_chars.append(len(b))
                if len(a) != len(b):
                    length_pairs += 1
                    chosen_longer += len(a) > len(b)
                fa, fb = formatting_score(a), formatting_score(b)
                if fa != fb:
                    fmt_pairs += 1
                    chosen_fmt += fa > fb
    _score_people(people)
    total_a = sum(p.a_choices for p in people.values())
    total_ab = sum(p.ab_choices for p in people.values())
    bias = BiasReport(
        position_a_share=total_a / total_ab if total_ab else None,
        position_p=_p(total_a, total_ab), position_votes=total_ab,
        pairs=len(chosen_chars),
        chosen_longer_share=chosen_longer / length_pairs if length_pairs else None,
        length_p=_p(chosen_longer, length_pairs),
        mean_chosen_chars=sum(chosen_chars) / len(chosen_chars) if chosen_chars else None,
        mean_rejected_chars=sum(rejected_chars) / len(rejected_chars) if rejected_chars else None,
        chosen_more_formatted_share=chosen_fmt / fmt_pairs if fmt_pairs else None,
        formatting_p=_p(chosen_fmt, fmt_pairs),
    )
    flagged_items = [i.external_id for i in items.values() if i.status == "flagged"]
    return QualityReport(
        campaign=camp.name, alpha=aggregate.krippendorff_alpha_nominal(labels),
        mean_item_agreement=sum(agreements) / len(agreements) if agreements else None,
        split_items=split, flagged_items=flagged_items,
        annotators=sorted(people.values(), key=lambda a: (-len(a.flags), -a.votes)), bias=bias,
        fast_vote_threshold_chars_per_s=read_cps,
    )


def _matches(vote: aggregate.VoteLite, cons: aggregate.ItemConsensus) -> bool:
    if cons.outcome in NEUTRAL_OUTCOMES:
        return vote.outcome == cons.outcome
    if not vote.ranking or cons.order is None:
        return False
    return vote.ranking[0] == cons.order[0]


def _score_people(people: dict[int, AnnotatorQuality]) -> None:
    """Reliability weights, the outlier test and position-bias flags."""
    compared = sum(p.compared for p in people.values())
    base_disagree = 1 - sum(p.agreed for p in people.values()) / compared if compared else 0.0
    # Bonferroni over the annotators tested keeps the false-flag rate at alpha for the whole crowd
    tested = [p for p in people.values() if p.compared >= MIN_VOTES_FOR_TESTS]
    alpha = OUTLIER_ALPHA / max(1, len(tested))
    for p in people.values():
        # Laplace-smoothed agreement with the crowd, times gold accuracy where there were gold checks
        agree = (p.agreed + 1) / (p.compared + 2)
        gold = (p.gold_correct + 1) / (p.gold_checks + 2) if p.gold_checks else 1.0
        p.reliability = round(max(0.05, agree * gold), 4)
        if p.compared >= MIN_VOTES_FOR_TESTS and 0 < base_disagree < 1:
            p.outlier_p = _p(p.compared - p.agreed, p.compared, base_disagree, "greater")
            if p.outlier_p is not None and p.outlier_p < alpha:
                p.flags.append("contradicts the crowd")
        if p.ab_choices >= MIN_VOTES_FOR_TESTS:
            p.position_p = _p(p.a_choices, p.ab_choices)
            if p.position_p is not None and p.position_p < alpha:
                p.flags.append("position bias")
        if p.gold_checks >= MIN_VOTES_FOR_TESTS and (p.gold_accuracy or 0) < 0.5:
            p.flags.append("fails gold checks")
        if p.votes >= MIN_VOTES_FOR_TESTS and p.fast_votes / p.votes > 0.5:
            p.flags.append("votes faster than anyone can read")
