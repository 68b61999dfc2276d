"""`/label <sub>`: one dispatcher for Slack and Discord, so both platforms answer the same way.

Adapters parse their payload into (actor, platform, channel, text), call `handle` off the event loop
(it touches the database and may export), and render the `CommandReply`. Work the adapter must do
on the platform itself (posting items to a channel) comes back as a request in the reply.
"""

from __future__ import annotations

import logging
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bot.config import Settings
from bot.core.errors import InvalidInput, LabelingError, NotFound
from bot.core.events import Actor, TaskRequested
from bot.core.replies import CampaignStats, LeaderboardRow, PostView
from bot.core.service import LabelingService
from storage import queries as q

if TYPE_CHECKING:
    from bot.core.quality import QualityReport

log = logging.getLogger("labelbot.commands")
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
    "export FORMAT [incremental]": "write a dataset export (trl, trl-conversational, reward, kto, sft, "
                                   "correction-pairs, hh, openai-preference, votes)",
    "schedule [show|post|export|finetune|off]": "see or set this campaign's posting, export and fine-tune schedules",
    "pause": "pause the campaign",
    "resume": "resume the campaign",
    "admin add @user": "make someone a labelbot admin",
    "resolve ITEM ANSWER": "settle a split item (ANSWER: model name, response number, tie or both_bad)",
    "requeue": "reopen items voted under older guidelines",
    "quality": "annotator reliability, flags and bias report",
    "finetune METHOD": "train a reward, dpo or sft model on the latest export",
    "dashboard": "a one-time sign-in link to the web dashboard (private, 15 minutes)",
    "invite [NAME] [campaign=C]": "a signed link to the browser voting page for someone outside the workspace",
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
    chart_png: bytes | None = None  # a PNG the adapter attaches (Slack files upload, Discord attachment)
    chart_name: str | None = None  # its file name, e.g. "leaderboard-demo.png"


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
        admin = service.is_admin(actor)
        text = format_stats(st, admin=admin)
        if admin:  # admins also see flagged annotators and the bias report
            from bot.core.quality import quality_report

            text += "\n" + format_quality(quality_report(service.db, camp))
        return CommandReply(text, stats=st, chart_png=_chart("stats_png", st), chart_name=f"stats-{_slug(camp)}.png")
    if sub == "leaderboard":
        camp = resolve_campaign(service, platform, channel, rest[0] if rest else None)
        board = service.leaderboard(camp)
        png = _chart("leaderboard_png", camp, board) if board else None
        return CommandReply(format_leaderboard(camp, board), leaderboard=board, chart_png=png,
                            chart_name=f"leaderboard-{_slug(camp)}.png" if png else None)
    if sub == "guidelines":
        camp = resolve_campaign(service, platform, channel, rest[0] if rest else None)
        name, text, version = service.guidelines(camp)
        return CommandReply(f"*Guidelines for {name}* (version {version})\n{text}")
    if sub == "link":
        return _link(service, actor, rest)
    if sub not in ("post", "export", "pause", "resume", "admin", "resolve", "requeue", "quality", "schedule",
                   "finetune", "dashboard", "invite"):
        return CommandReply(f"Unknown command `{sub}`.\n" + help_text(service.is_admin(actor)), ok=False)
    service.require_admin(actor)
    if sub == "post":
        if not rest or not rest[0].isdigit() or not 1 <= int(rest[0]) <= MAX_POST_PER_COMMAND:
            raise InvalidInput(f"Usage: `/label post N` with N from 1 to {MAX_POST_PER_COMMAND}.")
        camp = resolve_campaign(service, platform, channel, rest[1] if len(rest) > 1 else None)
        with service.db.write() as s:
            q.add_audit(s, actor.key, "items.post", campaign=camp, n=int(rest[0]), channel=channel)
        return CommandReply(f"Posting up to {rest[0]} item(s) from *{camp}*…", post_request=(camp, int(rest[0])))
    if sub == "export":
        from scheduler.export import FORMATS, export_campaign

        incremental = any(a.lower() == "incremental" for a in rest)
        rest = [a for a in rest if a.lower() not in ("incremental", "cumulative")]
        fmt = rest[0] if rest else "trl"
        if fmt not in FORMATS:
            raise InvalidInput(f"Unknown format `{fmt}`; choose one of {', '.join(FORMATS)}.")
        camp = resolve_campaign(service, platform, channel, rest[1] if len(rest) > 1 else None)
        root = (export_dir or Path(settings.labelbot_export_dir)) / camp / fmt
        res = export_campaign(service.db, camp, fmt, root, incremental=incremental)
        if not res.created:
            return CommandReply(f"Nothing new in *{camp}* since `{fmt}` version {res.version}; no new version.")
        with service.db.write() as s:
            q.add_audit(s, actor.key, "export.run", format=fmt, path=str(res.path), rows=res.rows)
        return CommandReply(f"Exported {res.rows} rows ({res.train_rows} train / {res.test_rows} test) of *{camp}* "
                            f"as `{fmt}` ({'incremental' if incremental else 'cumulative'}) to `{res.path}`.")
    if sub == "schedule":
        return _schedule_command(service, actor, platform, channel, rest)
    if sub == "finetune":
        from scheduler.finetune.launch import export_for, launch

        method = rest[0] if rest else "reward"
        if method not in ("reward", "dpo", "sft"):
            raise InvalidInput("Usage: `/label finetune reward|dpo|sft`.")
        camp = resolve_campaign(service, platform, channel, rest[1] if len(rest) > 1 else None)
        folder = export_for(service.db, settings, camp, method)
        job_id, created = launch(service.db, settings, camp, method, folder, actor=actor.key)
        with service.db.write() as s:
            q.add_audit(s, actor.key, "finetune.launch", method=method, job_id=job_id, export=str(folder))
        if not created:
            return CommandReply(f"That export was already trained with `{method}` (job {job_id}).")
        return CommandReply(f"Started `{method}` fine-tune job {job_id} for *{camp}* on `{folder}`; the result "
                            "will be posted here.")
    if sub == "resolve":
        if len(rest) < 2:
            raise InvalidInput("Usage: `/label resolve ITEM ANSWER` (model name, response number, tie or both_bad).")
        camp = resolve_campaign(service, platform, channel, rest[2] if len(rest) > 2 else None)
        return CommandReply(service.resolve_item(actor, camp, rest[0], rest[1]).text)
    if sub == "requeue":
        camp = resolve_campaign(service, platform, channel, rest[0] if rest else None)
        return CommandReply(service.requeue_old_guidelines(actor, camp).text)
    if sub == "invite":
        from bot.adapters.invite_command import invite

        return invite(service, settings, actor, channel, rest)
    if sub == "dashboard":
        from bot.web.auth import make_signin_link

        # someone admin only by the platform's word (e.g. a Discord server administrator) cannot be re-checked
        # from the web, so the signed link carries that claim; everyone else is re-checked on every page
        vouched = bool(getattr(actor, "platform_admin", False)) and not service.is_admin(
            Actor(actor.platform, actor.workspace, actor.user_id))
        link = make_signin_link(settings, actor.key, platform_admin=vouched)
        with service.db.write() as s:
            q.add_audit(s, actor.key, "dashboard.link")  # never the link itself: it is a credential
        return CommandReply(f"Your dashboard sign-in link (works once, for {link.expires_in_s // 60} minutes; "
                            f"do not share it): {link.url}", ephemeral=True)
    if sub == "quality":
        from bot.core.quality import quality_report

        camp = resolve_campaign(service, platform, channel, rest[0] if rest else None)
        return CommandReply(format_quality(quality_report(service.db, camp)))
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


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "campaign"


