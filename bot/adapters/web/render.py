"""Core replies -> what the voting page shows. Pure functions, no I/O.

The words are Slack's and Discord's: the same button labels ("A better", "B better", "Tie", "Both bad";
"A best", …, "Rank…", "All bad" for three or more responses), the same confirmation sentences from
`VoteRecorded.summary`, the same progress line that hides tallies and model names until the item may
be revealed. Model answers are Markdown, rendered with raw HTML disabled (so a model cannot inject
markup) and unsafe link schemes refused by markdown-it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from markupsafe import Markup

from bot.core.replies import GoldFeedback, PostView, ShownResponse, VoteRecorded, choice_label
from storage.domain import Outcome

ORDINALS = ["1st (best)", "2nd", "3rd", "4th", "5th", "6th", "7th", "8th"]
SCORE_LABELS = {1: "1 — poor", 2: "2", 3: "3 — acceptable", 4: "4", 5: "5 — excellent"}


@dataclass(frozen=True)
class Button:
    label: str
    value: str
    key: str | None  # keyboard shortcut
    chosen: bool


def title(view: PostView) -> str:
    return "Which response is better?" if view.n == 2 else f"Which of these {view.n} responses is best?"


def vote_buttons(view: PostView, mine: str | None) -> list[Button]:
    """One button per response, then Tie and Both bad (All bad with three or more); `mine` is highlighted."""
    two = view.n == 2
    out = [Button(f"{r.letter} {'better' if two else 'best'}", r.letter, str(i + 1) if i < 9 else None,
                  mine == r.letter) for i, r in enumerate(view.responses)]
    out.append(Button("Tie", Outcome.TIE, "t", mine == Outcome.TIE))
    out.append(Button("Both bad" if two else "All bad", Outcome.BOTH_BAD, "b", mine == Outcome.BOTH_BAD))
    return out


def ordinal(i: int) -> str:
    return ORDINALS[i] if i < len(ORDINALS) else f"{i + 1}th"


def ranking_of(mine: str | None, n: int) -> list[str]:
    """The current ranking as letters (to pre-select the rank form), or [] when the vote is not a ranking."""
    if mine and ">" in mine:
        return mine.split(">")
    return []


def consensus_label(consensus: str) -> str:
    return "ranking " + consensus if ">" in consensus else choice_label(consensus)


def status_lines(view: PostView) -> list[str]:
    """'2/3 votes' before the item may be revealed; the result, tallies and models after."""
    progress = f"{view.vote_count}/{view.quorum} votes"
    if not view.revealed or view.result is None:
        return [progress]
    res = view.result
    consensus = "no consensus (votes split)" if res.consensus is None else consensus_label(res.consensus)
    tallies = " · ".join(f"{choice_label(k)}: {v}" for k, v in sorted(res.tallies.items(), key=lambda kv: -kv[1]))
    models = ", ".join(f"{r.letter} = {r.model or '?'}" for r in view.responses)
    return [f"{progress} · Result: {consensus} (agreement {res.agreement:.0%}) · {tallies}", f"Models: {models}"]


def response_heading(r: ShownResponse, view: PostView) -> str:
    return f"Response {r.letter}" + (f" — {r.model}" if view.revealed and r.model else "")


def gold_text(gold: GoldFeedback) -> list[str]:
    if gold.correct:
        return ["This was a check item, and your answer matches the reference. 🎉"]
    out = f"This was a check item: the reference answer is {choice_label(gold.expected)}."
    if gold.explanation:
        out += f" {gold.explanation}"
    lines = [out]
    if gold.guideline_excerpt:
        lines.append(f"From the guidelines: {gold.guideline_excerpt}")
    return lines


def vote_confirmation(rec: VoteRecorded) -> list[str]:
    """What the voter reads once the vote is committed (Slack's and Discord's sentences)."""
    lines = [rec.summary]
    if rec.gold is not None:
        lines += gold_text(rec.gold)
    if rec.extra_vote_requested:
        lines.append("The votes on this item split, so one more vote was requested.")
    if rec.reached_quorum:
        lines.append("That was the last vote this item needed; the result is now shown below.")
    return lines


def for_the_page(text: str) -> str:
    """Core sentences name the chat command for the next item; on the page it is a button."""
    return (text.replace(" `/label next` gives you another.", "")
            .replace("`/label next` gives you a fresh one.", "Press Next item for a fresh one."))


@lru_cache(maxsize=1)
def _markdown() -> Any:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")


def markdown(text: str) -> Markup:
    """Model text as HTML: Markdown rendered, raw HTML shown as text, javascript:/data: links refused."""
    return Markup(_markdown().render(text or ""))


def media_kind(value: str | None) -> str | None:
    """How the page can show a response's image or audio: inline (data: or http(s) URL) or served (a path)."""
    if not value:
        return None
    if value.startswith(("data:image/", "data:audio/", "https://", "http://")):
        return "inline"
    return "served"
