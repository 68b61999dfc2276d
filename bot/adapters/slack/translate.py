"""Slack payloads -> core events. Pure functions, no I/O, cheap enough to run before the ack.

A payload that lacks what Slack documents raises `BadPayload` (answered with HTTP 400, nothing
changes). Interaction payloads carry no delivery id, so one is built from what identifies the
delivery: `trigger_id` (unique per click or submission, identical when the same delivery arrives
again); Events API payloads use `event_id`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from bot.core.events import (
    Actor,
    CommentAdded,
    CorrectionSubmitted,
    CriteriaScored,
    ItemFlagged,
    ItemSkipped,
    RankingSubmitted,
    VoteCast,
)
from bot.core.replies import LETTERS
from storage.domain import NEUTRAL_OUTCOMES, Platform

from .render import text_hash

PLATFORM = Platform.SLACK
ACTION_RE = re.compile(r"^lbl:(vote|skip|flag|fix|rank|score|guide):([0-9]{1,18})(?::([A-Za-z_]{1,16}))?$")
VIEW_RE = re.compile(r"^lbl:(fix|rank|score):([0-9]{1,18})$")
ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
TS_RE = re.compile(r"^[0-9]{1,12}\.[0-9]{1,8}$")
MAX_DELIVERY_ID = 150


class BadPayload(ValueError):
    """The payload does not have the documented shape."""


@dataclass(frozen=True)
class Interaction:
    """A click on one of our buttons."""

    action: str  # vote | skip | flag | fix | rank | score | guide
    post_id: int
    arg: str | None
    actor: Actor
    delivery_id: str
    channel: str | None
    message_ts: str | None
    trigger_id: str | None
    response_url: str | None


@dataclass(frozen=True)
class Submission:
    """A submitted modal (correction, ranking, scores)."""

    kind: str  # fix | rank | score
    post_id: int
    actor: Actor
    delivery_id: str
    channel: str | None
    message_ts: str | None
    meta: dict[str, Any]
    values: dict[str, Any]


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _id(value: Any, what: str, *, required: bool = True) -> str | None:
    if value is None or value == "":
        if required:
            raise BadPayload(f"missing {what}")
        return None
    if not isinstance(value, str) or not ID_RE.match(value):
        raise BadPayload(f"bad {what}")
    return value


def _ts(value: Any) -> str | None:
    if isinstance(value, str) and TS_RE.match(value):
        return value
    return None


def envelope_problem(body: dict[str, Any]) -> str | None:
    """What makes a request body unlike any payload Slack documents (so it gets 400), or None.

    Checked before Bolt sees the body: Bolt's matchers assume the documented shape and would fail
    with a 500 on, say, an empty `actions` list.
    """
    kind = body.get("type")
    if "command" in body:
        return None if isinstance(body.get("command"), str) and isinstance(body.get("text", ""), str) else "command"
    if kind in ("block_actions", "view_submission", "view_closed", "block_suggestion", "shortcut",
                "message_action"):
        if not isinstance(body.get("user"), dict) or not isinstance(body["user"].get("id"), str):
            return "user"
        if kind == "block_actions":
            actions = body.get("actions")
            if not isinstance(actions, list) or not actions or not all(
                    isinstance(a, dict) and isinstance(a.get("action_id"), str) for a in actions):
                return "actions"
        if kind in ("view_submission", "view_closed"):
            view = body.get("view")
            if not isinstance(view, dict) or not all(isinstance(view.get(k), str) for k in ("callback_id", "type")):
                return "view"
        return None
    if kind == "event_callback":
        event = body.get("event")
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return "event"
        return None
    if kind in ("url_verification", "app_rate_limited") or body.get("ssl_check"):
        return None
    return "type"


def delivery_key(*parts: str) -> str:
    """A stable delivery id within the Delivery table's length limit."""
    key = "slack:" + ":".join(parts)
    if len(key) > MAX_DELIVERY_ID:
        key = "slack:h:" + hashlib.sha256(key.encode()).hexdigest()
    return key


