"""`/label <sub>`: one dispatcher for Slack and Discord, so both platforms answer the same way.

Adapters parse their payload into (actor, platform, channel, text), call `handle` off the event loop
(it touches the database and may export), and render the `CommandReply`. Work the adapter must do
on the platform itself (posting items to a channel) comes back as a request in the reply.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from bot.config import Settings
from bot.core.errors import InvalidInput, LabelingError, NotFound
from bot.core.events import Actor, TaskRequested
from bot.core.replies import CampaignStats, LeaderboardRow, PostView
from bot.core.service import LabelingService
from storage import queries as q

MENTION = re.compile(r"^<@!?([A-Za-z0-9]+)(?:\|[^>]*)?>$")
MAX_POST_PER_COMMAND = 50

EVERYONE = {
    "next": "get the next item to label (privately)",
    "stats": "campaign progress and agreement",
    "leaderboard": "model leaderboard (Bradley–Terry, 95% intervals)",
    "guidelines": "the labeling guidelines",
    "link [CODE]": "link your Slack and Discord accounts (one person, one annotator)",
    "help": "this help",
}
ADMIN = {
    "post N": "post the next N items to this campaign's channel",
    "export FORMAT": "write a dataset export (trl, trl-conversational, votes)",
    "pause": "pause the campaign",
    "resume": "resume the campaign",
    "admin add @user": "make someone a labelbot admin",
}


@dataclass
class CommandReply:
    text: str
    ephemeral: bool = True
    task: PostView | None = None
    post_request: tuple[str, int] | None = None  # (campaign, n): post n items to the campaign's channel
    stats: CampaignStats | None = None
    leaderboard: list[LeaderboardRow] = field(default_factory=list)
    ok: bool = True


def help_text(is_admin: bool) -> str:
    lines = ["*labelbot* — `/label <command>`"]
    lines += [f"• `{k}` — {v}" for k, v in EVERYONE.items()]
    if is_admin:
        lines.append("Admin commands:")
        lines += [f"• `{k}` — {v}" for k, v in ADMIN.items()]
    return "\n".join(lines)


def split_args(text: str) -> list[str]:
    try:
        return shlex.split(text or "")
    except ValueError:
        return (text or "").split()


def resolve_campaign(service: LabelingService, platform: str, channel: str | None, explicit: str | None) -> str:
    """The campaign a command is about: named, bound to this channel, or the only active one."""
    if explicit:
        return service.campaign(explicit).name
    with service.db.read() as s:
        if channel:
            bound = q.campaigns_for_channel(s, platform, channel)
            if bound:
                return bound[-1].name
        active = [c for c in q.list_campaigns(s) if c.status == "active"]
    if len(active) == 1:
        return active[0].name
    if not active:
        raise NotFound("There is no active campaign.")
    raise InvalidInput("Several campaigns are active; name one, e.g. `/label stats my-campaign`.")


def handle(service: LabelingService, settings: Settings, actor: Actor, text: str, *, channel: str | None = None,
           export_dir: Path | None = None) -> CommandReply:
    """Run one `/label` command; errors come back as a polite reply, never as an exception."""
    try:
        return _dispatch(service, settings, actor, split_args(text), channel, export_dir)
    except LabelingError as exc:
        return CommandReply(exc.message, ok=False)


def _dispatch(service: LabelingService, settings: Settings, actor: Actor, args: list[str], channel: str | None,
              export_dir: Path | None) -> CommandReply:
    if not args or args[0] in ("help", "-h", "--help"):
        return CommandReply(help_text(service.is_admin(actor)))
    sub, rest = args[0].lower(), args[1:]
    platform = actor.platform
    if sub == "next":
        camp = resolve_campaign(service, platform, channel, rest[0] if rest else None)
        task = service.next_task(TaskRequested(actor, camp, channel="direct"))
        if task is None:
            return CommandReply(f"Nothing left for you to label in *{camp}* right now. Thank you!")
        return CommandReply(f"Here is your next item from *{camp}*.", task=task)
    if sub == "stats":
        camp = resolve_campaign(service, platform, channel, rest[0] if rest else None)
        st = service.stats(camp, bootstrap_rounds=100)
        return CommandReply(format_stats(st, admin=service.is_admin(actor)), stats=st)
    if sub == "leaderboard":
        camp = resolve_campaign(service, platform, channel, rest[0] if rest else None)
        board = service.leaderboard(camp)
        return CommandReply(format_leaderboard(camp, board), leaderboard=board)
    if sub == "guidelines":
        camp = resolve_campaign(service, platform, channel, rest[0] if rest else None)
        name, text, version = service.guidelines(camp)
        return CommandReply(f"*Guidelines for {name}* (version {version})\n{text}")
    if sub == "link":
        return _link(service, actor, rest)
    if sub not in ("post", "export", "pause", "resume", "admin"):
        return CommandReply(f"Unknown command `{sub}`.\n" + help_text(service.is_admin(actor)), ok=False)
    service.require_admin(actor)
    if sub == "post":
        if not rest or not rest[0].isdigit() or not 1 <= int(rest[0]) <= MAX_POST_PER_COMMAND:
            raise InvalidInput(f"Usage: `/label post N` with N from 1 to {MAX_POST_PER_COMMAND}.")
        camp = resolve_campaign(service, platform, channel, rest[1] if len(rest) > 1 else None)
        return CommandReply(f"Posting up to {rest[0]} item(s) from *{camp}*…", post_request=(camp, int(rest[0])))
    if sub == "export":
        from scheduler.export import FORMATS, export_campaign

        fmt = rest[0] if rest else "trl"
        if fmt not in FORMATS:
            raise InvalidInput(f"Unknown format `{fmt}`; choose one of {', '.join(FORMATS)}.")
        camp = resolve_campaign(service, platform, channel, rest[1] if len(rest) > 1 else None)
        root = (export_dir or Path(settings.labelbot_export_dir)) / camp / fmt
        res = export_campaign(service.db, camp, fmt, root)
        with service.db.write() as s:
            q.add_audit(s, actor.key, "export.run", format=fmt, path=str(res.path), rows=res.rows)
        return CommandReply(f"Exported {res.rows} rows ({res.train_rows} train / {res.test_rows} test) of *{camp}* "
                            f"as `{fmt}` to `{res.path}`.")
    if sub in ("pause", "resume"):
        camp = resolve_campaign(service, platform, channel, rest[0] if rest else None)
        service.set_status(camp, "paused" if sub == "pause" else "active", actor)
        return CommandReply(f"Campaign *{camp}* {'paused' if sub == 'pause' else 'resumed'}.", ephemeral=False)
    # admin add @user
    if len(rest) != 2 or rest[0] != "add":
        raise InvalidInput("Usage: `/label admin add @user`.")
    match = MENTION.match(rest[1]) or re.match(r"^([A-Za-z0-9]+)$", rest[1])
    if not match:
        raise InvalidInput("Mention the person to make admin, e.g. `/label admin add @alex`.")
    return CommandReply(service.grant_admin(actor, platform, match.group(1)).text)


def _link(service: LabelingService, actor: Actor, rest: list[str]) -> CommandReply:
    """`link` shows a one-time code; `link CODE` (on the other platform) ties the two accounts."""
    from bot.core import linking

    if len(rest) > 1:
        raise InvalidInput("Usage: `/label link` to get a code, then `/label link CODE` on your other account.")
    if rest:
        return CommandReply(linking.redeem_code(service.db, actor, rest[0]).text)
    issued = linking.issue_code(service.db, actor)
    others = [f"{p}:{u}" for p, u in linking.linked_accounts(service.db, actor) if (p, u) != (actor.platform,
                                                                                             actor.user_id)]
    now_linked = f" Already linked: {', '.join(others)}." if others else ""
    return CommandReply(f"Your link code is `{issued.code}` (valid 10 minutes, works once). On your other platform "
                        f"run `/label link {issued.code}`; both accounts then count as one annotator.{now_linked}")


def format_stats(st: CampaignStats, *, admin: bool = False) -> str:
    alpha = "n/a" if st.agreement_alpha is None else f"{st.agreement_alpha:.2f}"
    lines = [
        f"*{st.campaign}* ({st.status}): {st.complete_items}/{st.items} items complete ({st.progress:.0%}), "
        f"{st.votes} votes from {st.annotators} annotators.",
        f"Agreement (Krippendorff's alpha): {alpha} · consensus pairs: {st.consensus_pairs}",
    ]
    if admin:
        lines.append(f"Flagged items: {st.flagged_items} · skips: {st.skips} · corrections: {st.corrections} · "
                     f"guideline version {st.guideline_version}")
    return "\n".join(lines)


def format_leaderboard(campaign: str, board: list[LeaderboardRow]) -> str:
    if not board:
        return f"No votes in *{campaign}* yet, so no leaderboard."
    lines = [f"*Leaderboard — {campaign}* (Bradley–Terry, 95% bootstrap interval)"]
    for row in board:
        lines.append(f"{row.rank}. {row.model} — {row.score:.0f} ({row.lower:.0f}–{row.upper:.0f}), "
                     f"{row.battles} battles")
    return "\n".join(lines)
