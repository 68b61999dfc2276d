"""Persistent buttons (discord.py `DynamicItem`s) and the modals they open.

Every button's custom id is `lbl:<action>:<post_id>[:<arg>]` (the same pattern as Slack), and each
action has a `DynamicItem` class whose template matches it. The classes are registered at start-up
(`Client.add_dynamic_items`), so a button keeps working after a restart for messages posted before
it: discord.py rebuilds the item from the custom id on every click, no view object is kept.

Modals are stateless too: the modal's custom id carries the post and letter, the bot handles every
`lbl:` modal submission in `on_interaction`, and a modal object is never kept in discord.py's store
(it is stopped before sending). So a form opened before a restart still submits, and two people
filling in the same form never collide.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord

from bot.adapters.discord.translate import CHOICE, POST_ID, custom_id
from bot.core.replies import PostView

if TYPE_CHECKING:
    from bot.adapters.discord.handlers import Handlers

TEXT_INPUT_MAX = 4000
MODAL_INPUTS_MAX = 5
MODAL_TITLE_MAX = 45
LABEL_MAX = 45


def handlers_of(interaction: discord.Interaction) -> Handlers:
    return interaction.client.labelbot  # type: ignore[attr-defined]


class VoteButton(discord.ui.DynamicItem[discord.ui.Button], template=rf"lbl:vote:{POST_ID}:{CHOICE}"):
    """A better / B better / Tie / Both bad (and "A best" ... for more than two responses)."""

    def __init__(self, post_id: int, choice: str, *, label: str | None = None,
                 style: discord.ButtonStyle = discord.ButtonStyle.primary, row: int | None = None) -> None:
        super().__init__(discord.ui.Button(label=label or choice, style=style, custom_id=custom_id("vote", post_id,
                                                                                                   choice)), row=row)
        self.post_id, self.choice = post_id, choice

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button,
                             match: Any) -> VoteButton:
        return cls(int(match["post"]), match["arg"], label=item.label, style=item.style)

    async def callback(self, interaction: discord.Interaction) -> None:
        await handlers_of(interaction).vote(interaction, self.post_id, self.choice)


class _PostButton:
    """Shared constructor of the single-argument buttons below."""

    action = ""

    def _make(self, post_id: int, label: str, style: discord.ButtonStyle, row: int | None,
              arg: str | None = None) -> tuple[discord.ui.Button, int | None]:
        self.post_id, self.arg = post_id, arg
        return discord.ui.Button(label=label, style=style, custom_id=custom_id(self.action, post_id, arg)), row


class SkipButton(_PostButton, discord.ui.DynamicItem[discord.ui.Button], template=rf"lbl:skip:{POST_ID}"):
    action = "skip"

    def __init__(self, post_id: int, *, label: str = "Skip", style: discord.ButtonStyle = discord.ButtonStyle.secondary,
                 row: int | None = None) -> None:
        button, row = self._make(post_id, label, style, row)
        super().__init__(button, row=row)

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button, match: Any) -> SkipButton:
        return cls(int(match["post"]), label=item.label or "Skip", style=item.style)

    async def callback(self, interaction: discord.Interaction) -> None:
        await handlers_of(interaction).skip(interaction, self.post_id)


class FlagButton(_PostButton, discord.ui.DynamicItem[discord.ui.Button], template=rf"lbl:flag:{POST_ID}"):
    action = "flag"

    def __init__(self, post_id: int, *, label: str = "Flag", style: discord.ButtonStyle = discord.ButtonStyle.danger,
                 row: int | None = None) -> None:
        button, row = self._make(post_id, label, style, row)
        super().__init__(button, row=row)

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button, match: Any) -> FlagButton:
        return cls(int(match["post"]), label=item.label or "Flag", style=item.style)

    async def callback(self, interaction: discord.Interaction) -> None:
        await handlers_of(interaction).open_flag(interaction, self.post_id)


class FixButton(_PostButton, discord.ui.DynamicItem[discord.ui.Button],
                template=rf"lbl:fix:{POST_ID}(?::(?P<arg>[A-Z]))?"):
    """"Suggest correction": without a letter it asks which response; with one it opens the form."""

    action = "fix"

    def __init__(self, post_id: int, letter: str | None = None, *, label: str = "Suggest correction",
                 style: discord.ButtonStyle = discord.ButtonStyle.secondary, row: int | None = None) -> None:
        button, row = self._make(post_id, label, style, row, letter)
        super().__init__(button, row=row)

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button, match: Any) -> FixButton:
        return cls(int(match["post"]), match["arg"], label=item.label or "Suggest correction", style=item.style)

    async def callback(self, interaction: discord.Interaction) -> None:
        await handlers_of(interaction).open_fix(interaction, self.post_id, self.arg)


class RankButton(_PostButton, discord.ui.DynamicItem[discord.ui.Button], template=rf"lbl:rank:{POST_ID}"):
    action = "rank"

    def __init__(self, post_id: int, *, label: str = "Rank…", style: discord.ButtonStyle = discord.ButtonStyle.primary,
                 row: int | None = None) -> None:
        button, row = self._make(post_id, label, style, row)
        super().__init__(button, row=row)

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button, match: Any) -> RankButton:
        return cls(int(match["post"]), label=item.label or "Rank…", style=item.style)

    async def callback(self, interaction: discord.Interaction) -> None:
        await handlers_of(interaction).open_rank(interaction, self.post_id)


class ScoreButton(_PostButton, discord.ui.DynamicItem[discord.ui.Button], template=rf"lbl:score:{POST_ID}"):
    action = "score"

    def __init__(self, post_id: int, *, label: str = "Scores…",
                 style: discord.ButtonStyle = discord.ButtonStyle.secondary, row: int | None = None) -> None:
        button, row = self._make(post_id, label, style, row)
        super().__init__(button, row=row)

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button, match: Any) -> ScoreButton:
        return cls(int(match["post"]), label=item.label or "Scores…", style=item.style)

    async def callback(self, interaction: discord.Interaction) -> None:
        await handlers_of(interaction).open_scores(interaction, self.post_id)


class GuideButton(_PostButton, discord.ui.DynamicItem[discord.ui.Button], template=rf"lbl:guide:{POST_ID}"):
    action = "guide"

    def __init__(self, post_id: int, *, label: str = "Guidelines",
                 style: discord.ButtonStyle = discord.ButtonStyle.secondary, row: int | None = None) -> None:
        button, row = self._make(post_id, label, style, row)
        super().__init__(button, row=row)

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button, match: Any) -> GuideButton:
        return cls(int(match["post"]), label=item.label or "Guidelines", style=item.style)

    async def callback(self, interaction: discord.Interaction) -> None:
        await handlers_of(interaction).guidelines(interaction, self.post_id)


DYNAMIC_ITEMS: tuple[type[discord.ui.DynamicItem[Any]], ...] = (
    VoteButton, SkipButton, FlagButton, FixButton, RankButton, ScoreButton, GuideButton,
)


def post_buttons(view: PostView) -> discord.ui.View:
    """The buttons of a posted item: persistent (no timeout, explicit custom ids), at most 4 rows of 5."""
    ui = discord.ui.View(timeout=None)
    letters = [r.letter for r in view.responses]
    pid = view.post_id
    if len(letters) == 2:
        for letter in letters:
            ui.add_item(VoteButton(pid, letter, label=f"{letter} better", row=0))
        ui.add_item(VoteButton(pid, "tie", label="Tie", style=discord.ButtonStyle.secondary, row=0))
        ui.add_item(VoteButton(pid, "both_bad", label="Both bad", style=discord.ButtonStyle.secondary, row=0))
        last = 1
    else:
        for i, letter in enumerate(letters):
            ui.add_item(VoteButton(pid, letter, label=f"{letter} best", row=i // 5))
        row = (len(letters) - 1) // 5 + 1
        ui.add_item(RankButton(pid, row=row))
        ui.add_item(VoteButton(pid, "tie", label="All equal", style=discord.ButtonStyle.secondary, row=row))
        ui.add_item(VoteButton(pid, "both_bad", label="All bad", style=discord.ButtonStyle.secondary, row=row))
        last = row + 1
    ui.add_item(SkipButton(pid, row=last))
    ui.add_item(FixButton(pid, row=last))
    ui.add_item(FlagButton(pid, row=last))
    ui.add_item(GuideButton(pid, row=last))
    if view.criteria:
        ui.add_item(ScoreButton(pid, row=last))
    return ui


def letter_picker(post_id: int, letters: list[str]) -> discord.ui.View:
    """"Which response do you want to correct?" (an ephemeral row of persistent buttons)."""
    ui = discord.ui.View(timeout=None)
    for i, letter in enumerate(letters[:25]):
        ui.add_item(FixButton(post_id, letter, label=f"Correct {letter}", style=discord.ButtonStyle.primary,
                              row=i // 5))
    return ui


def _stateless(modal: discord.ui.Modal) -> discord.ui.Modal:
    modal.stop()  # never stored by discord.py: `on_interaction` handles lbl: submissions by custom id
    return modal


def correction_modal(post_id: int, letter: str, original: str | None) -> discord.ui.Modal | None:
    """A form pre-filled with the response; long responses span up to five inputs. None if too long."""
    text = original or ""
    parts = [text[i : i + TEXT_INPUT_MAX] for i in range(0, len(text), TEXT_INPUT_MAX)] or [""]
    if len(parts) > MODAL_INPUTS_MAX:
        return None
    modal = discord.ui.Modal(title=f"Suggest a correction for response {letter}"[:MODAL_TITLE_MAX],
                             custom_id=custom_id("fix", post_id, letter))
    for i, part in enumerate(parts):
        label = "Corrected response" + (f" (part {i + 1} of {len(parts)})" if len(parts) > 1 else "")
        modal.add_item(discord.ui.TextInput(label=label, custom_id=f"text{i}", style=discord.TextStyle.paragraph,
                                            default=part or None, max_length=TEXT_INPUT_MAX, required=i == 0))
    return _stateless(modal)


def rank_modal(post_id: int, letters: list[str]) -> discord.ui.Modal:
    modal = discord.ui.Modal(title="Rank the responses", custom_id=custom_id("rank", post_id))
    example = " > ".join(reversed(letters))
    modal.add_item(discord.ui.TextInput(label=f"Best first, e.g. {example}"[:LABEL_MAX], custom_id="order",
                                        placeholder=example, max_length=100))
    modal.add_item(discord.ui.TextInput(label="Why? (optional)", custom_id="reason", style=discord.TextStyle.paragraph,
                                        required=False, max_length=TEXT_INPUT_MAX))
    return _stateless(modal)


def scores_modal(post_id: int, criteria: list[str]) -> discord.ui.Modal:
    modal = discord.ui.Modal(title="Score this item (1 to 5)", custom_id=custom_id("score", post_id))
    for name in criteria[:MODAL_INPUTS_MAX]:
        label = name if len(name) + 6 <= LABEL_MAX else name[: LABEL_MAX - 7] + "…"
        modal.add_item(discord.ui.TextInput(label=f"{label} (1-5)", custom_id=f"score:{name}", max_length=1,
                                            placeholder="1 = poor, 5 = excellent"))
    return _stateless(modal)


def flag_modal(post_id: int) -> discord.ui.Modal:
    modal = discord.ui.Modal(title="Flag this item for an admin", custom_id=custom_id("flag", post_id))
    modal.add_item(discord.ui.TextInput(label="What is wrong? (optional)", custom_id="reason", required=False,
                                        style=discord.TextStyle.paragraph, max_length=TEXT_INPUT_MAX))
    return _stateless(modal)
