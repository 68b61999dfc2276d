"""Fine-tune results for the campaign's channels, kept platform-agnostic.

The runner stores a human-readable summary on the job (`result_message`) and, for each platform the
campaign has a channel on, calls that platform's notifier from `bot.adapters.NOTIFIERS` when one is
registered (`fn(settings, campaign, channel, text)`). Platforms without one are marked "pending":
an adapter can fetch them with `pending_results(db, platform)` and confirm with `mark_result_posted`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from sqlmodel import select

from bot.config import Settings
from storage import queries as q
from storage.db import Database
from storage.models import Campaign, FinetuneJob, utcnow

METHOD_NAMES = {"reward": "Reward model", "dpo": "DPO model", "sft": "SFT model"}


@dataclass(frozen=True)
class PendingResult:
    job_id: int
    campaign: str
    platform: str
    channel: str
    text: str


def _fmt_params(n: Any) -> str:
    if not isinstance(n, int | float):
        return "?"
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(int(n))


def summary(job: FinetuneJob, campaign: str) -> str:
    """One or two sentences a channel can show as is."""
    what = f"{METHOD_NAMES.get(job.method, job.method)} ({job.variant})"
    export = f"{job.export_format} v{job.export_version or 0:04d}"
    if job.status == "succeeded":
        m = job.metrics
        parts = []
        if m.get("eval_accuracy") is not None:
            parts.append(f"held-out pairwise accuracy {m['eval_accuracy']:.1%}")
        if m.get("eval_loss") is not None:
            parts.append(f"eval loss {m['eval_loss']:.3f}")
        if m.get("train_loss") is not None:
            parts.append(f"training loss {m['train_loss']:.3f}")
        if m.get("train_seconds") is not None:
            parts.append(f"{m['train_seconds']:.0f} s")
        if m.get("trainable_params") is not None:
            parts.append(f"{_fmt_params(m['trainable_params'])} trainable parameters")
        rows = m.get("train_pairs", m.get("train_rows"))
        sized = f" ({rows} training rows)" if rows is not None else ""
        return (f"✅ {what} for *{campaign}* trained on export {export}{sized}: {', '.join(parts) or 'done'}. "
                f"Artifact: {job.artifact_path} (job {job.id}).")
    last = next((line for line in reversed((job.log_tail or "").splitlines()) if line.strip()), "")
    reason = job.error or "failed"
    detail = f" Last log line: {last.strip()[:200]}" if last else ""
    return (f"❌ {what} for *{campaign}* on export {export} failed: {reason}.{detail} "
            f"(`labelbot finetune jobs {job.id}` shows the log.)")


def _notifier(platform: str) -> Any:
    from bot.adapters import NOTIFIERS

    target = NOTIFIERS.get(platform)
    if not target:
        return None
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def post_result(db: Database, settings: Settings, job_id: int) -> dict[str, str]:
    """Store the summary and deliver it where a notifier exists; returns {platform: outcome} for those."""
    with db.read() as s:
        job = s.get(FinetuneJob, job_id)
        camp = s.get(Campaign, job.campaign_id) if job else None
    if job is None or camp is None:
        return {}
    text = summary(job, camp.name)
    outcomes: dict[str, str] = {}
    with db.read() as s:
        channels = [(c.platform, c.channel) for c in q.campaign_channels(s, camp.id)]
    for platform, channel in channels:
        fn = _notifier(platform)
        if fn is None:
            continue  # stays "pending" for the adapter to pick up
        try:
            fn(settings, camp.name, channel, text)
            outcomes[platform] = "sent"
        except Exception as exc:
            outcomes[platform] = f"error: {type(exc).__name__}"[:200]
    with db.write() as s:
        row = s.get(FinetuneJob, job_id)
        if row is None:
            return outcomes
        row.result_message = row.result_message or text
        pending = {p: "pending" for p, _ch in channels}
        row.notifications = {**pending, **row.notifications, **outcomes}
        if row.notifications and all(v == "sent" for v in row.notifications.values()):
            row.notified_at = utcnow()
        q.add_audit(s, "finetune-runner", "finetune.result", campaign_id=camp.id, job_id=job_id, text=text,
                    notifications=outcomes)
    return outcomes


def pending_results(db: Database, platform: str) -> list[PendingResult]:
    """Finished jobs whose summary still waits to be posted on `platform`."""
    with db.read() as s:
        rows = s.exec(select(FinetuneJob, Campaign).join(Campaign, Campaign.id == FinetuneJob.campaign_id)
                      .where(FinetuneJob.result_message.is_not(None))  # type: ignore[union-attr]
                      .order_by(FinetuneJob.id)).all()
    out = []
    for job, camp in rows:
        if job.notifications.get(platform) in ("pending",) or str(job.notifications.get(platform, "")).startswith(
                "error"):
            with db.read() as s:
                bound = q.campaign_channels(s, camp.id, platform)
            for channel in bound:
                out.append(PendingResult(job.id, camp.name, platform, channel.channel, job.result_message or ""))
    return out


def mark_result_posted(db: Database, job_id: int, platform: str) -> None:
    with db.write() as s:
        job = s.get(FinetuneJob, job_id)
        if job is None:
            return
        job.notifications = {**job.notifications, platform: "sent"}
        if all(v == "sent" for v in job.notifications.values()):
            job.notified_at = utcnow()