def _chart(name: str, *args: object) -> bytes | None:
    """A PNG from bot.charts, or None when matplotlib is missing or drawing fails (the text still goes out)."""
    try:
        from bot import charts

        return getattr(charts, name)(*args)
    except Exception:
        log.exception("could not draw the %s chart", name)
        return None


SCHEDULE_USAGE = (
    "Usage: `/label schedule [show]` · `/label schedule post 5 every=2h [quiet=22:00-07:00] [tz=Europe/Paris]` · "
    "`/label schedule export every=1d [formats=trl,kto] [cumulative]` (or `cron=\"0 2 * * *\"`) · "
    "`/label schedule finetune dpo,reward [threshold=500] [every=15m]` · `/label schedule off post|export|finetune` "
    "· add `campaign=NAME` to pick a campaign."
)
SCHEDULE_KEYS = {"every", "cron", "quiet", "tz", "formats", "platforms", "threshold", "backend", "methods", "count",
                 "campaign", "out"}


def parse_schedule_args(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """`key=value` or `key value` pairs (known keys) and the positional words left over."""
    positional: list[str] = []
    options: dict[str, str] = {}
    i = 0
    while i < len(args):
        word = args[i]
        key, eq, value = word.partition("=")
        if eq and key.lower() in SCHEDULE_KEYS:
            options[key.lower()] = value
        elif word.lower() in SCHEDULE_KEYS and i + 1 < len(args):
            options[word.lower()] = args[i + 1]
            i += 1
        elif eq:
            raise InvalidInput(f"Unknown schedule setting `{key}`. " + SCHEDULE_USAGE)
        else:
            positional.append(word)
        i += 1
    return positional, options


def _schedule_command(service: LabelingService, actor: Actor, platform: str, channel: str | None,
                      args: list[str]) -> CommandReply:
    from scheduler.schedules import disable_schedule, list_schedules, set_schedule

    action = args[0].lower() if args else "show"
    positional, options = parse_schedule_args(args[1:])
    explicit = options.pop("campaign", None)
    if action in ("show", "list"):
        camp = resolve_campaign(service, platform, channel, explicit or (positional[0] if positional else None))
        rows = list_schedules(service.db, camp)
        if not rows:
            return CommandReply(f"*{camp}* has no schedules. " + SCHEDULE_USAGE)
        lines = [f"*Schedules of {camp}*"]
        lines += [f"• {r.kind}: {r.describe()}" + ("" if r.enabled else " (off)") for r in rows]
        return CommandReply("\n".join(lines))
    camp = resolve_campaign(service, platform, channel, explicit)
    if action == "off":
        if len(positional) != 1:
            raise InvalidInput("Usage: `/label schedule off post|export|finetune`.")
        changed = disable_schedule(service.db, camp, positional[0].lower(), actor.key)
        return CommandReply(f"The {positional[0].lower()} schedule of *{camp}* is "
                            + ("now off." if changed else "not on."), ephemeral=False)
    if action not in ("post", "export", "finetune"):
        raise InvalidInput(SCHEDULE_USAGE)
    raw: dict[str, object] = dict(options)
    if action == "post":
        if positional:
            raw.setdefault("count", positional.pop(0))
    elif action == "export":
        modes = [p.lower() for p in positional if p.lower() in ("incremental", "cumulative")]
        positional = [p for p in positional if p.lower() not in ("incremental", "cumulative")]
        if modes:
            raw["incremental"] = modes[-1] == "incremental"
    elif positional:
        raw.setdefault("methods", positional.pop(0))
    if positional:
        raise InvalidInput(f"I did not understand `{' '.join(positional)}`. " + SCHEDULE_USAGE)
    row = set_schedule(service.db, camp, action, raw, actor.key)
    return CommandReply(f"*{camp}*: {row.describe()}.", ephemeral=False)
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


def format_quality(rep: QualityReport) -> str:
    b = rep.bias
    alpha = "n/a" if rep.alpha is None else f"{rep.alpha:.2f}"
    lines = [f"*Quality — {rep.campaign}*: alpha {alpha}, {len(rep.split_items)} split item(s), "
             f"{len(rep.flagged_items)} flagged item(s)."]
    if b.position_a_share is not None:
        lines.append(f"Position bias: A chosen {b.position_a_share:.0%} of {b.position_votes} votes "
                     f"(p={b.position_p:.3f}).")
    if b.chosen_longer_share is not None:
        lines.append(f"Length bias: the chosen answer is longer in {b.chosen_longer_share:.0%} of pairs "
                     f"(p={b.length_p:.3f}).")
    flagged = rep.flagged_annotators
    lines.append("Flagged annotators: " + ("; ".join(f"{a.name} ({', '.join(a.flags)})" for a in flagged)
                                           if flagged else "none"))
    return "\n".join(lines)