def actor_from(body: dict[str, Any]) -> Actor:
    """The person behind an interaction, slash command or event."""
    user = body.get("user")
    if isinstance(user, dict):
        user_id = _id(user.get("id"), "user id")
        name = user.get("username") or user.get("name")
        team = _dict(body.get("team")).get("id") or user.get("team_id") or body.get("team_id")
    else:
        user_id = _id(body.get("user_id") or user, "user id")
        name = body.get("user_name")
        team = body.get("team_id") or _dict(body.get("team")).get("id")
    team = _id(team, "team id", required=False) or ""
    return Actor(PLATFORM, team, user_id or "", str(name)[:80] if isinstance(name, str) and name else None)


def interaction_from(body: dict[str, Any]) -> Interaction:
    """A block_actions payload for one of our `lbl:` buttons."""
    actions = body.get("actions")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        raise BadPayload("no actions")
    action = actions[0]
    match = ACTION_RE.match(str(action.get("action_id", "")))
    if not match:
        raise BadPayload("unknown action_id")
    kind, post_id, arg = match.group(1), int(match.group(2)), match.group(3)
    if kind == "vote":
        if arg not in NEUTRAL_OUTCOMES and not (arg and len(arg) == 1 and arg in LETTERS):
            raise BadPayload("bad vote choice")
    elif arg is not None:
        raise BadPayload("unexpected argument")
    actor = actor_from(body)
    container = _dict(body.get("container"))
    channel = _id(_dict(body.get("channel")).get("id") or container.get("channel_id"), "channel", required=False)
    message_ts = _ts(container.get("message_ts")) or _ts(_dict(body.get("message")).get("ts"))
    trigger = body.get("trigger_id") if isinstance(body.get("trigger_id"), str) else None
    if trigger:
        delivery = delivery_key(actor.workspace, "act", trigger)
    else:
        delivery = delivery_key(actor.workspace, "act", actor.user_id, str(action.get("action_ts", "")),
                                str(action.get("action_id")))
    response_url = body.get("response_url") if isinstance(body.get("response_url"), str) else None
    return Interaction(kind, post_id, arg, actor, delivery, channel, message_ts, trigger, response_url)


def core_event(i: Interaction) -> VoteCast | ItemSkipped | ItemFlagged | None:
    """The core event for a click, or None when the click opens a modal or shows guidelines."""
    if i.action == "vote":
        return VoteCast(i.actor, i.post_id, i.arg or "", delivery_id=i.delivery_id)
    if i.action == "skip":
        return ItemSkipped(i.actor, i.post_id, delivery_id=i.delivery_id)
    if i.action == "flag":
        return ItemFlagged(i.actor, i.post_id, delivery_id=i.delivery_id)
    return None


def submission_from(body: dict[str, Any]) -> Submission:
    """A view_submission payload for one of our modals."""
    view = _dict(body.get("view"))
    match = VIEW_RE.match(str(view.get("callback_id", "")))
    if not match:
        raise BadPayload("unknown callback_id")
    kind, post_id = match.group(1), int(match.group(2))
    try:
        meta = json.loads(view.get("private_metadata") or "{}")
    except (TypeError, ValueError) as exc:
        raise BadPayload("bad private_metadata") from exc
    if not isinstance(meta, dict) or meta.get("p") != post_id:
        raise BadPayload("private_metadata does not match the view")
    values = _dict(_dict(view.get("state")).get("values"))
    actor = actor_from(body)
    trigger = body.get("trigger_id") if isinstance(body.get("trigger_id"), str) else None
    if trigger:
        delivery = delivery_key(actor.workspace, "view", trigger)
    else:
        delivery = delivery_key(actor.workspace, "view", str(view.get("id")), str(view.get("hash")))
    channel = _id(meta.get("c"), "channel", required=False)
    return Submission(kind, post_id, actor, delivery, channel, _ts(meta.get("t")), meta, values)


def _selected(values: dict[str, Any], block: str, action: str) -> str | None:
    option = _dict(_dict(_dict(values.get(block)).get(action)).get("selected_option"))
    value = option.get("value")
    return value if isinstance(value, str) else None


