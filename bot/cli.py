"""`labelbot` command line (typer + rich). Errors exit non-zero with a one-line reason."""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from bot.config import Settings, get_settings
from bot.core.errors import LabelingError
from storage.domain import CampaignStatus, Platform

app = typer.Typer(help="labelbot: RLHF preference labeling in Slack and Discord.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
campaign_app = typer.Typer(help="Create and manage labeling campaigns.", no_args_is_help=True)
app.add_typer(campaign_app, name="campaign")
schedule_app = typer.Typer(help="Schedules per campaign: posting, exports, fine-tune triggers; the run ledger.",
                           no_args_is_help=True)
app.add_typer(schedule_app, name="schedule")

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def settings() -> Settings:
    return get_settings()


def cli_actor():  # type: ignore[no-untyped-def]
    from bot.core.events import Actor

    try:
        user = getpass.getuser()
    except Exception:
        user = "operator"
    return Actor("cli", "", user)


def service():  # type: ignore[no-untyped-def]
    """The labeling service on the configured database; refuses an uninitialised database."""
    from bot.core.service import LabelingService
    from storage.db import Database, current_revision, head_revision

    cfg = settings()
    try:
        rev = current_revision(cfg.database_url)
    except Exception as exc:
        fail(f"cannot open the database ({type(exc).__name__}); check DATABASE_URL or run `labelbot doctor`")
    if rev is None:
        fail("the database is not initialised; run `labelbot init` first")
    if rev != head_revision():
        fail("the database schema is out of date; run `labelbot init` to upgrade it")
    return LabelingService(Database(cfg.database_url), cfg.admins)


def run(fn):  # type: ignore[no-untyped-def]
    """Turn LabelingError into a one-line message and exit code 1."""
    try:
        return fn()
    except LabelingError as exc:
        fail(exc.message)


@app.command()
def init() -> None:
    """Create or upgrade the database schema (Alembic migrations)."""
    from storage.db import upgrade

    cfg = settings()
    try:
        upgrade(cfg.database_url)
    except Exception as exc:
        fail(f"could not migrate the database: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    console.print(f"Database ready at [bold]{_safe_url(cfg.database_url)}[/]")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# ----------------------------------------------------------------------------------------- campaigns


@campaign_app.command("create")
def campaign_create(
    name: str,
    guidelines: Annotated[Path | None, typer.Option(help="Markdown file with labeling guidelines")] = None,
    overlap: Annotated[int, typer.Option(help="Votes needed per item (k)")] = 3,
    criteria: Annotated[str, typer.Option(help="Comma-separated criteria scored 1-5")] = "",
    slack_channel: Annotated[str | None, typer.Option(help="Slack channel id to post to")] = None,
    discord_channel: Annotated[str | None, typer.Option(help="Discord channel id to post to")] = None,
    reveal: Annotated[str, typer.Option(help="When to reveal models and tallies: quorum|never|always")] = "quorum",
    gold_rate: Annotated[float, typer.Option(help="Share of tasks drawn from gold items")] = 0.1,
) -> None:
    """Create a campaign."""
    from bot.core.service import CampaignSpec

    text = ""
    if guidelines is not None:
        try:
            text = guidelines.read_text(encoding="utf-8")
        except OSError as exc:
            fail(f"cannot read guidelines file {guidelines}: {exc.strerror}")
    channels = tuple((p, ch) for p, ch in ((Platform.SLACK, slack_channel), (Platform.DISCORD, discord_channel)) if ch)
    spec = CampaignSpec(name=name, guidelines=text, overlap=overlap,
                        criteria=tuple(c for c in criteria.split(",") if c.strip()),
                        channels=channels, reveal=reveal, gold_rate=gold_rate)
    svc = service()
    camp = run(lambda: svc.create_campaign(spec, cli_actor()))
    console.print(f"Created campaign [bold]{camp.name}[/] (k={camp.overlap}).")


@campaign_app.command("list")
def campaign_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List campaigns."""
    svc = service()
    camps = svc.list_campaigns()
    if as_json:
        print(json.dumps([{"name": c.name, "status": c.status, "overlap": c.overlap} for c in camps]))
        return
    table = Table("name", "status", "k", "criteria", "channels")
    for c in camps:
        where = ", ".join(f"{p}:{ch}" for p, _w, ch in svc.channels(c.name)) or "-"
        table.add_row(c.name, c.status, str(c.overlap), ",".join(c.criteria), where)
    console.print(table)


@campaign_app.command("show")
def campaign_show(name: str) -> None:
    """Show a campaign's settings and progress."""
    svc = service()
    camp = run(lambda: svc.campaign(name))
    st = run(lambda: svc.stats(name, bootstrap_rounds=0))
    from bot.core.service import SETTING_DEFAULTS

    table = Table(show_header=False)
    for key, value in [
        ("name", camp.name), ("status", camp.status), ("votes per item (k, --overlap)", camp.overlap),
        ("criteria", ", ".join(camp.criteria) or "-"), ("reveal", camp.reveal),
        ("channels", ", ".join(f"{p}:{ch}" for p, _w, ch in svc.channels(name)) or "-"),
        ("guideline version", camp.guideline_version), ("gold rate", camp.gold_rate),
        ("daily cap (votes per person per day)", camp.daily_cap or "none"),
        ("agreement threshold (extra vote below)", camp.agreement_threshold),
        ("max extra votes", camp.max_extra_votes),
    ]:
        table.add_row(key, str(value))
    stored = dict(camp.settings or {})
    for key, default in SETTING_DEFAULTS.items():  # what `campaign set` changes, default or not
        value = stored.pop(key, default)
        shown = "none" if value is None else str(value)
        table.add_row(key.replace("_", " "), shown + (" (default)" if key not in (camp.settings or {}) else ""))
    for key, value in sorted(stored.items()):
        table.add_row(key.replace("_", " "), str(value))
    for key, value in [("items", st.items), ("complete", f"{st.complete_items} ({st.progress:.0%})"),
                       ("votes", st.votes)]:
        table.add_row(key, str(value))
    console.print(table)


@campaign_app.command("pause")
def campaign_pause(name: str) -> None:
    """Stop posting and collecting votes for a campaign."""
    svc = service()
    run(lambda: svc.set_status(name, CampaignStatus.PAUSED, cli_actor()))
    console.print(f"Campaign [bold]{name}[/] paused.")


@campaign_app.command("resume")
def campaign_resume(name: str) -> None:
    """Resume a paused campaign."""
    svc = service()
    run(lambda: svc.set_status(name, CampaignStatus.ACTIVE, cli_actor()))
    console.print(f"Campaign [bold]{name}[/] resumed.")


@campaign_app.command("set")
def campaign_set(
    name: str,
    sampling: Annotated[str | None, typer.Option(
        help="least_votes | disagreement | uncertainty | informative_pairs | random")] = None,
    consensus: Annotated[str | None, typer.Option(help="majority | weighted (by annotator reliability)")] = None,
    overlap: Annotated[int | None, typer.Option(help="Votes needed per item (k)")] = None,
    daily_cap: Annotated[int | None, typer.Option(help="Votes per annotator per day")] = None,
    max_share: Annotated[float | None, typer.Option(help="Max share of a campaign's votes per person")] = None,
    gold_rate: Annotated[float | None, typer.Option(help="Share of tasks drawn from gold items")] = None,
    reveal: Annotated[str | None, typer.Option(help="quorum | never | always")] = None,
    guidelines: Annotated[Path | None, typer.Option(help="New guidelines file (bumps the guideline version)")] = None,
    slack_channel: Annotated[str | None, typer.Option()] = None,
    discord_channel: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Change a campaign's settings."""
    changes = {k: v for k, v in {
        "sampling": sampling, "consensus": consensus, "overlap": overlap, "daily_cap": daily_cap,
        "max_share": max_share, "gold_rate": gold_rate, "reveal": reveal}.items() if v is not None}
    channels = {p: ch for p, ch in ((Platform.SLACK, slack_channel), (Platform.DISCORD, discord_channel))
                if ch is not None}
    if guidelines is not None:
        try:
            changes["guidelines"] = guidelines.read_text(encoding="utf-8")
        except OSError as exc:
            fail(f"cannot read guidelines file {guidelines}: {exc.strerror}")
    if not changes and not channels:
        fail("nothing to change; see `labelbot campaign set --help`")
    svc = service()
    for platform, channel in channels.items():
        run(lambda platform=platform, channel=channel: svc.set_channel(name, cli_actor(), platform, channel))
    camp = run(lambda: svc.update_campaign(name, cli_actor(), **changes)) if changes else run(
        lambda: svc.campaign(name))
    changes.update({f"{p}_channel": ch for p, ch in channels.items()})
    console.print(f"Updated [bold]{camp.name}[/]: {', '.join(sorted(changes))} (guideline version "
                  f"{camp.guideline_version}).")


@campaign_app.command("requeue")
def campaign_requeue(name: str) -> None:
    """Reopen items voted under older guidelines so they get k votes under the current version."""
    svc = service()
    console.print(run(lambda: svc.requeue_old_guidelines(cli_actor(), name)).text)


@app.command()
def resolve(
    item: Annotated[str, typer.Argument(help="The item's id (as imported)")],
    answer: Annotated[str, typer.Argument(help="Winning model name, response number (1-based), tie or both_bad")],
    campaign: Annotated[str, typer.Option(help="Campaign")],
) -> None:
    """Settle a split item by hand (its consensus becomes your answer)."""
    svc = service()
    console.print(run(lambda: svc.resolve_item(cli_actor(), campaign, item, answer)).text)


@app.command()
def quality(
    campaign: Annotated[str, typer.Option(help="Campaign")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Agreement, annotator reliability and flags, position / length / formatting bias, split items."""
    from bot.core.quality import quality_report

    svc = service()
    rep = run(lambda: quality_report(svc.db, campaign))
    if as_json:
        print(json.dumps(rep.as_dict(), indent=2, default=str))
        return

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.0%}"

    def num(x: float | None, fmt: str = ".3f") -> str:
        return "n/a" if x is None else format(x, fmt)

    console.print(f"[bold]{rep.campaign}[/]: Krippendorff's alpha {num(rep.alpha)} · mean item agreement "
                  f"{pct(rep.mean_item_agreement)} · {len(rep.split_items)} split · {len(rep.flagged_items)} flagged")
    table = Table("annotator", "votes", "gold acc.", "agrees w/ crowd", "reliability", "A share", "fast", "flags",
                  title="Annotators")
    for a in rep.annotators:
        table.add_row(a.name, str(a.votes), pct(a.gold_accuracy), pct(a.agreement), f"{a.reliability:.2f}",
                      pct(a.a_share), str(a.fast_votes), ", ".join(a.flags) or "-")
    console.print(table)
    b = rep.bias
    console.print(f"Position bias: A chosen in {pct(b.position_a_share)} of {b.position_votes} A/B votes "
                  f"(binomial p={num(b.position_p)})")
    console.print(f"Length bias: chosen longer in {pct(b.chosen_longer_share)} of {b.pairs} consensus pairs "
                  f"(p={num(b.length_p)}; mean {num(b.mean_chosen_chars, '.0f')} vs "
                  f"{num(b.mean_rejected_chars, '.0f')} chars)")
    console.print(f"Formatting bias: chosen more formatted in {pct(b.chosen_more_formatted_share)} of pairs "
                  f"(p={num(b.formatting_p)})")
    if rep.split_items:
        console.print("Split items (settle with `labelbot resolve`): " + ", ".join(rep.split_items[:20]))


# ----------------------------------------------------------------------------------------- import / export


@app.command("import")
def import_items(
    file: Annotated[Path, typer.Argument(help="JSONL or CSV file of items")],
    campaign: Annotated[str, typer.Option(help="Campaign to add the items to")],
) -> None:
    """Import items; a file with any invalid row is rejected whole."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from bot.core.importer import parse_file

    svc = service()
    run(lambda: svc.campaign(campaign))
    if not file.exists():
        fail(f"no such file: {file}")
    total_lines = sum(1 for _ in file.open("rb"))
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} lines"),
                  TimeElapsedColumn(), console=err_console, transient=True,
                  disable=total_lines < 2000 or not err_console.is_terminal) as bar:
        task = bar.add_task("validating", total=total_lines)
        items = run(lambda: parse_file(file, progress=lambda line: bar.update(task, completed=line)))
        bar.update(task, description="writing")
        added, present = run(lambda: svc.import_items(campaign, items, cli_actor()))
    console.print(f"Imported {added} item(s) into [bold]{campaign}[/]; {present} already present.")


@app.command()
def export(
    campaign: Annotated[str, typer.Option(help="Campaign to export")],
    format: Annotated[str, typer.Option("--format", help="trl | trl-conversational | reward | kto | sft | "
                                        "correction-pairs | hh | openai-preference | votes")] = "trl",
    out: Annotated[Path, typer.Option(help="Dataset folder; each run writes a new version folder vN inside")] = Path(
        "exports"),
    test_fraction: Annotated[float, typer.Option(help="Share of items in the test split")] = 0.1,
    incremental: Annotated[bool, typer.Option("--incremental/--cumulative",
                                              help="Only what is new since the last version (default: everything)")
                           ] = False,
    balance_length: Annotated[bool, typer.Option(
        help="Subsample pairs so the chosen answer is as often shorter as longer")] = False,
) -> None:
    """Export a versioned dataset (JSONL + Parquet, manifest, deterministic split by item)."""
    from scheduler.export import export_campaign

    svc = service()
    with console.status("exporting..."):
        res = run(lambda: export_campaign(svc.db, campaign, format, out, test_fraction=test_fraction,
                                          incremental=incremental, balance_length=balance_length))
    if not res.created:
        console.print(f"Nothing new since version {res.version} ([bold]{res.path}[/]); no new version written.")
        return
    mode = "incremental" if incremental else "cumulative"
    console.print(f"Wrote {res.rows} rows ({res.train_rows} train / {res.test_rows} test, {mode}) to "
                  f"[bold]{res.path}[/]")


@app.command()
def stats(
    campaign: Annotated[str, typer.Option(help="Campaign")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap rounds for leaderboard intervals")] = 100,
) -> None:
    """Progress, votes per item, agreement and the Bradley–Terry model leaderboard."""
    svc = service()
    st = run(lambda: svc.stats(campaign, bootstrap_rounds=bootstrap))
    if as_json:
        print(json.dumps(st.as_dict(), indent=2))
        return
    console.print(f"[bold]{st.campaign}[/] ({st.status}) — {st.complete_items}/{st.items} items complete "
                  f"({st.progress:.0%}), {st.votes} votes from {st.annotators} annotators")
    alpha = "n/a" if st.agreement_alpha is None else f"{st.agreement_alpha:.3f}"
    mean = "n/a" if st.mean_item_agreement is None else f"{st.mean_item_agreement:.0%}"
    console.print(f"Krippendorff's alpha {alpha} · mean item agreement {mean} · {st.consensus_pairs} consensus "
                  f"pairs · {st.flagged_items} flagged · {st.skips} skips · {st.corrections} corrections")
    console.print("Votes per item: " + ", ".join(f"{k}: {v}" for k, v in sorted(st.votes_per_item.items())))
    if st.leaderboard:
        table = Table("rank", "model", "score", "95% CI", "battles", title="Bradley–Terry leaderboard")
        for row in st.leaderboard:
            table.add_row(str(row.rank), row.model, f"{row.score:.0f}", f"{row.lower:.0f} – {row.upper:.0f}",
                          str(row.battles))
        console.print(table)


@app.command()
def post(
    campaign: Annotated[str, typer.Option(help="Campaign whose items to post")],
    limit: Annotated[int, typer.Option(help="How many items to post")] = 10,
    platform: Annotated[str | None, typer.Option(help="slack or discord (default: every configured one)")] = None,
) -> None:
    """Post the next items of a campaign to its Slack and/or Discord channel."""
    from bot.adapters import POSTERS, poster

    cfg = settings()
    svc = service()
    camp = run(lambda: svc.campaign(campaign))
    if limit < 1 or limit > 1000:
        fail("--limit must be between 1 and 1000")
    bound = {p for p, _w, _ch in svc.channels(camp.name)}
    configured = {"slack": cfg.slack_configured and "slack" in bound,
                  "discord": cfg.discord_configured and "discord" in bound}
    if platform is not None:
        if platform not in ("slack", "discord"):
            fail("--platform is slack or discord")
        if not configured[platform]:
            what = "token" if not getattr(cfg, f"{platform}_configured") else "channel for this campaign"
            fail(f"{platform} is not set up: no {what} (see `labelbot doctor`)")
        targets = [platform]
    else:
        targets = [p for p, ok in configured.items() if ok]
        if not targets:
            fail("no platform is configured for this campaign (set a channel and the bot token)")
    for target in targets:
        if target not in POSTERS:
            fail(f"this build of labelbot cannot post to {target}")
        count = run(lambda target=target: poster(target)(cfg, svc, campaign, limit))
        console.print(f"Posted {count} item(s) of [bold]{campaign}[/] to {target}.")


# ----------------------------------------------------------------------------------------- schedules


def _schedule_set(campaign: str, kind: str, raw: dict) -> None:
    from scheduler.schedules import set_schedule

    svc = service()
    row = run(lambda: set_schedule(svc.db, campaign, kind, {k: v for k, v in raw.items() if v is not None},
                                   cli_actor().key))
    console.print(f"[bold]{campaign}[/]: {row.describe()} (job {row.job_id}).")


@schedule_app.command("post")
def schedule_post(
    campaign: Annotated[str, typer.Option(help="Campaign")],
    count: Annotated[int, typer.Option(help="Items to post each period")],
    every: Annotated[str, typer.Option(help="Period: 30m, 2h, 1d ...")],
    quiet: Annotated[str | None, typer.Option(help="Quiet hours with no posting, e.g. 22:00-07:00")] = None,
    tz: Annotated[str, typer.Option(help="Time zone of the quiet hours (IANA name)")] = "UTC",
    platform: Annotated[list[str] | None, typer.Option(help="slack / discord (default: every configured one)")] = None,
) -> None:
    """Post N items per period to the campaign's channels."""
    _schedule_set(campaign, "post", {"count": count, "every": every, "quiet": quiet, "tz": tz,
                                     "platforms": platform or None})


@schedule_app.command("export")
def schedule_export(
    campaign: Annotated[str, typer.Option(help="Campaign")],
    every: Annotated[str | None, typer.Option(help="Period: 6h, 1d ...")] = None,
    cron: Annotated[str | None, typer.Option(help="Crontab instead of a period, e.g. '0 2 * * *'")] = None,
    formats: Annotated[str, typer.Option(help="Comma-separated export formats")] = "trl",
    incremental: Annotated[bool, typer.Option("--incremental/--cumulative", help="What each version holds")] = True,
    out: Annotated[str | None, typer.Option(help="Export folder (default LABELBOT_EXPORT_DIR)")] = None,
    tz: Annotated[str, typer.Option(help="Time zone of the cron expression")] = "UTC",
) -> None:
    """Export datasets on a cadence (a new version folder per run)."""
    _schedule_set(campaign, "export", {"every": every, "cron": cron, "formats": formats, "incremental": incremental,
                                       "out": out, "tz": tz})


@schedule_app.command("finetune")
def schedule_finetune(
    campaign: Annotated[str, typer.Option(help="Campaign")],
    methods: Annotated[str, typer.Option(help="Comma-separated: dpo, reward, sft")] = "dpo",
    threshold: Annotated[int | None, typer.Option(help="New consensus pairs needed since the last fine-tune")] = None,
    every: Annotated[str | None, typer.Option(help="How often to check the threshold (default 15m)")] = None,
    cron: Annotated[str | None, typer.Option(help="Check on a crontab instead, e.g. '0 3 * * 0'")] = None,
    backend: Annotated[str, typer.Option(help="local | command")] = "local",
    tz: Annotated[str, typer.Option(help="Time zone of the cron expression")] = "UTC",
) -> None:
    """Fine-tune when enough new consensus pairs arrived (each export version trains once per method)."""
    _schedule_set(campaign, "finetune", {"methods": methods, "threshold": threshold, "every": every, "cron": cron,
                                         "backend": backend, "tz": tz})


@schedule_app.command("duel")
def schedule_duel(
    campaign: Annotated[str, typer.Option(help="Campaign")],
    prompts: Annotated[Path, typer.Option(help="Prompts file (JSONL or text), drawn in order, each asked once")],
    count: Annotated[int, typer.Option(help="Prompts per round")] = 20,
    every: Annotated[str | None, typer.Option(help="Period: 1d, 1w ...")] = None,
    cron: Annotated[str | None, typer.Option(help="Crontab instead of a period")] = None,
    tz: Annotated[str, typer.Option(help="Time zone of the cron expression")] = "UTC",
) -> None:
    """Each round, the newest DPO/SFT model answers fresh prompts against the previous one."""
    if not prompts.is_file():
        fail(f"no such prompts file: {prompts}")
    _schedule_set(campaign, "duel", {"prompts": str(prompts.resolve()), "count": count, "every": every,
                                     "cron": cron, "tz": tz})


@schedule_app.command("off")
def schedule_off(
    campaign: Annotated[str, typer.Option(help="Campaign")],
    kind: Annotated[str, typer.Argument(help="post | export | finetune | duel")],
) -> None:
    """Turn one of a campaign's schedules off."""
    from scheduler.schedules import disable_schedule

    svc = service()
    changed = run(lambda: disable_schedule(svc.db, campaign, kind, cli_actor().key))
    console.print(f"{kind} schedule of [bold]{campaign}[/] " + ("turned off." if changed else "was not on."))


@schedule_app.command("show")
def schedule_show(
    campaign: Annotated[str | None, typer.Option(help="Campaign (default: all)")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List schedules."""
    from scheduler.schedules import list_schedules

    svc = service()
    rows = run(lambda: list_schedules(svc.db, campaign))
    if as_json:
        print(json.dumps([{"campaign": r.campaign, "kind": r.kind, "enabled": r.enabled, "job_id": r.job_id,
                           "spec": r.spec} for r in rows]))
        return
    if not rows:
        console.print("No schedules.")
        return
    table = Table("campaign", "kind", "on", "schedule")
    for r in rows:
        table.add_row(r.campaign, r.kind, "yes" if r.enabled else "no", r.describe())
    console.print(table)


@schedule_app.command("runs")
def schedule_runs(
    campaign: Annotated[str | None, typer.Option(help="Campaign (default: all)")] = None,
    limit: Annotated[int, typer.Option(help="How many runs")] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The run ledger: each scheduled slot and how it went."""
    from scheduler.ledger import Ledger
    from scheduler.schedules import KINDS, job_id

    svc = service()
    jobs = [job_id(kind, campaign) for kind in KINDS] if campaign else None
    runs = Ledger(svc.db).runs(jobs, limit=max(1, limit))
    if as_json:
        print(json.dumps([{"job": r.job_id, "slot": r.slot.isoformat(), "status": r.status, "attempts": r.attempts,
                           "started": r.started_at.isoformat(),
                           "finished": r.finished_at.isoformat() if r.finished_at else None,
                           "error": (r.error or "").splitlines()[0] if r.error else None, "result": r.result}
                          for r in runs]))
        return
    table = Table("job", "slot (UTC)", "status", "attempts", "error")
    for r in runs:
        table.add_row(r.job_id, r.slot.strftime("%Y-%m-%d %H:%M:%S"), r.status, str(r.attempts),
                      (r.error or "").splitlines()[0][:80] if r.error else "")
    console.print(table)


@schedule_app.command("run-now")
def schedule_run_now(
    campaign: Annotated[str, typer.Option(help="Campaign")],
    kind: Annotated[str, typer.Argument(help="post | export | finetune | duel")],
) -> None:
    """Run a campaign's job once now (recorded in the run ledger like a scheduled slot)."""
    from scheduler.app import SchedulerApp
    from scheduler.schedules import KINDS

    if kind not in KINDS:
        fail(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    svc = service()
    run(lambda: svc.campaign(campaign))
    app_ = SchedulerApp(settings(), svc.db, service=svc)
    row = app_.run_now(kind, campaign)
    if row.status == "failed":
        fail(f"{kind} run failed: {(row.error or '').splitlines()[0]}")
    console.print(f"{kind} of [bold]{campaign}[/]: {row.status} {json.dumps(row.result)}", highlight=False)
# ----------------------------------------------------------------------------------------- fine-tuning / generation

finetune_app = typer.Typer(help="Fine-tune reward, DPO and SFT models on exports; compare variants; list jobs.",
                           invoke_without_command=True)
app.add_typer(finetune_app, name="finetune")


def _train_args(epochs: float | None, max_steps: int | None, lr: float | None, extra: str) -> list[str]:
    import shlex

    args: list[str] = []
    if epochs is not None:
        args += ["--epochs", str(epochs)]
    if max_steps is not None:
        args += ["--max-steps", str(max_steps)]
    if lr is not None:
        args += ["--lr", str(lr)]
    try:
        return args + shlex.split(extra)
    except ValueError as exc:
        fail(f"--train-args: {exc}")
        raise


def _show_job(job) -> None:  # type: ignore[no-untyped-def]
    table = Table(show_header=False)
    for key, value in [("job", job.id), ("status", job.status), ("method", f"{job.method} ({job.variant})"),
                       ("backend", job.backend), ("export", job.export_path), ("base model", job.base_model),
                       ("exit code", job.exit_code), ("error", job.error), ("artifact", job.artifact_path),
                       ("log", job.log_path), ("result", job.result_message)]:
        if value is not None:
            table.add_row(key, str(value))
    for key in ("eval_accuracy", "train_loss", "eval_loss", "train_seconds", "trainable_params"):
        if job.metrics.get(key) is not None:
            table.add_row(key, str(job.metrics[key]))
    console.print(table)


@finetune_app.callback()
def finetune(
    ctx: typer.Context,
    campaign: Annotated[str | None, typer.Option(help="Campaign whose export to train on")] = None,
    method: Annotated[str | None, typer.Option(help="reward | dpo | sft")] = None,
    backend: Annotated[str | None, typer.Option(help="local | command (default: LABELBOT_FINETUNE_BACKEND)")] = None,
    variant: Annotated[str, typer.Option(help="full | lora | head (head: reward only)")] = "full",
    base: Annotated[str | None, typer.Option(help="Base model: local path or hub name")] = None,
    export_path: Annotated[Path | None, typer.Option("--export", help="Export folder (default: latest, or a new one)")
                           ] = None,
    epochs: Annotated[float | None, typer.Option(help="Training epochs")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate")] = None,
    train_args: Annotated[str, typer.Option(help="More trainer arguments, e.g. \"--batch-size 32\"")] = "",
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for the job and print its result")] = False,
) -> None:
    """Train a reward model, DPO or SFT on a campaign's export (`labelbot finetune --campaign C --method dpo`)."""
    if ctx.invoked_subcommand is not None:
        return
    if not campaign or not method:
        fail("give --campaign and --method (reward, dpo or sft), or a subcommand: compare, jobs")
    from scheduler.finetune.launch import export_for, launch, wait_for_job

    cfg = settings()
    svc = service()
    run(lambda: svc.campaign(campaign))
    if method not in ("reward", "dpo", "sft"):
        fail("--method is reward, dpo or sft")
    chosen_backend = backend or cfg.labelbot_finetune_backend
    if chosen_backend == "local":  # say how to install the ML extras before exporting anything
        from bot.extras import require_training

        run(lambda: require_training(method, variant))
    folder = export_path or run(lambda: export_for(svc.db, cfg, campaign, method))
    extra = _train_args(epochs, max_steps, lr, train_args)
    job_id, created = run(lambda: launch(svc.db, cfg, campaign, method, folder, chosen_backend, variant=variant,
                                         base_model=base, train_args=extra, actor=cli_actor().key))
    if not created:
        console.print(f"Export {folder} was already trained with {method} ({variant}): job {job_id}.")
    else:
        console.print(f"Started fine-tune job {job_id} ({method}, {variant}) on {folder}.")
    if wait:
        with console.status(f"training (job {job_id})..."):
            job = wait_for_job(svc.db, job_id, timeout=7 * 24 * 3600)
        _show_job(job)
        if job.status != "succeeded":
            raise typer.Exit(1)


@finetune_app.command("jobs")
def finetune_jobs(
    job_id: Annotated[int | None, typer.Argument(help="Show one job with its log tail")] = None,
    campaign: Annotated[str | None, typer.Option(help="Only this campaign's jobs")] = None,
    limit: Annotated[int, typer.Option(help="How many jobs")] = 20,
) -> None:
    """List fine-tune jobs, or show one."""
    from scheduler.finetune.launch import get_job, list_jobs, reap_vanished

    svc = service()
    reap_vanished(svc.db)
    if job_id is not None:
        job = run(lambda: get_job(svc.db, job_id))
        _show_job(job)
        if job.log_tail:
            console.print(job.log_tail, highlight=False, markup=False)
        return
    table = Table("job", "status", "method", "export", "accuracy", "train s", "artifact")
    for job in run(lambda: list_jobs(svc.db, campaign, limit)):
        acc = job.metrics.get("eval_accuracy")
        secs = job.metrics.get("train_seconds")
        table.add_row(str(job.id), job.status, f"{job.method}/{job.variant}",
                      f"{job.export_format} v{job.export_version or 0}", "-" if acc is None else f"{acc:.3f}",
                      "-" if secs is None else f"{secs:.0f}", job.artifact_path or "-")
    console.print(table)


@finetune_app.command("compare")
def finetune_compare(
    campaign: Annotated[str, typer.Option(help="Campaign whose export to train on")],
    method: Annotated[str, typer.Option(help="reward | dpo | sft")] = "reward",
    variants: Annotated[str, typer.Option(help="Comma-separated: full, lora, head")] = "full,lora,head",
    export_path: Annotated[Path | None, typer.Option("--export", help="Export folder (default: latest)")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for compare.md/.json/.png")] = None,
    backend: Annotated[str | None, typer.Option(help="local | command")] = None,
    base: Annotated[str | None, typer.Option(help="Base model: local path or hub name")] = None,
    epochs: Annotated[float | None, typer.Option(help="Training epochs")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps")] = None,
    train_args: Annotated[str, typer.Option(help="More trainer arguments")] = "",
) -> None:
    """Train several variants on one export; write a table and a PNG chart (accuracy, time, parameters)."""
    from scheduler.finetune.compare import compare_methods
    from scheduler.finetune.launch import export_for

    cfg = settings()
    svc = service()
    run(lambda: svc.campaign(campaign))
    if method not in ("reward", "dpo", "sft"):
        fail("--method is reward, dpo or sft")
    wanted = tuple(v.strip() for v in variants.split(",") if v.strip())
    if (backend or cfg.labelbot_finetune_backend) == "local":
        from bot.extras import require_training

        for v in wanted:
            run(lambda v=v: require_training(method, v))
    folder = export_path or run(lambda: export_for(svc.db, cfg, campaign, method))
    target = out or Path(cfg.labelbot_artifact_dir) / campaign / "compare" / Path(folder).resolve().name
    res = run(lambda: compare_methods(
        svc.db, cfg, campaign, folder, target, method=method, variants=wanted,
        backend=backend or cfg.labelbot_finetune_backend, base_model=base,
        train_args=_train_args(epochs, max_steps, None, train_args),
        progress=lambda v, j, created: console.print(f"{v}: job {j}{'' if created else ' (already trained)'}")))
    table = Table("variant", "status", "accuracy", "train s", "trainable params")
    for r in res.rows:
        table.add_row(r.variant, r.status, "-" if r.eval_accuracy is None else f"{r.eval_accuracy:.3f}",
                      "-" if r.train_seconds is None else f"{r.train_seconds:.1f}",
                      "-" if r.trainable_params is None else f"{r.trainable_params:,}")
    console.print(table)
    console.print(f"Wrote {res.table_path}, {res.json_path} and {res.chart_path}")
    if any(r.status != "succeeded" for r in res.rows):
        raise typer.Exit(1)


@app.command()
def generate(
    campaign: Annotated[str, typer.Option(help="Campaign to add the items to")],
    prompts: Annotated[Path, typer.Option(help="JSONL ({\"id\"?, \"prompt\"}) or .txt (one prompt per line)")],
    model: Annotated[list[str], typer.Option("--model", help="NAME=SPEC: endpoint URL[#served-name] or model folder")],
    max_tokens: Annotated[int, typer.Option(help="Longest answer, in tokens")] = 512,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (0: greedy)")] = 0.7,
    concurrency: Annotated[int, typer.Option(help="Requests in flight per run")] = 8,
) -> None:
    """Create items by asking two or more models (OpenAI-compatible endpoints or local models) each prompt."""
    from scheduler.generate import generate_items, parse_model_spec, read_prompts

    cfg = settings()
    svc = service()
    run(lambda: svc.campaign(campaign))
    specs = [run(lambda m=m: parse_model_spec(m)) for m in model]
    rows = run(lambda: read_prompts(prompts))
    if concurrency < 1 or concurrency > 256:
        fail("--concurrency must be between 1 and 256")
    with console.status(f"asking {len(specs)} models {len(rows)} prompt(s)..."):
        res = run(lambda: generate_items(svc.db, cfg, campaign, rows, specs, actor=cli_actor(), max_tokens=max_tokens,
                                         temperature=temperature, concurrency=concurrency))
    for ext, name, error in res.failures[:10]:
        err_console.print(f"[yellow]![/] {ext}: {name} failed: {error}", highlight=False, markup=False)
    console.print(f"Added {res.added} item(s) to [bold]{campaign}[/]; {res.present} already present; "
                  f"{len(res.skipped)} prompt(s) skipped (fewer than two answers).")
    if res.added + res.present == 0:
        raise typer.Exit(1)


# ----------------------------------------------------------------------------------------- doctor / serve


@app.command()
def doctor() -> None:
    """Check configuration and database, and say what is missing."""
    from bot.doctor import run_checks

    ok = True
    for check in run_checks(settings()):
        mark = {"ok": "[green]✓[/]", "warn": "[yellow]![/]", "fail": "[red]✗[/]"}[check.level]
        console.print(f"{mark} {check.name}: {check.message}", highlight=False)
        ok = ok and check.level != "fail"
    if not ok:
        raise typer.Exit(1)


@app.command()
def serve(
    components: Annotated[
        list[str] | None, typer.Argument(help="slack, discord, scheduler, web (default: all configured)")
    ] = None,
    host: Annotated[str | None, typer.Option(help="HTTP host")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port")] = None,
) -> None:
    """Run the bots, the scheduler and the HTTP server in one process."""
    from bot.server import KNOWN_COMPONENTS, serve_forever

    wanted = set(components or [])
    unknown = wanted - set(KNOWN_COMPONENTS)
    if unknown:
        fail(f"unknown component(s): {', '.join(sorted(unknown))}; choose from {', '.join(KNOWN_COMPONENTS)}")
    cfg = settings()
    service()  # refuses an uninitialised database with a clear message
    try:
        serve_forever(cfg, wanted, host or cfg.labelbot_host, port or cfg.labelbot_port)
    except LabelingError as exc:
        fail(exc.message)


@app.command()
def invite(
    campaign: Annotated[str, typer.Option(help="Campaign to vote in")],
    name: Annotated[str | None, typer.Option(help="Who it is for (the same name is the same annotator)")] = None,
    days: Annotated[float, typer.Option(help="Days the link works")] = 30,
    list_: Annotated[bool, typer.Option("--list", help="List the campaign's invites instead")] = False,
    revoke: Annotated[int | None, typer.Option(help="Withdraw the invite with this id")] = None,
) -> None:
    """Print a signed link to the browser voting page for one person (contractors, reviewers...)."""
    from bot.core import invites

    cfg = settings()
    svc = service()
    if revoke is not None:
        console.print(run(lambda: svc.revoke_invite(cli_actor(), campaign, revoke)).text)
        return
    if list_:
        rows = run(lambda: invites.list_invites(svc.db, campaign))
        table = Table("id", "name", "created", "expires", "state", "by")
        for row in rows:
            state = "withdrawn" if row.revoked_at else "live"
            table.add_row(str(row.id), row.name or "-", f"{row.created_at:%Y-%m-%d %H:%M}",
                          f"{row.expires_at:%Y-%m-%d}", state, row.created_by)
        console.print(table)
        return
    link = run(lambda: svc.create_invite(cli_actor(), campaign, name, base_url=cfg.public_base_url, days=days))
    who = f" for {link.name}" if link.name else ""
    err_console.print(f"Invite {link.invite_id}{who} to vote in {campaign}, valid until "
                      f"{link.expires_at:%Y-%m-%d %H:%M} UTC. Anyone holding the link votes as this person: send it "
                      "privately. Withdraw it with "
                      f"`labelbot invite --campaign {campaign} --revoke {link.invite_id}`.", highlight=False,
                      soft_wrap=True)
    print(link.url)


@app.command()
def demo(
    port: Annotated[int | None, typer.Option(help="HTTP port (default LABELBOT_PORT, 3000)")] = None,
) -> None:
    """Try labelbot with nothing configured: seed a `demo` campaign, serve the voting page and dashboard locally."""
    from bot import demo as demo_mod
    from bot.server import check_port, serve_forever
    from bot.web.auth import make_signin_link
    from storage.db import upgrade

    cfg = settings()
    chosen = port or cfg.labelbot_port
    hint = f"choose another with `labelbot demo --port {chosen + 1 if chosen < 65535 else 8000}`"
    run(lambda: check_port(demo_mod.HOST, chosen, hint))
    try:
        upgrade(cfg.database_url)
    except Exception as exc:
        fail(f"could not set up the database: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    svc = service()
    setup = run(lambda: demo_mod.seed(svc, cli_actor()))
    live = demo_mod.demo_settings(cfg, chosen)
    vote = run(lambda: svc.create_invite(cli_actor(), demo_mod.CAMPAIGN, demo_mod.VOTER, base_url=live.public_base_url))
    printed_token = None if live.labelbot_dashboard_token is cfg.labelbot_dashboard_token else (
        live.labelbot_dashboard_token.get_secret_value() if live.labelbot_dashboard_token else None)

    def started(_ctx, _bound) -> None:  # type: ignore[no-untyped-def]
        signin = make_signin_link(live, f"web:{demo_mod.DEMO_ADMIN}").url
        signin += f"&next=/dashboard/campaigns/{demo_mod.CAMPAIGN}"
        for line in demo_mod.banner(live, vote.url, signin, printed_token, setup, chosen):
            print(line, flush=True)

    try:
        serve_forever(live, {"web"}, demo_mod.HOST, chosen, started=started, port_hint=hint)
    except LabelingError as exc:
        fail(exc.message)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
