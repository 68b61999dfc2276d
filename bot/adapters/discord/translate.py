"""Discord payloads -> core events: custom ids, actors, modal fields. No I/O, no discord.py objects needed."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any

from bot.core.errors import InvalidInput
from bot.core.events import Actor
from bot.core.replies import LETTERS
from storage.domain import Platform

PLATFORM = Platform.DISCORD
ACTIONS = ("vote", "skip", "flag", "fix", "rank", "score", "guide")
POST_ID = r"(?P<post>[0-9]{1,18})"
CHOICE = r"(?P<arg>[A-Z]|tie|both_bad)"
# One anchored pattern for every button and modal, shared with Slack: lbl:<action>:<post_id>[:<arg>]
CUSTOM_ID = re.compile(rf"^lbl:(?P<action>{'|'.join(ACTIONS)}):{POST_ID}(?::{CHOICE})?$")
MAX_CUSTOM_ID = 100


@dataclass(frozen=True)
class Action:
    action: str
    post_id: int
    arg: str | None = None


def custom_id(action: str, post_id: int, arg: str | None = None) -> str:
    """Build `lbl:<action>:<post_id>[:<arg>]`; raises on anything the parser would not accept back."""
    value = f"lbl:{action}:{post_id}" + (f":{arg}" if arg else "")
    if len(value) > MAX_CUSTOM_ID or not CUSTOM_ID.match(value):
        raise ValueError(f"bad custom id {value!r}")
    return value


def parse_custom_id(value: str | None) -> Action | None:
    """The action a custom id names, or None when it is not one of ours (or malformed)."""
    match = CUSTOM_ID.match(value or "")
    if match is None:
        return None
    return Action(match["action"], int(match["post"]), match["arg"])


def actor(user_id: int | str, display_name: str | None = None, *, platform_admin: bool = False) -> Actor:
    """A Discord user. User ids are global snowflakes, so the workspace is empty: one user, one annotator
    across every guild the bot is in."""
    return Actor(PLATFORM, "", str(user_id), display_name, platform_admin)


def modal_values(components: list[dict[str, Any]] | None) -> dict[str, str]:
    """Text input values of a modal submission by custom id (action rows or, newer, label wrappers)."""
    out: dict[str, str] = {}

    def visit(node: dict[str, Any]) -> None:
        if "custom_id" in node and "value" in node and isinstance(node["value"], str):
            out[node["custom_id"]] = node["value"]
        for child in node.get("components") or []:
            visit(child)
        if isinstance(node.get("component"), dict):
            visit(node["component"])

    for comp in components or []:
        if isinstance(comp, dict):
            visit(comp)
    return out


def parse_order(text: str, n: int) -> list[str]:
    """'C A B', 'C>A>B', 'c,a,b' or 'CAB' -> ['C', 'A', 'B']; every shown letter exactly once."""
    letters = [ch for ch in (text or "").upper() if ch.isalpha()]
    expected = list(LETTERS[:n])
    if sorted(letters) != expected:
        raise InvalidInput(f"Rank all {n} responses once each, best first, e.g. `{' > '.join(reversed(expected))}`.")
    return letters


def letters_on_message(components: list[dict[str, Any]] | None, post_id: int) -> list[str]:
    """The response letters a posted message offers (from its vote buttons), to build forms without a DB read."""
    found: list[str] = []

    def visit(node: dict[str, Any]) -> None:
        act = parse_custom_id(node.get("custom_id"))
        if act and act.action == "vote" and act.post_id == post_id and act.arg and len(act.arg) == 1:
            found.append(act.arg)
        for child in node.get("components") or []:
            visit(child)

    for comp in components or []:
        visit(comp)
    return sorted(set(found))


def command_text(*words: Any) -> str:
    """`/label` app-command options -> the text the shared dispatcher parses (same as Slack's)."""
    return " ".join(shlex.quote(str(w)) for w in words if w is not None and str(w) != "")


def split_shard_ids(raw: str | None, count: int | None) -> list[int] | None:
    """'0,2' or '0-3' -> shard ids, checked against DISCORD_SHARD_COUNT."""
    if not raw or not raw.strip():
        return None
    if not count:
        raise InvalidInput("DISCORD_SHARD_IDS needs DISCORD_SHARD_COUNT.")
    ids: list[int] = []
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                ids.extend(range(lo, hi + 1))
            else:
                ids.append(int(part))
        except ValueError as exc:
            raise InvalidInput(f"DISCORD_SHARD_IDS: {part!r} is not a shard id or range.") from exc
    if not ids or any(not 0 <= i < count for i in ids):
        raise InvalidInput(f"DISCORD_SHARD_IDS must be between 0 and {count - 1}.")
    return sorted(set(ids))
