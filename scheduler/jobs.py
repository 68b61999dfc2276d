"""What a scheduled slot does: post items, export datasets, trigger fine-tunes.

Each job takes a `JobContext` and the slot it runs for and returns an `Outcome` the ledger records.
Jobs are idempotent per slot where the world allows it (an export slot that already produced its
version does not produce another on rerun), because a crash after the work and before the ledger
update reruns the slot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlmodel import select

from bot.config import Settings
from bot.core.errors import InvalidInput, LabelingError, NotFound
from bot.core.service import LabelingService
from scheduler.schedules import METHOD_FORMATS, in_quiet_hours
from storage import queries as q
from storage.db import Database
from storage.domain import CampaignStatus, RunStatus
from storage.models import FinetuneTrigger, Item, utcnow

log = logging.getLogger("labelbot.scheduler")

# (db, settings, campaign, method, export_path, backend) -> fine-tune job id
Launcher = Callable[[Database, Settings, str, str, Path, str], int]


@dataclass
class JobContext:
    settings: Settings
    db: Database
    service: LabelingService
    launcher: Launcher | None = None  # None: scheduler.finetune.launch.launch_finetune (lazy)


@dataclass
class Outcome:
    status: str = RunStatus.DONE  # done | skipped
    result: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ posting


def platform_ready(settings: Settings, bound: set[str], platform: str) -> bool:
    """Slack and Discord need their token and a channel of the campaign; other posters just need registering."""
    if platform == "slack":
        return settings.slack_configured and platform in bound
    if platform == "discord":
        return settings.discord_configured and platform in bound
    return True


def post_job(ctx: JobContext, campaign: str, spec: dict[str, Any], slot: datetime) -> Outcome:
    """Post `count` items to each configured platform, unless paused or inside quiet hours."""
    from bot.adapters import POSTERS, poster

    camp = ctx.service.campaign(campaign)
    if camp.status != CampaignStatus.ACTIVE:
        return Outcome(RunStatus.SKIPPED, {"reason": "campaign paused"})
    if in_quiet_hours(slot, spec.get("quiet"), spec.get("tz", "UTC")):
        return Outcome(RunStatus.SKIPPED, {"reason": f"quiet hours {spec['quiet']} {spec.get('tz', 'UTC')}"})
    wanted = spec.get("platforms") or sorted(POSTERS)
    bound = {p for p, _w, _ch in ctx.service.channels(campaign)}
    targets = [p for p in wanted if p in POSTERS and platform_ready(ctx.settings, bound, p)]
    if not targets:
        return Outcome(RunStatus.SKIPPED, {"reason": "no platform configured for this campaign"})
    posted: dict[str, int] = {}
    errors: dict[str, str] = {}
    for platform in targets:
        try:
            posted[platform] = int(poster(platform)(ctx.settings, ctx.service, campaign, int(spec["count"])))
        except LabelingError as exc:
            errors[platform] = exc.message
    if errors and not posted:
        raise RuntimeError("posting failed: " + "; ".join(f"{k}: {v}" for k, v in errors.items()))
    return Outcome(RunStatus.DONE, {"posted": posted, "errors": errors})


# ------------------------------------------------------------------------------------------ exports


def export_root(settings: Settings, spec: dict[str, Any] | None = None) -> Path:
    return Path((spec or {}).get("out") or settings.labelbot_export_dir)


def export_job(ctx: JobContext, campaign: str, spec: dict[str, Any], slot: datetime, *, job_id: str) -> Outcome:
    """Export each configured format to `<export dir>/<campaign>/<format>/vNNNN`."""
    from scheduler.export import export_campaign, latest_manifest

    ctx.service.campaign(campaign)
    trigger = {"job": job_id, "slot": slot.isoformat()}
    written: dict[str, Any] = {}
    for fmt in spec.get("formats") or ["trl"]:
        out = export_root(ctx.settings, spec) / campaign / fmt
        done = latest_manifest(out) if out.exists() else None
        if done and done.get("trigger") == trigger:  # this slot already wrote it before a crash
            written[fmt] = {"version": done["version"], "rows": done["counts"]["rows"], "rerun": "already written"}
            continue
        res = export_campaign(ctx.db, campaign, fmt, out, incremental=bool(spec.get("incremental", True)),
                              test_fraction=float(spec.get("test_fraction", 0.1)), trigger=trigger)
        written[fmt] = {"version": res.version, "rows": res.rows, "path": str(res.path)} if res.created else \
            {"version": None, "rows": 0, "note": "nothing new"}
    return Outcome(RunStatus.DONE, {"exports": written})


# ------------------------------------------------------------------------------------------ fine-tune trigger


@dataclass(frozen=True)
class Decision:
    launch: bool
    reason: str


def decide_finetune(*, pairs_now: int, pairs_at_last: int, threshold: int, version_trained: bool) -> Decision:
    """The trigger rule: enough new training rows since the last job, and this export not trained yet."""
    new = pairs_now - pairs_at_last
    if version_trained:
        return Decision(False, "this export version was already trained with this method")
    if new < threshold:
        return Decision(False, f"{max(new, 0)} new pair(s) since the last fine-tune; threshold {threshold}")
    return Decision(True, f"{new} new pair(s) since the last fine-tune (threshold {threshold})")


def default_launcher() -> Launcher:
    try:
        from scheduler.finetune.launch import launch_finetune
    except ImportError as exc:
        raise InvalidInput("Fine-tuning is not available in this build of labelbot "
                           f"(scheduler.finetune.launch: {exc}).") from None
    return launch_finetune


def source_max_id(db: Database, campaign: str, method: str) -> int:
    """The newest vote id (correction id for sft) a `method` export of `campaign` would cover."""
    from scheduler.export import _max_correction_id

    with db.read() as s:
        camp = q.campaign_by_name(s, campaign)
        if camp is None:
            raise NotFound(f"No campaign named {campaign!r}.")
        return _max_correction_id(s, camp.id) if METHOD_FORMATS[method] == "sft" else q.max_vote_id(s, camp.id)


def count_training_rows(db: Database, campaign_id: int, method: str, hi: int) -> int:
    """Rows an export for `method` covering ids <= hi would hold, without writing files."""
    from scheduler.export import _correction_row, consensus_pairs, iter_corrections, iter_items

    if METHOD_FORMATS[method] == "sft":
        return sum(_correction_row(c, "sft") is not None for c in iter_corrections(db, campaign_id, max_id=hi))
    return sum(len(consensus_pairs(rec)) for rec in iter_items(db, campaign_id, max_vote_id=hi))


def trigger_finetune(ctx: JobContext, campaign: str, method: str, *, threshold: int = 1, backend: str = "local",
                     reason: str = "manual") -> Outcome:
    """Export (or reuse the newest cumulative export) and launch a fine-tune when the rule says so.

    The (campaign, method, format, version) row is inserted before launching: its unique key makes a
    given export version train once per method even if two triggers race.
    """
    from scheduler.export import export_campaign, latest_manifest

    if method not in METHOD_FORMATS:
        raise InvalidInput(f"Unknown fine-tune method {method!r}; choose from {', '.join(METHOD_FORMATS)}.")
    fmt = METHOD_FORMATS[method]
    with ctx.db.read() as s:
        camp = q.campaign_by_name(s, campaign)
        if camp is None:
            raise NotFound(f"No campaign named {campaign!r}.")
        last = s.exec(select(FinetuneTrigger).where(FinetuneTrigger.campaign_id == camp.id,
                                                    FinetuneTrigger.method == method)
                      .order_by(FinetuneTrigger.id.desc())).first()
    pairs_at_last = last.pairs if last else 0
    out = export_root(ctx.settings) / campaign / fmt
    newest = latest_manifest(out) if out.exists() else None
    hi = source_max_id(ctx.db, campaign, method)
    if last is not None and hi <= last.max_vote_id:
        return Outcome(RunStatus.SKIPPED,
                       {"method": method, "reason": "no new votes or corrections since the last fine-tune"})
    pairs_now = count_training_rows(ctx.db, camp.id, method, hi)
    reusable = (newest is not None and newest.get("mode") == "cumulative"
                and newest.get("source_range", {}).get("max_id") == hi)
    version = newest["version"] if reusable else None
    trained = version is not None and last is not None and last.export_version == version
    decision = decide_finetune(pairs_now=pairs_now, pairs_at_last=pairs_at_last, threshold=threshold,
                               version_trained=trained)
    if not decision.launch:
        return Outcome(RunStatus.SKIPPED, {"method": method, "reason": decision.reason, "pairs": pairs_now})
    launcher = ctx.launcher or default_launcher()
    with ctx.db.write() as s:  # claim this (method, data) first: concurrent triggers launch once
        if not q.insert_ignore(s, FinetuneTrigger, {
                "campaign_id": camp.id, "method": method, "export_format": fmt, "export_version": None,
                "export_path": "", "pairs": pairs_now, "max_vote_id": hi, "reason": reason, "created_at": utcnow()},
                ("campaign_id", "method", "max_vote_id")):
            return Outcome(RunStatus.SKIPPED,
                           {"method": method, "reason": "a fine-tune on this data was already started"})
        trigger_id = s.exec(select(FinetuneTrigger.id).where(
            FinetuneTrigger.campaign_id == camp.id, FinetuneTrigger.method == method,
            FinetuneTrigger.max_vote_id == hi)).one()
    try:
        if reusable:
            path = out / f"v{version:04d}"
        else:
            res = export_campaign(ctx.db, campaign, fmt, out, incremental=False, trigger={"finetune": method})
            path, version, pairs_now = res.path, res.version, res.rows
        with ctx.db.write() as s:
            row = s.get(FinetuneTrigger, trigger_id)
            row.export_version, row.export_path, row.pairs = version, str(path), pairs_now
            s.add(row)
        job = launcher(ctx.db, ctx.settings, campaign, method, path, backend)
    except BaseException:
        with ctx.db.write() as s:  # not launched: let a later trigger try this data again
            row = s.get(FinetuneTrigger, trigger_id)
            if row is not None:
                s.delete(row)
        raise
    with ctx.db.write() as s:
        row = s.get(FinetuneTrigger, trigger_id)
        row.job_id = int(job)
        s.add(row)
        q.add_audit(s, f"scheduler:{reason}", "finetune.trigger", campaign_id=camp.id, method=method,
                    export=str(path), job_id=int(job), pairs=pairs_now)
    log.info("fine-tune %s of %s launched on %s (job %s): %s", method, campaign, path, job, decision.reason)
    return Outcome(RunStatus.DONE, {"method": method, "job_id": int(job), "export": str(path), "version": version,
                            "pairs": pairs_now, "reason": decision.reason})


def finetune_job(ctx: JobContext, campaign: str, spec: dict[str, Any], slot: datetime) -> Outcome:
    """Check each configured method against the threshold; launch the ones that are due."""
    results: dict[str, Any] = {}
    launched = False
    reason = "cron" if spec.get("cron") else "threshold"
    for method in spec.get("methods") or ["dpo"]:
        out = trigger_finetune(ctx, campaign, method, threshold=int(spec.get("threshold", 1)),
                               backend=spec.get("backend", "local"), reason=reason)
        results[method] = out.result
        launched = launched or out.status == RunStatus.DONE
    return Outcome(RunStatus.DONE if launched else RunStatus.SKIPPED, {"methods": results})


def duel_job(ctx: JobContext, campaign: str, spec: dict[str, Any], slot: datetime) -> Outcome:
    """Pit the newest DPO/SFT model against the previous one on prompts not asked before.

    Prompts are drawn in a fixed order from the file, skipping those already turned into items, so
    every round is fresh and a rerun of the same slot asks the same ones (and adds nothing twice).
    """
    from scheduler.generate import duel_latest, prompt_key, read_prompts

    prompts = read_prompts(Path(spec["prompts"]))
    with ctx.db.read() as s:
        camp = q.campaign_by_name(s, campaign)
        used = {m.get("prompt_key") for m in s.exec(select(Item.meta).where(Item.campaign_id == camp.id))
                if isinstance(m, dict)} if camp else set()
    fresh = [p for p in prompts if prompt_key(p) not in used]
    chosen = fresh[: int(spec.get("count", 20))]
    if not chosen:
        return Outcome(RunStatus.SKIPPED, {"reason": "no fresh prompts left in the prompts file"})
    res = duel_latest(ctx.db, ctx.settings, campaign, chosen)
    return Outcome(RunStatus.DONE if res.added else RunStatus.SKIPPED, {"added": res.added, "present": res.present,
                                                        "failures": len(res.failures)})


JOBS = {"post": post_job, "export": export_job, "finetune": finetune_job, "duel": duel_job}