def ranking_from(sub: Submission) -> RankingSubmitted | dict[str, str]:
    """The ranking, or input errors to show in the modal (missing or repeated responses)."""
    n = sub.meta.get("n")
    if not isinstance(n, int) or not 2 <= n <= len(LETTERS):
        raise BadPayload("bad ranking metadata")
    order: list[str] = []
    errors: dict[str, str] = {}
    for i in range(1, n + 1):
        value = _selected(sub.values, f"rank_{i}", "choice")
        if value is None:
            errors[f"rank_{i}"] = "Pick a response for this place."
        elif value in order:
            errors[f"rank_{i}"] = f"Response {value} is already ranked higher; each response goes in one place."
        else:
            order.append(value)
    if errors:
        return errors
    return RankingSubmitted(sub.actor, sub.post_id, order, delivery_id=sub.delivery_id)


def scores_from(sub: Submission) -> CriteriaScored | dict[str, str]:
    criteria = sub.meta.get("k")
    if not isinstance(criteria, list) or not criteria:
        raise BadPayload("bad criteria metadata")
    scores: dict[str, int] = {}
    for i, name in enumerate(criteria):
        value = _selected(sub.values, f"crit_{i}", "score")
        if value is not None:
            if not value.isdigit():
                raise BadPayload("bad score")
            scores[str(name)] = int(value)
    if not scores:
        return {"crit_0": "Pick a score for at least one criterion."}
    return CriteriaScored(sub.actor, sub.post_id, scores, delivery_id=sub.delivery_id)


def corrections_from(sub: Submission) -> list[CorrectionSubmitted] | dict[str, str]:
    """One correction per edited response (compared with the fingerprint of the text that was shown)."""
    hashes = sub.meta.get("h")
    if not isinstance(hashes, dict) or not hashes:
        raise BadPayload("bad correction metadata")
    out = []
    for letter, original in hashes.items():
        if letter not in LETTERS:
            raise BadPayload("bad correction metadata")
        raw = _dict(_dict(sub.values.get(f"fix_{letter}")).get("text")).get("value")
        text = raw if isinstance(raw, str) else ""
        if text.strip() and text_hash(text) != original:
            out.append(CorrectionSubmitted(sub.actor, sub.post_id, letter, text,
                                           delivery_id=f"{sub.delivery_id}:{letter}"))
    if not out:
        first = next(iter(hashes))
        return {f"fix_{first}": "Edit at least one response (or press Cancel)."}
    return out


def comment_from(body: dict[str, Any]) -> CommentAdded | None:
    """A reply in a thread (Events API `message` with `thread_ts`); None for anything else."""
    event = _dict(body.get("event"))
    if event.get("type") != "message" or event.get("subtype") not in (None, "thread_broadcast"):
        return None
    if event.get("bot_id") or not isinstance(event.get("text"), str):
        return None
    thread_ts, ts = _ts(event.get("thread_ts")), _ts(event.get("ts"))
    if not thread_ts or not ts or thread_ts == ts:
        return None
    user = _id(event.get("user"), "user id", required=False)
    if not user:
        return None
    team = _id(event.get("team") or body.get("team_id"), "team id", required=False) or ""
    event_id = body.get("event_id")
    delivery = delivery_key("evt", event_id) if isinstance(event_id, str) and event_id else None
    return CommentAdded(Actor(PLATFORM, team, user), PLATFORM, thread_ts, event["text"], message_id=ts,
                        delivery_id=delivery)


@dataclass(frozen=True)
class Command:
    actor: Actor
    text: str
    channel: str | None
    response_url: str | None


def command_from(body: dict[str, Any]) -> Command:
    """A `/label ...` slash command."""
    if body.get("command") not in ("/label",):
        raise BadPayload("unknown command")
    text = body.get("text", "")
    if not isinstance(text, str) or len(text) > 4000:
        raise BadPayload("bad command text")
    channel = _id(body.get("channel_id"), "channel", required=False)
    url = body.get("response_url") if isinstance(body.get("response_url"), str) else None
    return Command(actor_from(body), text, channel, url)
